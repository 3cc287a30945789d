/**
 * Pulp 2 downloaded a unit several times when download_deferred runs
 * overlapped each other or download_repo. Here two `sweep` processes and a
 * `download-repo` of the same repository start together over the same
 * queue, through the real streamer and a local upstream: every unit is
 * stored by exactly one of them, every file is fetched upstream exactly once
 * and written into storage exactly once, and the queue ends empty.
 *
 * Size: the 2,000 units (PULP_LAZY_SWEEP_UNITS overrides it); the
 * test output reports the time and units/s.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { DownloadRepoSummary } from '../src/tasks/download-repo.ts';
import type { SweepSummary } from '../src/tasks/sweep.ts';
import {
  checkStorage,
  filesIn,
  seedRepo,
  smallUnits,
  spawnCli,
  startTaskStreamer,
  startUpstream,
  taskEnv,
  tasksTempDir,
} from './helpers/tasks.ts';

const UNITS = Number(process.env.PULP_LAZY_SWEEP_UNITS ?? 2000);

test(`${UNITS} queued units, two sweeps and a download-repo at once: each unit stored exactly once`, async () => {
  const te = await taskEnv('concurrent', {
    tasks: { batch_size: 50, concurrency: 8, lease: '2m' },
  });
  const up = await startUpstream();
  const { streamer } = await startTaskStreamer(te);
  const units = await seedRepo(te, up, 'big', smallUnits(UNITS, 512), { queue: true });

  const started = Date.now();
  const procs = [
    spawnCli(te, ['sweep', '--json']),
    spawnCli(te, ['sweep', '--json']),
    spawnCli(te, ['download-repo', 'big', '--json']),
  ];
  const exits = await Promise.all(procs.map((p) => p.exited));
  const seconds = (Date.now() - started) / 1000;
  for (const [i, e] of exits.entries()) {
    assert.equal(e.code, 0, `process ${i} exited ${e.code}: ${procs[i]!.stderr()}`);
  }
  const [a, b] = [0, 1].map((i) => JSON.parse(procs[i]!.stdout()) as SweepSummary);
  const r = JSON.parse(procs[2]!.stdout()) as DownloadRepoSummary;
  console.log(
    `# ${UNITS} units in ${seconds.toFixed(1)} s (${(UNITS / seconds).toFixed(1)} units/s): ` +
      `sweep A stored ${a!.stored}, sweep B stored ${b!.stored}, download-repo stored ${r.stored}`,
  );

  // Each unit was stored by exactly one of the three.
  assert.equal(a!.stored + b!.stored + r.stored, UNITS);
  assert.deepEqual([...a!.failed, ...b!.failed, ...r.failed], []);
  assert.ok(a!.claimed > 0 && b!.claimed > 0 && r.units > 0, 'all three took part');

  // Every file fetched upstream once, written into storage once.
  for (const u of units) {
    const p = u.files[0]!.upstreamPath;
    assert.equal(up.getsOf(p), 1, `${p} fetched ${up.getsOf(p)} times`);
  }
  const streamerWrites = streamer.metrics.saves.get({ result: 'saved' });
  const taskWrites = a!.files_committed + b!.files_committed + r.files_committed;
  assert.equal(streamerWrites + taskWrites, UNITS, 'one storage write per file');

  assert.equal(await te.db.deferred.countDocuments({}), 0, 'every entry gone');
  assert.deepEqual(await checkStorage(te), { downloaded: UNITS, notDownloaded: 0 });
  assert.deepEqual(await filesIn(tasksTempDir(te)), []);
});
