/**
 * Faults while serving, through the production chain with real daemons:
 *   client → Apache content vhost → content daemon → 302 signed URL → Apache
 *   streamer vhost → FastCGI authorizer → Squid → streamer (`pulp-lazy run
 *   streamer`, a real process) → a local upstream with scripted faults.
 * Faults: the streamer killed with SIGKILL mid-stream and restarted; Squid
 * restarted with transfers running; the upstream resetting connections,
 * stalling, lying about Content-Length (both ways), sending wrong bytes,
 * failing with 500.
 * During a fault a client may fail, but never gets a complete response with
 * wrong bytes (what it got is a prefix of the file). Afterwards: every file in
 * storage verifies against its unit, no unit is downloaded without its files,
 * the queue holds each missed unit that is not stored, and the same requests
 * succeed again with no manual step.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { after, test } from 'node:test';
import { type Authorizer, createAuthorizer } from '../../src/daemons/authorizer.ts';
import { type ContentDaemon, createContentDaemon } from '../../src/daemons/content.ts';
import { silentLogger } from '../../src/log.ts';
import { startProxies, startSquid, stopProxies, stopSquid } from '../../src/proxies/index.ts';
import { chainSections, openUp } from '../helpers/proxies.ts';
import {
  type FaultMode,
  filesBelow,
  type Proc,
  type RawReply,
  type RepoFile,
  rawRequest,
  spawnPulp,
  startFaultyUpstream,
  syncFileRepo,
  until,
  verifyQueue,
  verifyStorage,
  waitHealthy,
} from '../helpers/reliability.ts';
import { bytes, taskEnv } from '../helpers/tasks.ts';

const MiB = 1024 * 1024;

// Cleanup first (hooks run in order): Apache, Squid and the daemons stop before the temp root goes.
const cleanups: Array<() => Promise<unknown>> = [];
async function cleanup(): Promise<void> {
  for (const f of cleanups.splice(0).reverse()) await f().catch((err) => console.log(`# cleanup: ${err}`));
}
after(cleanup);

const te = await taskEnv('rel-faults', {
  ...(await chainSections({
    headers_timeout: '3s',
    body_idle_timeout: '1s',
    failure_cooldown: '1s',
    shutdown_timeout: '2s',
  })),
  log: { level: 'warn' },
});
const config = te.config;
cleanups.push(() => stopProxies(config, { logger: silentLogger }));

const up = await startFaultyUpstream();
const FAULTS: FaultMode[] = ['reset', 'stall', 'short', 'long', 'corrupt', 'badlength', 'status500'];
const FILES = new Map<string, Buffer>([
  ['kill/big.bin', bytes(8 * MiB, 'kill')],
  ...Array.from(
    { length: 6 },
    (_, i) => [`squid/s${i}.bin`, bytes(2 * MiB + i, `squid${i}`)] as [string, Buffer],
  ),
  ...FAULTS.map((m) => [`fault/${m}.bin`, bytes(512 * 1024, `fault-${m}`)] as [string, Buffer]),
]);
const repo = await syncFileRepo(te.db, config.paths, up, 'chain', FILES);
await openUp(te.root, [config.paths.storage, config.paths.published]);

const authorizer: Authorizer = createAuthorizer(config, { logger: silentLogger });
await authorizer.listen();
cleanups.push(() => authorizer.close());
const content: ContentDaemon = createContentDaemon(config, { db: te.db, logger: silentLogger });
await content.listen();
cleanups.push(() => content.close({ deadlineMs: 2000 }));

let streamer: Proc;
const streamerBase = `http://${te.config.streamer.listen}`;
async function startStreamer(): Promise<void> {
  // Restarted inside a test, but serves the tests after it: stopped by the file's cleanup.
  streamer = spawnPulp(['run', 'streamer'], te.env, { keepAfterTest: true });
  await waitHealthy(`${streamerBase}/healthz`, streamer);
}
await startStreamer();
cleanups.push(() => streamer.stop(5000));
await startProxies(config, { logger: silentLogger });

const C = `http://127.0.0.1:${te.config.apache.content_port}`;
const file = (rel: string): RepoFile => repo.get(rel)!;

/** GET through the chain, following the content daemon's redirect once. */
async function get(f: RepoFile): Promise<RawReply> {
  const first = await rawRequest(`${C}/pulp/content/chain/${f.rel}`);
  if (first.status !== 302) return first;
  const location = String(first.headers.location);
  return rawRequest(location, { timeoutMs: 120_000 });
}

/**
 * Never a complete 200 with wrong bytes. With `prefix`, what arrived of a cut
 * reply is also a prefix of the file: true unless upstream sent wrong bytes,
 * which the streamer passes on as they come and verifies at the end (it holds
 * back the last byte, so such a reply is always cut, never complete).
 */
function assertNoWrongBytes(r: RawReply, f: RepoFile, what: string, prefix = true): void {
  if (r.status !== 200) return;
  assert.ok(r.body.length <= f.body.length, `${what}: more bytes than the file has`);
  if (r.complete) {
    assert.equal(r.body.length, f.body.length, `${what}: a complete reply of the wrong size`);
    assert.ok(r.body.equals(f.body), `${what}: a complete reply with wrong bytes`);
  } else if (prefix) {
    assert.ok(f.body.subarray(0, r.body.length).equals(r.body), `${what}: wrong bytes reached the client`);
  }
}

/** Retries `f` through the chain until it is served (bounded): recovery needs no manual step. */
async function servedAgain(f: RepoFile): Promise<void> {
  let last: RawReply | undefined;
  await until(
    async () => {
      last = await get(f);
      assertNoWrongBytes(last, f, `${f.rel} after the fault`);
      return last.status === 200 && last.complete;
    },
    () =>
      `${f.rel} is served again (last: HTTP ${last?.status}, ${last?.body.length} bytes: ${last?.body.subarray(0, 300)})`,
    60_000,
  );
  await until(
    async () => (await te.db.units.findOne({ _id: f.unitId }))?.downloaded === true,
    `${f.rel} saved`,
  );
}

