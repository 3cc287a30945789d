/**
 * Protected repositories: the client certificate (PEM in the header Apache
 * fills from SSL_CLIENT_CERT) must chain to the repository's CA and be valid
 * now. Certificates are made with openssl for each run.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { parseCertificates, verifyClientCertificate } from '../src/content/entitlement.ts';
import { connect } from '../src/db/index.ts';
import { contentConfig, digestOf, insertRepo, makeTree, startDaemon } from './helpers/content.ts';
import { testDatabase } from './helpers/db.ts';

const DAY = 86_400_000;
const HEADER = 'X-Pulp-Client-Cert';

// --- certificates ---------------------------------------------------------
const dir = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-certs-'));
after(() => rm(dir, { recursive: true, force: true }));
const ossl = (...args: string[]) =>
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
const ecKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
const caExt = [
  '-addext',
  'basicConstraints=critical,CA:TRUE',
  '-addext',
  'keyUsage=critical,keyCertSign,cRLSign',
];
await writeFile(
  path.join(dir, 'ca.ext'),
  'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\n',
);
await writeFile(path.join(dir, 'leaf.ext'), 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n');

function makeCa(name: string): void {
  ossl(
    'req',
    '-x509',
    ...ecKey,
    '-keyout',
    `${name}.key`,
    '-out',
    `${name}.crt`,
    '-days',
    '3650',
    '-subj',
    `/CN=${name}`,
    ...caExt,
  );
}
function makeCert(name: string, issuer: string, days: number, ext = 'leaf.ext'): void {
  ossl('req', '-new', ...ecKey, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
  ossl(
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    `${issuer}.crt`,
    '-CAkey',
    `${issuer}.key`,
    '-CAcreateserial',
    '-out',
    `${name}.crt`,
    '-days',
    String(days),
    '-extfile',
    ext,
  );
}
makeCa('ca');
makeCa('other-ca');
makeCert('client', 'ca', 30);
makeCert('short', 'ca', 1);
makeCert('stranger', 'other-ca', 30);
makeCert('intermediate', 'ca', 365, 'ca.ext');
makeCert('via-intermediate', 'intermediate', 30);
makeCert('via-stranger-intermediate', 'stranger', 30); // issued by a non-CA leaf of another CA
const pem = async (name: string) => readFile(path.join(dir, `${name}.crt`), 'utf8');
const caPem = await pem('ca');
/** As Apache's RequestHeader passes SSL_CLIENT_CERT: newlines replaced by spaces. */
const asHeader = (text: string) => text.trim().replace(/\n/g, ' ');
const client = asHeader(await pem('client'));
const short = asHeader(await pem('short'));
const stranger = asHeader(await pem('stranger'));
const viaIntermediate = await pem('via-intermediate');
const intermediate = await pem('intermediate');

// --- content --------------------------------------------------------------
const tree = await makeTree('content-entitlement');
const db = await testDatabase('content_entitlement');
await insertRepo(db, 'secure', 'secure/el9', caPem);
await insertRepo(db, 'open', 'open');
await tree.repo('secure/el9');
await tree.repo('open');
const rpm = await tree.store('rpm', digestOf('secure'), 'secure.rpm', 'SECURE');
await tree.link('secure/el9', 'Packages/secure.rpm', rpm);
await tree.link('secure/el9', 'Packages/lazy.rpm', tree.storagePath('rpm', digestOf('lazy'), 'lazy.rpm'));
await tree.link('open', 'open.rpm', rpm);

let offset = 0;
const clock = () => Date.now() + offset;
const main = await startDaemon(contentConfig(tree), { db, clock });
const HIT = '/pulp/content/secure/el9/Packages/secure.rpm';
const MISS = '/pulp/content/secure/el9/Packages/lazy.rpm';

test('no certificate: 403 on a protected repository, for files, misses and directories', async () => {
  for (const p of [HIT, MISS, '/pulp/content/secure/el9/', '/pulp/content/secure/el9/Packages/nope.rpm']) {
    const r = await main.get(p, { Host: 'repo.example' });
    assert.equal(r.status, 403, p);
    assert.equal(r.headers['x-sendfile'], undefined);
    assert.equal(r.headers.location, undefined);
  }
});

test('a certificate from the repository CA: 200 for a hit, 302 for a miss', async () => {
  const hit = await main.get(HIT, { [HEADER]: client });
  assert.equal(hit.status, 200);
  assert.equal(hit.headers['x-sendfile'], rpm);
  const miss = await main.get(MISS, { [HEADER]: client, Host: 'repo.example' });
  assert.equal(miss.status, 302);
  assert.ok(miss.headers.location?.startsWith('http://repo.example:8081/streamer/'));
  // Encoded paths are checked after decoding: no way around the prefix.
  assert.equal((await main.get('/pulp/content/%73ecure/el9/Packages/secure.rpm')).status, 403);
  assert.equal(
    (await main.get('/pulp/content/%73ecure/el9/Packages/secure.rpm', { [HEADER]: client })).status,
    200,
  );
});

