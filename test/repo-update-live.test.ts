/**
 * `repo update` takes effect in running processes, no restart, no re-sync
 * (#22): an HTTPS feed requires a client certificate issued by its client CA.
 * The repository starts with certificate A; the feed then accepts only
 * certificates of another CA, and `repo update --client-cert B --client-key B
 * --header ...` alone makes the next miss of the running streamer daemon, the
 * next sweep of the running scheduler (its in-process streamer, tasks.fetch
 * "local") and the next `pulp-lazy sync` work, with the header sent. `repo
 * show --json` holds neither key nor password.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import type http from 'node:http';
import https from 'node:https';
import path from 'node:path';
import { test } from 'node:test';
import { newDeferredEntry } from '../src/db/index.ts';
import { makePki } from './helpers/chain.ts';
import { runCli, runDaemon } from './helpers/cli.ts';
import { eventually, fetchRaw, urlFor } from './helpers/streamer.ts';
import { bytes, sha256, spawnCli, taskEnv } from './helpers/tasks.ts';
import { listenForTestFile } from './helpers/upstream.ts';

const te = await taskEnv('repo-live', {
  log: { level: 'info' },
  streamer: { listen: '127.0.0.1:0' },
  tasks: { fetch: 'local', sweep_interval: '1s', backoff_base: '1s', backoff_max: '2s' },
});
const cli = async (...args: string[]) => {
  const r = await runCli(args, { env: te.env });
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
};

const pkiDir = (name: string) =>
  mkdir(path.join(te.root, name), { recursive: true }).then(() => makePki(path.join(te.root, name)));
const [a, b] = [await pkiDir('pki-a'), await pkiDir('pki-b')];
const pem = (f: string) => readFile(f, 'utf8');

// The feed: server certificate of CA A (the repository's --ca-cert), client certificates of one CA.
const serverTls = async (clientCa: string) => ({
  key: await pem(a.serverKey),
  cert: await pem(a.serverCert),
  ca: await pem(clientCa),
  // New ticket keys with each CA: no session of the old certificate resumes.
  ticketKeys: randomBytes(48),
});
const files = new Map<string, Buffer>();
const seen: Array<{ path: string; headers: http.IncomingHttpHeaders }> = [];
const feed = https.createServer(
  { ...(await serverTls(a.ca)), requestCert: true, rejectUnauthorized: true },
  (req, res) => {
    const p = new URL(req.url ?? '/', 'https://x').pathname;
    seen.push({ path: p, headers: req.headers });
    const body = p === '/repo/PULP_MANIFEST' ? manifest() : files.get(p.replace('/repo/', ''));
    if (body === undefined) res.writeHead(404).end();
    else res.writeHead(200, { 'content-length': body.length }).end(body);
  },
);
const feedUrl = `https://127.0.0.1:${await listenForTestFile(feed)}/repo/`;
function manifest(): Buffer {
  return Buffer.from([...files].map(([rel, body]) => `${rel},${sha256(body)},${body.length}\n`).join(''));
}
/** The feed accepts client certificates of `clientCa` only, from the next connection on (open ones are cut). */
async function acceptOnly(clientCa: string): Promise<void> {
  feed.setSecureContext(await serverTls(clientCa));
  feed.closeAllConnections();
}

for (let i = 1; i <= 4; i++) files.set(`f${i}.bin`, bytes(64 * 1024, `live${i}`));

/** The storage path and unit of each synced file, by name. */
async function unitsByName(): Promise<Map<string, { id: string; storagePath: string }>> {
  const units = await te.db.units.find({ unit_type_id: 'file' }).toArray();
  return new Map(
    units.map((u) => [u.files[0]!.relative_path, { id: u._id, storagePath: u.files[0]!.storage_path }]),
  );
}

