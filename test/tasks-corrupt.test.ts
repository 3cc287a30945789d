/**
 * Upstream serves wrong bytes for one unit: that unit is not stored, its
 * queue entry stays with the error and a backoff (Pulp 2 had deleted it at
 * the start), every other unit is stored, and the sweep exits 1 naming it.
 * Once upstream is fixed, `queue retry UNIT` and a sweep store it; and
 * `queue retry --all` makes every parked or backed-off entry claimable at
 * once (leaving an entry leased by a live worker alone).
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { deferredId } from '../src/db/index.ts';
import { claimableFilter, claimOne, type QueueStats } from '../src/queue/index.ts';
import type { SweepSummary } from '../src/tasks/sweep.ts';
import {
  checkStorage,
  filesIn,
  runCliIn,
  seedRepo,
  smallUnits,
  startTaskStreamer,
  startUpstream,
  taskEnv,
  tasksTempDir,
} from './helpers/tasks.ts';

test('a unit with corrupt upstream bytes keeps its entry with the error; retry stores it once fixed', async () => {
  const te = await taskEnv('corrupt', { tasks: { backoff_base: '10m', backoff_max: '1h', max_attempts: 5 } });
  const up = await startUpstream();
  await startTaskStreamer(te);
  const units = await seedRepo(te, up, 'r', smallUnits(6, 4096), { queue: true });
  const bad = units[2]!;
  const badFile = bad.files[0]!;
  up.corrupt.add(badFile.upstreamPath);

  const first = await runCliIn(te, ['sweep', '--json']);
  assert.equal(first.code, 1, first.stderr);
  assert.match(first.stderr, new RegExp(`1 unit\\(s\\) could not be stored: ${bad.id}`));
  const s1 = JSON.parse(first.stdout) as SweepSummary;
  assert.equal(s1.stored, 5);
  assert.deepEqual(
    s1.failed.map((f) => f.unit_id),
    [bad.id],
  );
  console.log(`# recorded error: ${s1.failed[0]!.error}`);
  assert.match(s1.failed[0]!.error, /sha256 [0-9a-f]{64}, expected/, 'the error says the bytes were wrong');

  const entry = await te.db.deferred.findOne({ unit_id: bad.id });
  assert.ok(entry, 'the entry is kept');
  assert.equal(entry.state, 'pending');
  assert.equal(entry.attempts, 1);
  assert.equal(entry.lease_owner, null);
  assert.equal(entry.last_error, s1.failed[0]!.error);
  assert.ok(entry.next_attempt_at.getTime() > Date.now() + 5 * 60_000, 'next attempt after the backoff');
  assert.equal(await te.db.deferred.countDocuments({}), 1, 'the other entries are gone');
  assert.deepEqual(await checkStorage(te), { downloaded: 5, notDownloaded: 1 });
  await assert.rejects(readFile(badFile.storage_path), 'no bad bytes in storage');

  const q = await runCliIn(te, ['queue', '--json']);
  assert.equal(q.code, 0, q.stderr);
  const stats = JSON.parse(q.stdout) as QueueStats;
  assert.equal(stats.total, 1);
  assert.equal(stats.waiting, 1);
  assert.deepEqual(
    stats.failing.map((f) => [f.unit_id, f.last_error]),
    [[bad.id, entry.last_error]],
  );
  const human = await runCliIn(te, ['queue']);
  assert.match(human.stdout, /1 waiting to retry/);
  assert.ok(human.stdout.includes(bad.id));

  // Backing off: a sweep now has nothing to claim.
  const idle = await runCliIn(te, ['sweep', '--json']);
  assert.equal(idle.code, 0, idle.stderr);
  assert.equal((JSON.parse(idle.stdout) as SweepSummary).claimed, 0);

  up.corrupt.clear();
  const retry = await runCliIn(te, ['queue', 'retry', bad.id]);
  assert.equal(retry.code, 0, retry.stderr);
  assert.match(retry.stdout, /retrying 1 unit/);
  const again = await runCliIn(te, ['queue', 'retry', bad.id]);
  assert.equal(again.code, 1, 'nothing left to retry');
  const usage = await runCliIn(te, ['queue', 'retry']);
  assert.equal(usage.code, 2);

  const last = await runCliIn(te, ['sweep', '--json']);
  assert.equal(last.code, 0, last.stderr);
  assert.equal((JSON.parse(last.stdout) as SweepSummary).stored, 1);
  assert.equal(await te.db.deferred.countDocuments({}), 0);
  assert.deepEqual(await checkStorage(te), { downloaded: 6, notDownloaded: 0 });
  assert.deepEqual(await readFile(badFile.storage_path), badFile.body);
  assert.deepEqual(await filesIn(tasksTempDir(te)), []);
});

test('queue retry --all: a parked and a backed-off unit become claimable now and a sweep stores them', async () => {
  const te = await taskEnv('corrupt-all', {
    tasks: { backoff_base: '10m', backoff_max: '1h', max_attempts: 2 },
  });
  const up = await startUpstream();
  await startTaskStreamer(te);
  const units = await seedRepo(te, up, 'r', smallUnits(6, 4096, 'all'), { queue: true });
  const parked = units[1]!;
  const waiting = units[3]!;
  const held = units[5]!;
  for (const u of [parked, waiting]) up.corrupt.add(u.files[0]!.upstreamPath);
  // `parked` failed once before: this attempt is its last (max_attempts = 2).
  await te.db.deferred.updateOne({ unit_id: parked.id }, { $set: { attempts: 1 } });
  // `held` is leased by another live worker (an attempt counted): no sweep or retry may take it.
  const heldEntry = await claimOne(te.db, deferredId({ unit_id: held.id, unit_type_id: 'file' }), 'other', {
    leaseMs: 3600_000,
  });
  assert.ok(heldEntry);

  const first = await runCliIn(te, ['sweep', '--json']);
  assert.equal(first.code, 1, first.stderr);
  const s1 = JSON.parse(first.stdout) as SweepSummary;
  assert.equal(s1.stored, 3);
  assert.deepEqual(
    s1.failed.map((f) => [f.unit_id, f.parked]).sort(),
    [
      [parked.id, true],
      [waiting.id, false],
    ].sort(),
  );
  const before = await runCliIn(te, ['queue', '--json']);
  assert.equal(before.code, 0, before.stderr);
  const st = JSON.parse(before.stdout) as QueueStats;
  assert.deepEqual([st.total, st.ready, st.waiting, st.leased, st.failed], [3, 0, 1, 1, 1]);
  assert.equal((await te.db.deferred.findOne({ unit_id: parked.id }))?.state, 'failed');
  assert.equal(await te.db.deferred.countDocuments(claimableFilter(new Date())), 0, 'nothing claimable');

  up.corrupt.clear();
  const retry = await runCliIn(te, ['queue', 'retry', '--all']);
  assert.equal(retry.code, 0, retry.stderr);
  console.log(`# ${retry.stdout.trim()}`);
  assert.match(retry.stdout, /retrying 2 unit\(s\) \(cool-down lifted on 2 catalog entries\)/);
  for (const u of [parked, waiting]) {
    const e = await te.db.deferred.findOne({ unit_id: u.id });
    assert.ok(e);
    assert.equal(e.state, 'pending');
    assert.equal(e.attempts, 0);
    assert.equal(e.last_error, null);
    assert.equal(e.lease_owner, null);
    assert.ok(e.next_attempt_at.getTime() <= Date.now(), 'due now');
  }
  assert.equal(await te.db.deferred.countDocuments(claimableFilter(new Date())), 2, 'both claimable now');
  const still = await te.db.deferred.findOne({ unit_id: held.id });
  assert.equal(still?.lease_owner, 'other', 'the leased entry is left alone');
  assert.equal(still.attempts, 1);

  const none = await runCliIn(te, ['queue', 'retry', '--all']);
  assert.equal(none.code, 0, none.stderr);
  assert.match(none.stdout, /retrying 0 unit/);
  const noneJson = await runCliIn(te, ['queue', 'retry', '--all', '--json']);
  assert.equal(noneJson.code, 0, noneJson.stderr);
  assert.deepEqual(JSON.parse(noneJson.stdout).units, [], '--json after retry prints JSON');
  const both = await runCliIn(te, ['queue', 'retry', '--all', parked.id]);
  assert.equal(both.code, 2, 'either --all or a unit id');

  const last = await runCliIn(te, ['sweep', '--json']);
  assert.equal(last.code, 0, last.stderr);
  const s2 = JSON.parse(last.stdout) as SweepSummary;
  assert.equal(s2.claimed, 2);
  assert.equal(s2.stored, 2);
  assert.deepEqual(s2.failed, []);
  assert.deepEqual(
    (await te.db.deferred.find({}).toArray()).map((e) => e.unit_id),
    [held.id],
    'only the leased entry is left',
  );
  assert.deepEqual(await checkStorage(te), { downloaded: 5, notDownloaded: 1 });
  for (const u of [parked, waiting])
    assert.deepEqual(await readFile(u.files[0]!.storage_path), u.files[0]!.body);
  assert.deepEqual(await filesIn(tasksTempDir(te)), []);
});
