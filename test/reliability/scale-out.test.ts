/**
 * Scale-out: two streamer processes (`pulp-lazy run streamer`) and two sweep
 * workers (`pulp-lazy sweep`, each fetching through "its" streamer, as on two
 * hosts) on one database and one shared storage, while clients hit both
 * streamers for the same cold files. Every upstream GET is attributed to the
 * process that sent it (the owner of the connection's client port, from
 * /proc).
 *
 * The streamers share their fetches (streamer.share_fetches): whichever
 * streamer claims a cold path first fetches it, the other passes its
 * clients to it (src/streamer/shared-flight.ts).
 *
 * What the design guarantees, and what is checked:
 *   - every path is fetched upstream exactly once, whichever streamer and
 *     however many clients and sweeps ask (shared fetch leases; afterwards
 *     the file is served from storage);
 *   - a unit is fetched by one sweep at a time and never again once stored
 *     (unit leases, src/queue/units.ts): a unit only the sweeps asked for is
 *     fetched exactly once, though the two sweeps go through different
 *     streamers;
 *   - nothing is lost: afterwards every unit is downloaded, the queue is empty,
 *     every stored file verifies, every client got the right bytes.
 */
import assert from 'node:assert/strict';
import { copyFile } from 'node:fs/promises';
import path from 'node:path';
import { after, test } from 'node:test';
import { freePorts } from '../helpers/proxies.ts';
import {
  filesBelow,
  mapLimit,
  queueUnits,
  type RepoFile,
  rawRequest,
  spawnPulp,
  startFaultyUpstream,
  syncFileRepo,
  verifyQueue,
  verifyStorage,
  waitHealthy,
} from '../helpers/reliability.ts';
import { bytes, taskEnv } from '../helpers/tasks.ts';

const SWEEP_ONLY = 160;
const SHARED = 24;
const CLIENTS_PER_FILE = 6;

