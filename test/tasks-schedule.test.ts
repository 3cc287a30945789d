/**
 * `pulp-lazy schedule` runs the sweep every tasks.sweep_interval and never
 * two at once (Pulp 2's beat could start a download_deferred while the last
 * one still ran). Each sweep here is slower than the 1 s interval; the runs
 * in the JSON logs must not overlap. SIGTERM lets the current run finish and
 * exits 0. Also: which intervals become cron expressions.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { silentLogger } from '../src/log.ts';
import { createScheduler, cronExpression } from '../src/scheduler/index.ts';
import {
  bytes,
  checkStorage,
  logLines,
  seedRepo,
  spawnCli,
  startUpstream,
  taskEnv,
} from './helpers/tasks.ts';

test('intervals a cron expression states exactly use cron; others fall back to timers', () => {
  assert.equal(cronExpression(1000), '* * * * * *');
  assert.equal(cronExpression(15_000), '*/15 * * * * *');
  assert.equal(cronExpression(60_000), '0 * * * * *');
  assert.equal(cronExpression(30 * 60_000), '0 */30 * * * *');
  assert.equal(cronExpression(2 * 3600_000), '0 0 */2 * * *');
  assert.equal(cronExpression(24 * 3600_000), '0 0 0 * * *');
  for (const ms of [1500, 7000, 45 * 60_000, 5 * 3600_000, 2 * 86_400_000]) {
    assert.equal(cronExpression(ms), undefined, `${ms} ms`);
  }
  const s = createScheduler({ intervalMs: 7000, logger: silentLogger, run: async () => 0 });
  assert.equal(s.mode, 'interval');
});

test('the interval mode never overlaps runs either, and stop() aborts a run at the deadline', async () => {
  let active = 0;
  let maxActive = 0;
  let aborted = 0;
  const s = createScheduler({
    intervalMs: 150,
    logger: silentLogger,
    run: async ({ abort }) => {
      active++;
      maxActive = Math.max(maxActive, active);
      try {
        await sleep(400, undefined, { signal: abort }).catch(() => {
          aborted++;
        });
      } finally {
        active--;
      }
    },
  });
  assert.equal(s.mode, 'interval');
  s.start();
  await sleep(1500);
  assert.ok(s.runs >= 2, `${s.runs} runs`);
  assert.equal(maxActive, 1);
  while (!s.running) await sleep(10);
  assert.equal(await s.stop({ deadlineMs: 50 }), 'aborted');
  assert.equal(aborted, 1);
  const runs = s.runs;
  await sleep(400);
  assert.equal(s.runs, runs, 'no run after stop');
});

test('schedule: a sweep every second, never two at once; SIGTERM waits for the current run and exits 0', async () => {
  const te = await taskEnv('schedule', {
    log: { level: 'info' },
    tasks: { fetch: 'local', sweep_interval: '1s', concurrency: 1, batch_size: 1, shutdown_timeout: '20s' },
  });
  const up = await startUpstream();
  up.delayMs = 40; // 16 KiB: about 0.65 s per unit
  let fed = 0;
  const feed = async (n: number) => {
    const units = Array.from({ length: n }, (_, i) => [
      { relative: `s-${fed + i}.bin`, body: bytes(16 * 1024, `s${fed + i}`) },
    ]);
    await seedRepo(
      te,
      up,
      `feed-${createHash('sha1').update(String(fed)).digest('hex').slice(0, 8)}`,
      units,
      {
        queue: true,
      },
    );
    fed += n;
  };
  const p = spawnCli(te, ['schedule']);
  const runs = () => logLines(p.stdout()).filter((l) => String(l.event).startsWith('sweep_'));
  const storedSoFar = () =>
    runs()
      .filter((l) => l.event === 'sweep_finished')
      .reduce((n, l) => n + (l.summary as { stored: number }).stored, 0);
  const waitFor = async (what: string, cond: () => boolean) => {
    for (let waited = 0; !cond(); waited += 25) {
      assert.ok(waited < 90_000 && p.child.exitCode === null, `waiting for ${what}: ${p.stderr()}`);
      await sleep(25);
    }
  };
  // Bursts of work, each slower to store than the 1 s interval; the next burst once it is stored.
  for (let round = 0; round < 3; round++) {
    await feed(2);
    await waitFor(`burst ${round} to be stored`, () => storedSoFar() >= fed);
  }
  // Stop in the middle of a run.
  await feed(2);
  await waitFor('a run to start', () => {
    const r = runs();
    return (
      r.filter((l) => l.event === 'sweep_started').length >
      r.filter((l) => l.event === 'sweep_finished').length
    );
  });
  p.child.kill('SIGTERM');
  const { code } = await p.exited;
  assert.equal(code, 0, p.stderr());

  const logs = logLines(p.stdout());
  const finished = logs.filter((l) => l.event === 'sweep_finished');
  const startedCount = logs.filter((l) => l.event === 'sweep_started').length;
  assert.ok(
    finished.length >= 3,
    `${finished.length} runs finished: ${JSON.stringify(logs.filter((l) => String(l.event).startsWith('sweep')))}`,
  );
  assert.equal(startedCount, finished.length, 'the run in progress at SIGTERM finished');
  const spans = finished
    .map((l) => ({
      run: l.run as number,
      start: Date.parse(l.started_at as string),
      end: Date.parse(l.finished_at as string),
      summary: l.summary as { stored: number; claimed: number },
    }))
    .sort((a, b) => a.start - b.start);
  for (let i = 1; i < spans.length; i++) {
    assert.ok(
      spans[i]!.start >= spans[i - 1]!.end,
      `run ${spans[i]!.run} started before run ${spans[i - 1]!.run} ended`,
    );
  }
  assert.ok(
    spans.some((s) => s.end - s.start > 1000),
    'some run outlasted the interval (so an overlap was possible)',
  );
  const stored = spans.reduce((n, s) => n + s.summary.stored, 0);
  assert.ok(stored > 0);
  // Nothing left half-done: what was stored is verified, the rest is still queued and not leased.
  const { downloaded, notDownloaded } = await checkStorage(te);
  assert.equal(downloaded, stored);
  assert.equal(await te.db.deferred.countDocuments({}), notDownloaded);
  assert.equal(
    await te.db.deferred.countDocuments({ lease_expires_at: { $gt: new Date() } }),
    0,
    'no lease kept',
  );
  assert.ok(logs.some((l) => l.msg === 'stopped'));
});