test('a rotated client certificate and a new header: used by the running streamer and scheduler and by sync, no restart', {
  timeout: 240_000,
}, async () => {
  await cli(
    'repo',
    'create',
    'live',
    '--type',
    'file',
    '--feed',
    feedUrl,
    '--ca-cert',
    a.ca,
    '--client-cert',
    a.clientCert,
    '--client-key',
    a.clientKey,
    '--basic-auth',
    'mirror:s3cret-pass',
  );
  await cli('sync', 'live');
  const units = await unitsByName();
  const unit = (name: string) => units.get(name) ?? assert.fail(`${name} not synced`);

  const streamer = await runDaemon('streamer', te.env, 'streamer listening');
  const scheduler = spawnCli(te, ['schedule']);
  const miss = (name: string) => fetchRaw(urlFor(`http://${streamer.listen}`, unit(name).storagePath));
  const queue = (name: string) =>
    te.db.deferred.insertOne(newDeferredEntry({ unit_id: unit(name).id, unit_type_id: 'file' }, new Date()));
  const downloaded = async (name: string) =>
    (await te.db.units.findOne({ _id: unit(name).id }))?.downloaded === true;
  const running = () => {
    assert.equal(streamer.child.exitCode, null, 'the streamer still runs');
    assert.equal(scheduler.child.exitCode, null, `the scheduler still runs: ${scheduler.stderr()}`);
  };

  // Certificate A works: a miss, and a sweep of the scheduler (which reads the repository then).
  const first = await miss('f1.bin');
  assert.equal(first.status, 200);
  assert.equal(sha256(first.body), sha256(files.get('f1.bin')!));
  await queue('f2.bin');
  await eventually(() => downloaded('f2.bin'), 'the scheduler stores f2 with certificate A', 60_000);

  // The feed now refuses certificate A: the running streamer fails.
  await acceptOnly(b.ca);
  const refused = await miss('f3.bin');
  assert.equal(refused.status, 502, refused.body.toString());

  await cli(
    'repo',
    'update',
    'live',
    '--client-cert',
    b.clientCert,
    '--client-key',
    b.clientKey,
    '--header',
    'X-Live: rotated',
  );

  // The streamer daemon: the next misses use certificate B and send the header.
  let served: Awaited<ReturnType<typeof miss>> | undefined;
  await eventually(
    async () => {
      served = await miss('f3.bin');
      return served.status === 200;
    },
    'a miss of the running streamer succeeds with certificate B',
    30_000,
  );
  assert.equal(sha256(served!.body), sha256(files.get('f3.bin')!));
  const f3 = seen.filter((s) => s.path === '/repo/f3.bin');
  assert.equal(f3.at(-1)?.headers['x-live'], 'rotated');
  assert.equal(seen.find((s) => s.path === '/repo/f1.bin')?.headers['x-live'], undefined);

  // The scheduler: a queued unit is stored by its next sweeps.
  await queue('f4.bin');
  await eventually(() => downloaded('f4.bin'), 'the scheduler stores f4 with certificate B', 60_000);
  assert.equal(seen.filter((s) => s.path === '/repo/f4.bin').at(-1)?.headers['x-live'], 'rotated');

  // A sync: the feed grew by one file.
  files.set('f5.bin', bytes(1024, 'live5'));
  const summary = JSON.parse(await cli('sync', 'live', '--json')) as { units: number };
  assert.equal(summary.units, 5);
  assert.equal(seen.filter((s) => s.path === '/repo/PULP_MANIFEST').at(-1)?.headers['x-live'], 'rotated');
  running();

  // Nothing secret is shown.
  const shown = await cli('repo', 'show', 'live', '--json');
  for (const secret of [await pem(a.clientKey), await pem(b.clientKey)]) {
    const body = secret.split('\n').find((l) => l.length > 40) ?? assert.fail('no key body');
    assert.ok(!shown.includes(body), 'no private key');
  }
  assert.doesNotMatch(shown, /PRIVATE KEY|s3cret-pass/);
  const up = (JSON.parse(shown) as { upstream: Record<string, unknown> }).upstream;
  assert.deepEqual(up.headers, ['X-Live: rotated']);
});
