/**
 * Pulp 2 deleted a queue entry when its download started, so a worker killed
 * mid-download lost the unit. Here `sweep` processes are killed with SIGKILL
 * at random points of a slow run, several times: after each kill no entry is
 * lost and no unit is marked downloaded without its verified file; once the
 * dead worker's leases expire, one more run stores everything and removes
 * the partial files the dead workers left behind.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { claimUnit } from '../src/queue/index.ts';
import type { SweepSummary } from '../src/tasks/sweep.ts';
import {
  bytes,
  checkStorage,
  filesIn,
  runCliIn,
  seedRepo,
  spawnCli,
  startUpstream,
  taskEnv,
  tasksTempDir,
} from './helpers/tasks.ts';

const UNITS = 30;
const LEASE_MS = 3000;

test('SIGKILL of sweeps at random points loses nothing; the next run completes and cleans up', async () => {
  // fetch = local: the killed process runs the streamer logic too, so its partial files die with it.
  const te = await taskEnv('kill', {
    tasks: { fetch: 'local', lease: `${LEASE_MS}ms`, batch_size: 5, concurrency: 4, backoff_base: '1s' },
  });
  const up = await startUpstream();
  up.delayMs = 15; // 24 KiB files: about 0.4 s each
  const units = await seedRepo(
    te,
    up,
    'k',
    Array.from({ length: UNITS }, (_, i) => [{ relative: `p-${i}.rpm`, body: bytes(24 * 1024, `k${i}`) }]),
    { queue: true },
  );
  const allIds = new Set(units.map((u) => u.id));

  let leftovers = 0;
  for (let round = 0; round < 3; round++) {
    const getsBefore = [...up.gets.values()].reduce((a, b) => a + b, 0);
    const p = spawnCli(te, ['sweep']);
    // Wait until it is fetching, then a random while longer: up to one file's time (about 0.4 s),
    // so the kill lands anywhere in a download, verify or commit. Longer waits let a round finish
    // every unit the earlier rounds left (4 at a time): a CI run once saw round 2 exit 0 first.
    while ([...up.gets.values()].reduce((a, b) => a + b, 0) === getsBefore && p.child.exitCode === null) {
      await sleep(20);
    }
    await sleep(Math.floor(Math.random() * 400));
    assert.equal(
      p.child.exitCode,
      null,
      `round ${round}: the sweep ended before it was killed: ${p.stderr()}`,
    );
    p.child.kill('SIGKILL');
    const { signal } = await p.exited;
    assert.equal(signal, 'SIGKILL');

    // No entry lost: every unit is downloaded or still queued.
    const queued = new Set((await te.db.deferred.find({}).toArray()).map((e) => e.unit_id));
    const downloaded = new Set((await te.db.units.find({ downloaded: true }).toArray()).map((u) => u._id));
    for (const id of allIds)
      assert.ok(queued.has(id) || downloaded.has(id), `round ${round}: unit ${id} was lost`);
    // No unit marked downloaded without its verified file.
    await checkStorage(te);
    leftovers = (await filesIn(tasksTempDir(te))).length;
  }
  assert.ok((await te.db.units.countDocuments({ downloaded: false })) > 0, 'the kills left work to do');

  // The dead workers' leases must run out before their entries and units can be claimed again.
  await sleep(LEASE_MS + 500);
  const last = await runCliIn(te, ['sweep', '--json']);
  assert.equal(last.code, 0, last.stderr);
  const s = JSON.parse(last.stdout) as SweepSummary;
  assert.deepEqual(s.failed, []);
  console.log(
    `# after the kills: ${leftovers} partial files left; the next run removed ${s.temp_files_removed}`,
  );
  assert.ok(
    s.temp_files_removed >= leftovers,
    `removed ${s.temp_files_removed} of ${leftovers} leftover temp files`,
  );
  assert.equal(await te.db.deferred.countDocuments({}), 0, 'every entry done');
  assert.deepEqual(await checkStorage(te), { downloaded: UNITS, notDownloaded: 0 });
  assert.deepEqual(await filesIn(tasksTempDir(te)), [], 'no temp files left behind');
});

test('SIGTERM: the sweep gives its claimed entries back (no attempt counted) and exits 130', async () => {
  const te = await taskEnv('term', { tasks: { fetch: 'local', batch_size: 10, concurrency: 2 } });
  const up = await startUpstream();
  up.delayMs = 20;
  await seedRepo(
    te,
    up,
    't',
    Array.from({ length: 12 }, (_, i) => [{ relative: `t-${i}.rpm`, body: bytes(32 * 1024, `t${i}`) }]),
    { queue: true },
  );
  const p = spawnCli(te, ['sweep']);
  while (up.gets.size === 0 && p.child.exitCode === null) await sleep(20);
  const t0 = Date.now();
  p.child.kill('SIGTERM');
  const { code } = await p.exited;
  console.log(`# exited ${Date.now() - t0} ms after SIGTERM`);
  assert.equal(code, 130, p.stderr());
  assert.match(p.stderr(), /interrupted by SIGTERM/);
  const entries = await te.db.deferred.find({}).toArray();
  assert.ok(entries.length > 0, 'work was left');
  for (const e of entries) {
    assert.ok(
      !e.lease_expires_at || e.lease_expires_at.getTime() <= Date.now(),
      `${e.unit_id} is still leased`,
    );
    assert.equal(e.attempts, 0, `${e.unit_id}: an interrupted attempt does not count`);
  }
  // Every unit not stored can be claimed by the next worker at once (no lease left behind).
  for (const u of await te.db.units.find({ downloaded: false }).toArray()) {
    const c = await claimUnit(te.db, u._id, 'next-worker', 60_000);
    assert.equal(c.kind, 'claimed', `unit ${u._id} is still held`);
  }
  await checkStorage(te);
});
