/**
 * `pulp-lazy orphans` through the real CLI and database: after `repo delete`
 * the repository's own units, queue entries and files go; a unit another
 * repository shares stays, and so does a unit a running sync just created
 * (storage.orphan_protection); stray files in storage and stale temp files
 * go when old enough, young ones stay. `--dry-run` removes nothing and
 * reports the same counts.
 */
import assert from 'node:assert/strict';
import { mkdir, stat, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { connect, type UnitDoc } from '../src/db/index.ts';
import { unitId, unitStoragePath } from '../src/storage/index.ts';
import { isPlanDirOf } from '../src/storage/temp-files.ts';
import { insertUnits, markUnassociated } from '../src/storage/units.ts';
import { runCli, syncJson } from './helpers/cli.ts';
import { mongoUrl } from './helpers/db.ts';
import { testEnv } from './helpers/env.ts';
import { sha256 } from './helpers/tasks.ts';
import { startUpstream } from './helpers/upstream.ts';

const HOUR = 3_600_000;

const manifest = (files: Record<string, Buffer>) =>
  Object.entries(files)
    .map(([name, body]) => `${name},${sha256(body)},${body.length}\n`)
    .join('');

/** A file that exists now, with its mtime `ageMs` in the past. */
async function aged(file: string, body: string, ageMs: number): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, body);
  const t = new Date(Date.now() - ageMs);
  await utimes(file, t, t);
}

const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );

