/**
 * The task run history (task_runs) behind `pulp-lazy top`'s sweep
 * throughput and last runs: recorded by the real `sweep`, `download-repo`
 * and `schedule` commands (failing runs included), read back newest first,
 * pruned to the newest runs, and shown by `top`.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { silentLogger } from '../src/log.ts';
import { createScheduler, type RunEnd } from '../src/scheduler/index.ts';
import { recentRuns, recordRun, type TaskRun, throughput } from '../src/tasks/runs.ts';
import { testDatabase } from './helpers/db.ts';
import { runCliIn, seedRepo, smallUnits, spawnCli, startUpstream, taskEnv } from './helpers/tasks.ts';

const WORKER = /^.+:\d+:.+$/;

function aRun(i: number, extra: Partial<TaskRun> = {}): TaskRun {
  const finished = new Date(Date.UTC(2026, 0, 1, 10, 0, i));
  return {
    kind: 'sweep',
    worker: 'host:1:x',
    started_at: new Date(finished.getTime() - 1000),
    finished_at: finished,
    claimed: i,
    stored: i,
    failed: 0,
    files: i,
    bytes: 100 * i,
    seconds: 1,
    ...extra,
  };
}

test('runs read back newest first, at most n; the history is pruned to the newest runs', async () => {
  const db = await testDatabase('runs-prune');
  assert.deepEqual(await recentRuns(db), []);
  // Recorded out of order: the history sorts by finish time.
  for (const i of [3, 1, 2]) await recordRun(db, aRun(i), { keep: 5 });
  assert.deepEqual(
    (await recentRuns(db)).map((r) => r.claimed),
    [3, 2, 1],
  );
  const back = (await recentRuns(db, 1))[0]!;
  assert.deepEqual(back, aRun(3));
  for (let i = 4; i <= 20; i++) await recordRun(db, aRun(i), { keep: 5 });
  const count = await db.taskRuns.countDocuments();
  // Pruned once it holds more than keep + keep/10 (at least 1) runs.
  assert.ok(count >= 5 && count <= 6, `${count} runs kept`);
  assert.deepEqual(
    (await recentRuns(db, 5)).map((r) => r.claimed),
    [20, 19, 18, 17, 16],
  );
  assert.ok(
    (await recentRuns(db)).every((r) => r.claimed >= 15),
    'only the oldest runs were deleted',
  );
  const indexes = (await db.taskRuns.indexes()).map((ix) => ix.name);
  assert.ok(indexes.includes('finished_at'), indexes.join(', '));
});

test('throughput: stored units and bytes per second of run time; none for runs that took no time', () => {
  assert.deepEqual(throughput([aRun(10, { seconds: 4 }), aRun(2, { seconds: 1 })]), {
    unitsPerSecond: 12 / 5,
    bytesPerSecond: 1200 / 5,
  });
  assert.equal(throughput([aRun(3, { seconds: 0 })]), null);
  assert.equal(throughput([]), null);
});

test('the real sweep and download-repo commands record their runs, failing ones too; top shows them', async () => {
  const te = await taskEnv('runs-cli', { tasks: { fetch: 'local' } });
  const up = await startUpstream();
  const units = await seedRepo(te, up, 'alpha', smallUnits(3, 4096, 'runs'), { queue: true });
  // One unit's file is gone upstream: the sweep stores two and fails one.
  up.files.delete(units[2]!.files[0]!.upstreamPath);

  const before = new Date();
  const sweep = await runCliIn(te, ['sweep']);
  assert.equal(sweep.code, 1, sweep.stderr);
  const [first, ...older] = await recentRuns(te.db);
  assert.equal(older.length, 0);
  assert.ok(first);
  assert.equal(first.kind, 'sweep');
  assert.match(first.worker, WORKER);
  assert.equal(first.claimed, 3);
  assert.equal(first.stored, 2);
  assert.equal(first.failed, 1);
  assert.equal(first.files, 2);
  assert.equal(first.bytes, 2 * 4096);
  assert.ok(first.seconds >= 0);
  assert.ok(first.started_at >= new Date(before.getTime() - 1000), 'started after the test began');
  assert.ok(first.finished_at >= first.started_at);

  // The failed unit is backed off: the next sweep has nothing to claim, and is recorded all the same.
  const idle = await runCliIn(te, ['sweep']);
  assert.equal(idle.code, 0, idle.stderr);
  const dl = await runCliIn(te, ['download-repo', 'alpha']);
  assert.equal(dl.code, 1, dl.stderr);
  const runs = await recentRuns(te.db);
  assert.deepEqual(
    runs.map((r) => [r.kind, r.claimed, r.stored, r.failed]),
    [
      ['download_repo', 1, 0, 1],
      ['sweep', 0, 0, 0],
      ['sweep', 3, 2, 1],
    ],
  );
  assert.equal(runs[0]!.repo, 'alpha');
  assert.ok(runs[0]!.finished_at >= runs[1]!.finished_at);
  assert.ok(runs[1]!.finished_at >= runs[2]!.finished_at);

  const top = await runCliIn(te, ['top', '--once']);
  assert.equal(top.code, 0, top.stderr);
  assert.match(top.stdout, /sweep: last run nothing to do/);
  assert.match(top.stdout, /last runs\n {2}\d\d:\d\d:\d\d repo alpha +0 stored, 1 failed, 0 B in [\d.]+s\n/);
  assert.match(top.stdout, / {2}\d\d:\d\d:\d\d sweep +0 stored, 0 failed, 0 B in [\d.]+s\n/);
  assert.match(top.stdout, / {2}\d\d:\d\d:\d\d sweep +2 stored, 1 failed, 8\.0 KiB in [\d.]+s/);
});

test('the scheduler hands each run, finished or failed, to onRunEnd', async () => {
  const ends: Array<RunEnd<{ n: number }>> = [];
  let n = 0;
  const s = createScheduler({
    intervalMs: 50,
    logger: silentLogger,
    run: async () => {
      n++;
      if (n === 2) throw new Error('second run fails');
      return { n };
    },
    onRunEnd: async (end) => {
      ends.push(end);
      // A failing hook is logged, and the scheduler goes on.
      if (end.run === 1) throw new Error('hook failed');
    },
  });
  s.start();
  for (let waited = 0; ends.length < 3; waited += 10) {
    assert.ok(waited < 30_000, `${ends.length} runs ended`);
    await sleep(10);
  }
  await s.stop({ deadlineMs: 1000 });
  assert.deepEqual(ends[0]!.summary, { n: 1 });
  assert.equal(ends[0]!.error, undefined);
  assert.equal(ends[1]!.summary, undefined);
  assert.match(String(ends[1]!.error), /second run fails/);
  assert.deepEqual(ends[2]!.summary, { n: 3 });
  for (const e of ends) assert.ok(e.finishedAt >= e.startedAt);
  assert.deepEqual(
    ends.map((e) => e.run),
    [1, 2, 3],
  );
});

test('the real schedule command records each sweep it runs', async () => {
  const te = await taskEnv('runs-schedule', { tasks: { fetch: 'local', sweep_interval: '1s' } });
  const up = await startUpstream();
  await seedRepo(te, up, 'beta', smallUnits(2, 1000, 'sched'), { queue: true });
  const p = spawnCli(te, ['schedule']);
  for (let waited = 0; (await recentRuns(te.db)).every((r) => r.stored === 0); waited += 100) {
    assert.ok(waited < 90_000 && p.child.exitCode === null, `no run recorded: ${p.stderr()}`);
    await sleep(100);
  }
  p.child.kill('SIGTERM');
  assert.equal((await p.exited).code, 0, p.stderr());
  const runs = await recentRuns(te.db);
  const busy = runs.filter((r) => r.stored > 0);
  assert.equal(busy.length, 1, JSON.stringify(runs));
  assert.equal(busy[0]!.kind, 'sweep');
  assert.equal(busy[0]!.claimed, 2);
  assert.equal(busy[0]!.stored, 2);
  assert.equal(busy[0]!.bytes, 2000);
  assert.ok(runs.every((r) => r.kind === 'sweep' && WORKER.test(r.worker)));
});
