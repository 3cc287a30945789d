/**
 * `download-repo --verify-all` re-hashes every stored file: a deleted file
 * and a corrupted one are fetched again, a unit wrongly flagged as not
 * downloaded is fixed without a fetch, and a unit whose file is gone and
 * cannot be fetched loses its `downloaded` flag and is queued (Pulp 2's
 * verify_all_units never touched the flag, plan.io #2177).
 */
import assert from 'node:assert/strict';
import { readFile, rm, writeFile } from 'node:fs/promises';
import { test } from 'node:test';
import type { DownloadRepoSummary } from '../src/tasks/download-repo.ts';
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

test('download-repo --verify-all restores a deleted and a corrupted file and fixes the flags', async () => {
  const te = await taskEnv('verify');
  const up = await startUpstream();
  await startTaskStreamer(te);
  const units = await seedRepo(te, up, 'v', smallUnits(6, 8192));

  const plain = await runCliIn(te, ['download-repo', 'v']);
  assert.equal(plain.code, 0, plain.stderr);
  assert.match(plain.stdout, /6 units, 6 stored, 0 failed/);
  assert.match(plain.stderr, /files 6\/6/, 'progress lines on a non-TTY stderr');
  assert.deepEqual(await checkStorage(te), { downloaded: 6, notDownloaded: 0 });

  const [deleted, corrupted, misflagged, lost] = units.map((u) => u.files[0]!);
  await rm(deleted!.storage_path);
  const bad = Buffer.from(corrupted!.body);
  bad[100] = bad[100]! ^ 0x55;
  await writeFile(corrupted!.storage_path, bad);
  await te.db.units.updateOne({ _id: units[2]!.id }, { $set: { downloaded: false } });
  await rm(lost!.storage_path);
  up.files.delete(lost!.upstreamPath);
  const getsBefore = new Map(
    units.map((u) => [u.files[0]!.upstreamPath, up.getsOf(u.files[0]!.upstreamPath)]),
  );

  // A plain download-repo trusts the flags: nothing to do for units flagged downloaded.
  const trusting = await runCliIn(te, ['download-repo', 'v', '--json']);
  assert.equal(trusting.code, 0, trusting.stderr);
  const t = JSON.parse(trusting.stdout) as DownloadRepoSummary;
  assert.equal(t.units, 1, 'only the unit flagged not downloaded');
  assert.equal(t.files_fetched, 0);
  assert.equal(t.files_verified, 1);

  const r = await runCliIn(te, ['download-repo', 'v', '--verify-all', '--json']);
  assert.equal(r.code, 1, 'one unit could not be restored');
  assert.match(r.stderr, /1 unit\(s\) of "v" could not be stored/);
  const s = JSON.parse(r.stdout) as DownloadRepoSummary;
  assert.equal(s.verify_all, true);
  assert.equal(s.units, 6);
  assert.equal(s.stored, 5);
  assert.equal(s.files_fetched, 2, 'the deleted and the corrupted file');
  assert.equal(s.files_repaired, 1, 'the corrupted file was removed first');
  assert.equal(s.files_verified, 3);
  assert.equal(s.flags_set, 0, 'the misflagged unit was fixed by the plain run already');
  assert.equal(s.flags_cleared, 1);
  assert.deepEqual(
    s.failed.map((f) => f.unit_id),
    [units[3]!.id],
  );

  assert.deepEqual(await readFile(deleted!.storage_path), deleted!.body);
  assert.deepEqual(await readFile(corrupted!.storage_path), corrupted!.body);
  assert.equal(up.getsOf(deleted!.upstreamPath), getsBefore.get(deleted!.upstreamPath)! + 1);
  assert.equal(up.getsOf(corrupted!.upstreamPath), getsBefore.get(corrupted!.upstreamPath)! + 1);
  assert.equal(up.getsOf(misflagged!.upstreamPath), getsBefore.get(misflagged!.upstreamPath), 'no refetch');
  const flags = new Map((await te.db.units.find({}).toArray()).map((u) => [u._id, u.downloaded]));
  assert.deepEqual(
    units.map((u) => flags.get(u.id)),
    [true, true, true, false, true, true],
  );
  const queued = await te.db.deferred.findOne({ unit_id: units[3]!.id });
  assert.ok(queued, 'the unit that could not be restored is queued for the sweep');
  assert.match(queued.last_error ?? '', /404|not found/i);
  assert.deepEqual(await checkStorage(te), { downloaded: 5, notDownloaded: 1 });
  assert.deepEqual(await filesIn(tasksTempDir(te)), []);
});