test('repo delete, then orphans: own units and files gone; shared, fresh and young things kept', async (t) => {
  const env = await testEnv('orphans', { storage: { orphan_protection: '1h' } });
  const shared = Buffer.from('shared by both repositories\n');
  const aFiles = { 'shared.bin': shared, 'a-only.bin': Buffer.from('only in repository a\n'.repeat(3)) };
  const bFiles = { 'shared.bin': shared, 'b-only.bin': Buffer.from('only in repository b\n') };
  const up = await startUpstream(
    new Map([
      ['/a/PULP_MANIFEST', manifest(aFiles)],
      ['/b/PULP_MANIFEST', manifest(bFiles)],
    ]),
  );
  const cli = async (args: string[]) => {
    const r = await runCli(args, { env: env.env });
    assert.equal(r.code, 0, r.stderr);
    return r.stdout;
  };
  await cli(['repo', 'create', 'a', '--type', 'file', '--feed', `${up.url}a/`, '--policy', 'background']);
  await cli(['repo', 'create', 'b', '--type', 'file', '--feed', `${up.url}b/`]);
  await syncJson(env.env, 'a');
  await syncJson(env.env, 'b');

  const db = await connect(mongoUrl(), env.dbName);
  t.after(() => db.close());
  // Every unit's files stored, as a download would have.
  const bodies = new Map(Object.entries({ ...aFiles, ...bFiles }));
  const units = await db.units.find({}).toArray();
  assert.equal(units.length, 3);
  for (const u of units)
    for (const f of u.files) await aged(f.storage_path, String(bodies.get(f.relative_path)), 0);
  const byName = (name: string) => units.find((u) => u.unit_key.name === name)!;
  const aOnly = byName('a-only.bin');
  const sharedUnit = byName('shared.bin');
  assert.equal(await db.deferred.countDocuments({ unit_id: aOnly._id }), 1, 'background sync queued a-only');

  await cli(['repo', 'delete', 'a']);
  const unassociated = (await db.units.findOne({ _id: aOnly._id }))?.unassociated_at;
  assert.ok(unassociated, 'deleting the repository marks its units');
  // Two hours later, as far as the units' creation is concerned: only the deletion protects a's units now.
  const past = new Date(Date.now() - 2 * HOUR);
  await db.units.updateMany({}, { $set: { created_at: past } });
  const early = JSON.parse(await cli(['orphans', '--dry-run', '--json']));
  assert.equal(early.units, 0, 'units unassociated less than orphan_protection ago are kept');
  // And two hours after the deletion.
  await markUnassociated(db, [aOnly._id, sharedUnit._id], past);

  // A unit a running sync has just inserted, not associated yet, with its file stored.
  const fresh = Buffer.from('a new unit of a sync still running\n');
  const freshKey = { name: 'fresh.bin', checksum: sha256(fresh), size: fresh.length };
  const freshPath = unitStoragePath(env.config.paths.storage, 'file', sha256(fresh), 'fresh.bin');
  const freshUnit: UnitDoc = {
    _id: unitId('file', freshKey),
    unit_type_id: 'file',
    unit_key: freshKey,
    files: [
      { relative_path: 'fresh.bin', ...freshKey, checksum_algorithm: 'sha256', storage_path: freshPath },
    ],
    downloaded: true,
    created_at: new Date(),
  };
  await insertUnits(db, [freshUnit]);
  await aged(freshPath, fresh.toString(), 0);

  const storage = env.config.paths.storage;
  const strayOld = path.join(storage, 'units/file/ff/stray/old.bin');
  const strayYoung = path.join(storage, 'units/file/ff/stray/young.bin');
  await aged(strayOld, 'left behind long ago', 2 * HOUR);
  await aged(strayYoung, 'just renamed into place', 0);
  const tmp = path.join(env.config.paths.working, 'tmp');
  const tempOld = path.join(tmp, 'dead-writer.part');
  const tempYoung = path.join(tmp, 'live-writer.part');
  await aged(tempOld, 'partial', 2 * HOUR);
  await aged(tempYoung, 'partial', 0);
  // Plan folders of syncs (<working>/sync/<repo>-XXXXXX): of deleted a, old and young; of live b, old.
  const plans = path.join(env.config.paths.working, 'sync');
  const planOld = path.join(plans, 'a-Xy12Zq');
  const planYoung = path.join(plans, 'a-Yz34Ab');
  const planLive = path.join(plans, 'b-Qw56Er');
  await aged(path.join(planOld, 's0', 'run-0'), 'spooled', 2 * HOUR);
  await aged(path.join(planYoung, 's0', 'run-0'), 'spooled', 0);
  await aged(path.join(planLive, 's0', 'run-0'), 'spooled', 2 * HOUR);

  const aOnlyPath = aOnly.files[0]!.storage_path;
  const expected = {
    units: 1,
    files: 2,
    bytes: aFiles['a-only.bin'].length + 'left behind long ago'.length,
    temp_files: 1,
    sync_plans: 1,
  };
  const dry = JSON.parse(await cli(['orphans', '--dry-run', '--json']));
  assert.deepEqual(dry, { dry_run: true, ...expected });
  assert.equal(await db.units.countDocuments({}), 4, 'a dry run removes no unit');
  for (const p of [aOnlyPath, strayOld, tempOld, planOld]) assert.ok(await exists(p), `dry run kept ${p}`);

  const done = JSON.parse(await cli(['orphans', '--json']));
  assert.deepEqual(done, { dry_run: false, ...expected });
  assert.equal(await db.units.countDocuments({ _id: aOnly._id }), 0, "a's own unit is gone");
  assert.equal(await db.deferred.countDocuments({ unit_id: aOnly._id }), 0, 'its queue entry is gone');
  assert.equal(await db.catalog.countDocuments({ unit_id: aOnly._id }), 0, 'its catalog entries are gone');
  for (const p of [aOnlyPath, strayOld, tempOld, planOld])
    assert.equal(await exists(p), false, `${p} removed`);

  assert.ok(await db.units.findOne({ _id: sharedUnit._id }), 'the unit b shares stays');
  assert.ok((await db.catalog.countDocuments({ unit_id: sharedUnit._id })) > 0, "b's catalog entry stays");
  assert.ok(await db.units.findOne({ _id: freshUnit._id }), "the running sync's new unit stays");
  for (const p of [sharedUnit.files[0]!.storage_path, freshPath, strayYoung, tempYoung, planYoung, planLive])
    assert.ok(await exists(p), `${p} kept`);

  assert.match(
    await cli(['orphans']),
    /^orphans: 0 unit\(s\), 0 file\(s\), .* freed, 0 temp file\(s\), 0 plan folder\(s\) of deleted repositories\n$/,
  );

  // A re-sync that drops a file starts its unit's protection again (kept links may still serve it).
  up.files.set('/b/PULP_MANIFEST', manifest({ 'shared.bin': shared }));
  assert.equal((await syncJson(env.env, 'b')).paths_removed, 1);
  const bOnly = await db.units.findOne({ 'unit_key.name': 'b-only.bin' });
  assert.ok(
    bOnly?.unassociated_at && bOnly.unassociated_at > unassociated!,
    'the re-sync marks the dropped unit',
  );
});

test("a repository's plan folders are its name, a dash and mkdtemp's six characters: never another's", () => {
  assert.equal(isPlanDirOf('a-Xy12Zq', 'a'), true);
  assert.equal(isPlanDirOf('a-b-Xy12Zq', 'a'), false, 'a running sync of "a-b" is not "a"\'s');
  assert.equal(isPlanDirOf('a-b-Xy12Zq', 'a-b'), true);
  assert.equal(isPlanDirOf('a-Xy12', 'a'), false);
});