test('a certificate from another CA, garbage, or nothing usable: 403', async () => {
  const garbage = [
    stranger,
    '-----BEGIN CERTIFICATE----- bm90IGEgY2VydGlmaWNhdGU= -----END CERTIFICATE-----',
    '-----BEGIN CERTIFICATE----- !!not base64!! -----END CERTIFICATE-----',
    'hello',
    '(null)',
    asHeader(caPem.replace(/MII/, 'MIJ')),
  ];
  for (const value of garbage) {
    const r = await main.get(HIT, { [HEADER]: value });
    assert.equal(r.status, 403, value.slice(0, 60));
  }
});

test('an expired or not yet valid certificate: 403', async () => {
  assert.equal((await main.get(HIT, { [HEADER]: short })).status, 200);
  offset = 3 * DAY;
  try {
    assert.equal((await main.get(HIT, { [HEADER]: short })).status, 403);
    assert.equal((await main.get(MISS, { [HEADER]: short, Host: 'x' })).status, 403);
    assert.equal((await main.get(HIT, { [HEADER]: client })).status, 200);
  } finally {
    offset = 0;
  }
  offset = -2 * DAY;
  try {
    assert.equal((await main.get(HIT, { [HEADER]: client })).status, 403);
  } finally {
    offset = 0;
  }
});

test('a chain through one intermediate CA sent along is accepted; the leaf alone is not', async () => {
  assert.equal((await main.get(HIT, { [HEADER]: asHeader(viaIntermediate + intermediate) })).status, 200);
  assert.equal((await main.get(HIT, { [HEADER]: asHeader(viaIntermediate) })).status, 403);
  // An "intermediate" that is not a CA certificate does not count.
  const viaLeaf = await pem('via-stranger-intermediate');
  assert.equal((await main.get(HIT, { [HEADER]: asHeader(viaLeaf + (await pem('stranger'))) })).status, 403);
});

test('the certificate header is accepted with newlines, spaces or percent-encoding', () => {
  const now = Date.now();
  const anchors = parseCertificates(caPem);
  assert.equal(anchors.length, 1);
  assert.ok(verifyClientCertificate(client, anchors, now));
  assert.ok(verifyClientCertificate(client.replace(/ (?!CERTIFICATE)/g, '\n'), anchors, now));
  assert.ok(verifyClientCertificate(encodeURIComponent(client), anchors, now));
  assert.ok(!verifyClientCertificate(stranger, anchors, now));
  assert.ok(!verifyClientCertificate(undefined, anchors, now));
});

test('an unprotected repository needs no certificate', async () => {
  assert.equal((await main.get('/pulp/content/open/open.rpm')).status, 200);
  assert.equal((await main.get('/pulp/content/open/open.rpm', { [HEADER]: stranger })).status, 200);
});

test('the certificate header is only believed from a trusted proxy', async () => {
  const other = await startDaemon(contentConfig(tree, { content: { trusted_proxies: ['192.0.2.1'] } }), {
    db,
  });
  assert.equal((await other.get(HIT, { [HEADER]: client })).status, 403);
  assert.equal((await other.get('/pulp/content/open/open.rpm')).status, 200);
});

test('protection changes are picked up by the refresh, and the hit path needs no database', async () => {
  // A daemon with its own connection, which is closed under it.
  const own = await connect(process.env.MONGODB_URL!, db.db.databaseName);
  const d = await startDaemon(contentConfig(tree), { db: own });
  assert.equal((await d.get('/pulp/content/open/open.rpm')).status, 200);
  await db.repos.updateOne({ _id: 'open' }, { $set: { protection: { ca_cert: caPem } } });
  await d.daemon.refreshProtection();
  assert.equal((await d.get('/pulp/content/open/open.rpm')).status, 403);
  assert.equal((await d.get('/pulp/content/open/open.rpm', { [HEADER]: client })).status, 200);
  await db.repos.updateOne({ _id: 'open' }, { $unset: { protection: '' } });
  await d.daemon.refreshProtection();
  assert.equal((await d.get('/pulp/content/open/open.rpm')).status, 200);

  await own.close();
  assert.equal((await d.get('/pulp/content/open/open.rpm')).status, 200);
  assert.equal((await d.get(HIT, { [HEADER]: client })).status, 200);
  assert.equal((await d.get(HIT)).status, 403);
  assert.equal((await d.get(MISS, { [HEADER]: client, Host: 'repo.example' })).status, 302);
  await assert.rejects(d.daemon.refreshProtection());
  // The old map stays in force after a failed refresh.
  assert.equal((await d.get(HIT)).status, 403);
});

test('the protection map is refreshed in the background', async () => {
  const d = await startDaemon(contentConfig(tree), { db, protectionRefreshMs: 20 });
  await insertRepo(db, 'later', 'later', caPem);
  await tree.repo('later');
  await tree.link('later', 'x.rpm', rpm);
  let status = 0;
  for (let i = 0; i < 250 && status !== 403; i++) {
    status = (await d.get('/pulp/content/later/x.rpm')).status;
    if (status !== 403) await new Promise((r) => setTimeout(r, 20));
  }
  assert.equal(status, 403);
  assert.equal((await d.get('/pulp/content/later/x.rpm', { [HEADER]: client })).status, 200);
});