const missed = new Set<string>();

test('the streamer killed (SIGKILL) mid-stream: the client is cut, never fed wrong bytes; restarted, it serves and saves', async () => {
  const f = file('kill/big.bin');
  up.modes.set(f.upstreamPath, 'slow');
  missed.add(f.unitId);
  const pending = get(f);
  await until(() => (up.sent.get(f.upstreamPath) ?? 0) >= 1 * MiB, 'the transfer is under way');
  assert.ok((up.sent.get(f.upstreamPath) ?? 0) < f.body.length, 'still running when killed');
  streamer.child.kill('SIGKILL');
  await streamer.exited;
  const r = await pending;
  assertNoWrongBytes(r, f, 'the cut transfer');
  assert.ok(
    !(r.status === 200 && r.complete),
    `the client saw the failure (HTTP ${r.status}, complete ${r.complete})`,
  );
  await verifyStorage(te.db, config.paths.storage);
  assert.equal((await te.db.units.findOne({ _id: f.unitId }))?.downloaded, false);
  const leftovers = await filesBelow(path.join(config.paths.working, 'tmp'));
  console.log(`# SIGKILL: ${leftovers.length} temp file(s) of the killed streamer left in the working dir`);

  await startStreamer();
  await servedAgain(f);
  await verifyStorage(te.db, config.paths.storage);
});

test('Squid restarted with transfers running: no wrong bytes, everything served and saved afterwards', async () => {
  assert.ok(
    streamer.alive(),
    `the streamer is up: ${streamer.stdout().slice(-3000)}${streamer.stderr().slice(-1000)}`,
  );
  const fs = [...repo.values()].filter((f) => f.rel.startsWith('squid/'));
  for (const f of fs) {
    up.modes.set(f.upstreamPath, 'slow');
    missed.add(f.unitId);
  }
  const replies: Array<RawReply | undefined> = fs.map(() => undefined);
  const pending = fs.map((f, i) =>
    get(f).then((r) => {
      replies[i] = r;
      return r;
    }),
  );
  await until(
    () => fs.every((f) => (up.sent.get(f.upstreamPath) ?? 0) > 0),
    () =>
      `every transfer is under way (upstream sent ${fs.map((f) => up.sent.get(f.upstreamPath) ?? 0).join(', ')}; ` +
      `replies ${replies.map((r) => (r ? `${r.status} ${r.body.subarray(0, 200)}` : '-')).join(' | ')})`,
  );
  await stopSquid(config, { logger: silentLogger });
  await startSquid(config, { logger: silentLogger });
  const results = await Promise.all(pending);
  for (const [i, r] of results.entries()) assertNoWrongBytes(r, fs[i]!, `${fs[i]!.rel} across the restart`);
  for (const f of fs) await servedAgain(f);
  const report = await verifyStorage(te.db, config.paths.storage);
  assert.ok(report.downloaded >= fs.length + 1);
});

const faulty = FAULTS.map((m) => ({ m, f: file(`fault/${m}.bin`) }));

test('upstream faults (reset, stall, short and long bodies, wrong bytes, wrong Content-Length, 500): no wrong bytes, nothing bad stored, each miss queued', async () => {
  for (const { m, f } of faulty) {
    up.modes.set(f.upstreamPath, m);
    missed.add(f.unitId);
  }
  const results = await Promise.all(faulty.map(({ f }) => get(f)));
  for (const [i, r] of results.entries()) {
    const { m, f } = faulty[i]!;
    assertNoWrongBytes(r, f, `upstream fault "${m}"`, m !== 'corrupt');
    assert.ok(!(r.status === 200 && r.complete), `fault "${m}": the client saw a failure (HTTP ${r.status})`);
  }
  await verifyStorage(te.db, config.paths.storage);
  for (const { m, f } of faulty) {
    assert.equal(
      (await te.db.units.findOne({ _id: f.unitId }))?.downloaded,
      false,
      `fault "${m}": not downloaded`,
    );
  }
  // Each unit a client missed and that is not stored must be in the queue (else no sweep ever stores it).
  const queued = new Set((await te.db.deferred.find({}).toArray()).map((e) => e.unit_id));
  const notQueued = faulty.filter(({ f }) => !queued.has(f.unitId)).map(({ m }) => m);
  assert.deepEqual(
    notQueued,
    [],
    `missed, not stored and not queued after the upstream fault: ${notQueued.join(', ')}`,
  );
});

test('the upstream fixed: the same requests succeed with no manual step, once the failure cool-down (1 s) is over', async () => {
  for (const { f } of faulty) up.modes.set(f.upstreamPath, 'ok');
  for (const { f } of faulty) await servedAgain(f);
  await verifyStorage(te.db, config.paths.storage);
});

test('afterwards: storage verified, queue consistent, every missed file served from storage', async () => {
  const report = await verifyStorage(te.db, config.paths.storage);
  assert.equal(report.downloaded, missed.size);
  await verifyQueue(te.db, missed);
  const total = () => [...up.gets.values()].reduce((a, b) => a + b, 0);
  const gets = total();
  for (const id of missed) {
    const f = [...repo.values()].find((x) => x.unitId === id)!;
    const r = await get(f);
    assert.equal(r.status, 200);
    assert.ok(r.complete && r.body.equals(f.body), `${f.rel} from storage`);
  }
  assert.equal(total(), gets, 'no new upstream GET');
  assert.ok(streamer.alive(), 'the restarted streamer is still up');
});
