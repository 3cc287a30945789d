/** TLS upstream with a private CA that requires a client certificate: the repository's settings are used. */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import https from 'node:https';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import {
  addRepo,
  assertHealthy,
  bytes,
  exists,
  fetchRaw,
  seedUnit,
  settled,
  sha256,
  startStreamer,
  tempFiles,
  urlFor,
} from './helpers/streamer.ts';
import { listenForTestFile } from './helpers/upstream.ts';

const run = promisify(execFile);

/** A CA, a server certificate for 127.0.0.1 and a client certificate, made with openssl. */
async function makePki(dir: string) {
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  const f = (n: string) => path.join(dir, n);
  await run('openssl', [
    'req',
    '-x509',
    ...ec,
    '-keyout',
    f('ca.key'),
    '-out',
    f('ca.crt'),
    '-days',
    '2',
    '-subj',
    '/CN=pulp-lazy test CA',
  ]);
  await writeFile(f('server.ext'), 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n');
  await writeFile(f('client.ext'), 'extendedKeyUsage=clientAuth\n');
  for (const who of ['server', 'client']) {
    await run('openssl', [
      'req',
      ...ec,
      '-keyout',
      f(`${who}.key`),
      '-out',
      f(`${who}.csr`),
      '-subj',
      `/CN=${who}`,
    ]);
    await run('openssl', [
      'x509',
      '-req',
      '-in',
      f(`${who}.csr`),
      '-CA',
      f('ca.crt'),
      '-CAkey',
      f('ca.key'),
      '-CAcreateserial',
      '-out',
      f(`${who}.crt`),
      '-days',
      '2',
      '-extfile',
      f(`${who}.ext`),
    ]);
  }
  const read = (n: string) => readFile(f(n), 'utf8');
  return {
    ca: await read('ca.crt'),
    serverCert: await read('server.crt'),
    serverKey: await read('server.key'),
    clientCert: await read('client.crt'),
    clientKey: await read('client.key'),
  };
}

const dir = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-tls-'));
after(() => rm(dir, { recursive: true, force: true }));
const pki = await makePki(dir);
const body = bytes(300 * 1024, 40);
let gets = 0;
const origin = https.createServer(
  { key: pki.serverKey, cert: pki.serverCert, ca: pki.ca, requestCert: true, rejectUnauthorized: true },
  (_req, res) => {
    gets++;
    res.writeHead(200, { 'content-length': body.length }).end(body);
  },
);
const url = `https://127.0.0.1:${await listenForTestFile(origin)}/secret.rpm`;
const fx = await startStreamer('tls');

async function seedWith(importer: string, upstream: Parameters<typeof addRepo>[2]) {
  // The feed's origin: the client certificate is presented to it only.
  await addRepo(fx.db, importer, upstream, new URL('/', url).href);
  return seedUnit(fx, [{ name: `${importer}.rpm`, body, sources: [{ importer, url }] }]);
}

test('with the CA and client certificate of the repository: 200 and saved', { timeout: 60_000 }, async () => {
  const { unitId, paths } = await seedWith('imp-tls-ok', {
    ca_cert: pki.ca,
    client_cert: pki.clientCert,
    client_key: pki.clientKey,
    tls_verify: true,
  });
  const r = await fetchRaw(urlFor(fx.base, paths[0]!));
  assert.equal(r.status, 200);
  assert.ok(r.complete);
  assert.equal(sha256(r.body), sha256(body));
  await settled(fx);
  assert.equal((await fx.db.units.findOne({ _id: unitId }))?.downloaded, true);
});

test('without a client certificate: 502', { timeout: 60_000 }, async () => {
  const before = gets;
  const { paths } = await seedWith('imp-tls-nocert', { ca_cert: pki.ca, tls_verify: true });
  const r = await fetchRaw(urlFor(fx.base, paths[0]!));
  assert.equal(r.status, 502);
  assert.equal(JSON.parse(r.body.toString()).code, 'PL_UPSTREAM');
  assert.equal(gets, before, 'the origin never served the request');
  await settled(fx);
  assert.equal(await exists(paths[0]!), false);
  assert.deepEqual(await tempFiles(fx), []);
});

test('without the private CA: 502 (certificate not trusted)', { timeout: 60_000 }, async () => {
  const { paths } = await seedWith('imp-tls-noca', {
    client_cert: pki.clientCert,
    client_key: pki.clientKey,
    tls_verify: true,
  });
  const r = await fetchRaw(urlFor(fx.base, paths[0]!));
  assert.equal(r.status, 502);
  assert.match(JSON.parse(r.body.toString()).message, /certificate/i);
  await settled(fx);
  assert.deepEqual(await tempFiles(fx), []);
  await assertHealthy(fx);
});