test('two streamers and two sweeps on one database and storage: every path fetched once, nothing lost', async () => {
  const [portA, portB] = await freePorts(2);
  const te = await taskEnv('rel-scaleout', {
    tasks: { fetch: 'proxy', concurrency: 4, batch_size: 16 },
    log: { level: 'warn' },
  });
  // Two configs, one per "host": its own streamer port, and its sweep going through that streamer.
  const configs: string[] = [];
  for (const [name, port] of [
    ['a', portA],
    ['b', portB],
  ] as const) {
    await te.reconfigure({
      streamer: { listen: `127.0.0.1:${port}`, share_fetches: true },
      redirect: { scheme: 'http', host: '127.0.0.1', port: port!, path: '/' },
    });
    const file = path.join(te.root, `config-${name}.toml`);
    await copyFile(te.configPath, file);
    configs.push(file);
  }

  const up = await startFaultyUpstream();
  const files = new Map<string, Buffer>();
  for (let i = 0; i < SWEEP_ONLY + SHARED; i++) {
    files.set(`s/f${i}.bin`, bytes(i < SWEEP_ONLY ? 8 * 1024 + i : 384 * 1024 + i, `scale${i}`));
  }
  const repo = await syncFileRepo(te.db, te.config.paths, up, 'scale', files);
  const all = [...repo.values()];
  const shared = all.slice(SWEEP_ONLY);
  // Shared files come slowly, so that clients and sweeps overlap on them.
  for (const f of shared) up.modes.set(f.upstreamPath, 'slow');
  await queueUnits(
    te.db,
    all.map((f) => f.unitId),
  );

  const envOf = (i: number) => ({ ...te.env, PULP_LAZY_CONFIG: configs[i]! });
  const streamers = [spawnPulp(['run', 'streamer'], envOf(0)), spawnPulp(['run', 'streamer'], envOf(1))];
  after(() => Promise.all(streamers.map((s) => s.stop())));
  const bases = [`http://127.0.0.1:${portA}`, `http://127.0.0.1:${portB}`];
  for (const [i, s] of streamers.entries()) await waitHealthy(`${bases[i]}/healthz`, s);
  up.pids = streamers.map((s) => s.pid);

  // Clients on both streamers for the shared cold files, while both sweeps run.
  const sweeps = [spawnPulp(['sweep', '--json'], envOf(0)), spawnPulp(['sweep', '--json'], envOf(1))];
  const requests = shared.flatMap((f) =>
    Array.from({ length: CLIENTS_PER_FILE }, (_, k) => ({ f, base: bases[k % 2]! })),
  );
  const wrong: string[] = [];
  await mapLimit(requests, 48, async ({ f, base }: { f: RepoFile; base: string }) => {
    const target = f.storagePath.split('/').map(encodeURIComponent).join('/');
    const r = await rawRequest(base, { target });
    if (r.status !== 200 || !r.complete || !r.body.equals(f.body)) {
      wrong.push(`${base}${target}: HTTP ${r.status}, ${r.body.length} bytes, complete ${r.complete}`);
    }
  });
  const results = await Promise.all(sweeps.map((s) => s.exited));
  assert.deepEqual(wrong.slice(0, 5), [], `${wrong.length} client requests failed`);
  for (const [i, r] of results.entries()) {
    assert.equal(
      r.code,
      0,
      `sweep ${i} exit ${r.code}: ${sweeps[i]!.stdout()} ${sweeps[i]!.stderr().slice(-2000)}`,
    );
  }
  const summaries = sweeps.map(
    (s) =>
      JSON.parse(s.stdout()) as {
        claimed: number;
        stored: number;
        skipped_already_downloaded: number;
        failed: unknown[];
      },
  );

  // Upstream GETs, per path and per process: exactly one per path, by either streamer.
  const byStreamer = [0, 0];
  for (const f of all) {
    const byPid = up.getsByPid.get(f.upstreamPath) ?? new Map();
    assert.equal(byPid.get('unknown') ?? 0, 0, `a GET of ${f.upstreamPath} came from an unknown process`);
    assert.equal(
      up.getsOf(f.upstreamPath),
      1,
      `${f.upstreamPath} fetched ${up.getsOf(f.upstreamPath)} times (${[...byPid].join('; ')})`,
    );
    for (const [i, s] of streamers.entries()) if (byPid.has(s.pid)) byStreamer[i]!++;
  }
  const relays = await Promise.all(
    bases.map(async (b) => {
      const m = (await rawRequest(b, { target: '/metrics' })).body.toString();
      return Number(/pulp_lazy_streamer_shared_relays_total\{result="relayed"\} (\d+)/.exec(m)?.[1] ?? 0);
    }),
  );
  console.log(
    `# scale-out: sweeps stored ${summaries.map((s) => s.stored).join(' + ')} ` +
      `(already downloaded: ${summaries.map((s) => s.skipped_already_downloaded).join(' + ')}); ` +
      `upstream GETs by streamer ${byStreamer.join(' + ')}; requests relayed to the holder ${relays.join(' + ')}`,
  );

  // Nothing lost.
  const report = await verifyStorage(te.db, te.config.paths.storage);
  assert.equal(report.downloaded, all.length, 'every unit is downloaded');
  assert.equal(report.files, all.length);
  assert.equal(await te.db.deferred.countDocuments({}), 0, 'the queue is empty');
  await verifyQueue(
    te.db,
    shared.map((f) => f.unitId),
  );
  // Clients' fetches take their units out of the queue (the streamer clears the entry when it stores
  // the unit), so the sweeps completed every sweep-only unit and at most all the others.
  const total = summaries.reduce((n, s) => n + s.stored + s.skipped_already_downloaded, 0);
  assert.ok(total >= SWEEP_ONLY && total <= all.length, `the sweeps completed ${total} units`);
  for (const s of summaries) assert.deepEqual(s.failed, []);
  assert.deepEqual(await filesBelow(te.config.paths.working), [], 'no temp files left');
});
