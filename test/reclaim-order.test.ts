/**
 * The order of reclaim's steps and of a save's, on the real database, made
 * visible by observing the writes (the writes themselves go through):
 * reclaim sets `downloaded: false` while the unit's files are still there
 * and deletes them only after; a streamer's save that checked its files
 * before a reclaim removed them does not leave the unit downloaded.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import type { Database, UnitDoc } from '../src/db/index.ts';
import { insertAssociations } from '../src/repos/associations.ts';
import { buildRepo, createRepo } from '../src/repos/index.ts';
import { unitStoragePath } from '../src/storage/index.ts';
import { insertUnits, markDownloadedIfComplete } from '../src/storage/units.ts';
import { reclaim } from '../src/tasks/reclaim.ts';
import { testDatabase } from './helpers/db.ts';

const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );

/** A stored unit of `repo` (file written), downloaded as given. */
async function storedUnit(db: Database, root: string, repo: string, name: string, downloaded: boolean) {
  const body = Buffer.from(`the bytes of ${name}\n`);
  const digest = createHash('sha256').update(body).digest('hex');
  const storage_path = unitStoragePath(root, 'file', digest, name);
  await mkdir(path.dirname(storage_path), { recursive: true });
  await writeFile(storage_path, body);
  const unit: UnitDoc = {
    _id: `u-${name}`,
    unit_type_id: 'file',
    unit_key: { name },
    files: [
      {
        relative_path: name,
        size: body.length,
        checksum: digest,
        checksum_algorithm: 'sha256',
        storage_path,
      },
    ],
    downloaded,
    created_at: new Date(),
  };
  await insertUnits(db, [unit]);
  await insertAssociations(db, [
    { repo_id: repo, unit_id: unit._id, unit_type_id: 'file', relative_path: name },
  ]);
  return unit;
}

/** `db` whose units.updateOne calls `spy(update)` before the real write. */
function spied(db: Database, spy: (update: Record<string, unknown>) => Promise<void>): Database {
  const units = new Proxy(db.units, {
    get(target, prop, receiver) {
      if (prop !== 'updateOne') return Reflect.get(target, prop, receiver);
      return async (...args: Parameters<typeof target.updateOne>) => {
        await spy(args[1] as Record<string, unknown>);
        return target.updateOne(...args);
      };
    },
  });
  return { ...db, units };
}

const root = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-reclaim-order-'));
after(() => rm(root, { recursive: true, force: true }));

test('reclaim writes downloaded: false while the files are still there, and deletes them after', async () => {
  const db = await testDatabase('reclaim_order');
  await createRepo(db, await buildRepo({ name: 'r', type: 'file', feed: 'http://127.0.0.1:1/' }));
  const units = [
    await storedUnit(db, root, 'r', 'a.bin', true),
    await storedUnit(db, root, 'r', 'b.bin', true),
  ];
  const seen: Array<[string, boolean]> = [];
  const watched = spied(db, async (update) => {
    const set = update.$set as { downloaded?: boolean } | undefined;
    if (set?.downloaded !== false) return;
    for (const u of units) seen.push([u._id, await exists(u.files[0]!.storage_path)]);
  });
  const report = await reclaim(watched, {
    repos: [],
    unusedForMs: 0,
    force: false,
    dryRun: false,
    storageRoot: root,
    owner: 'test',
    leaseMs: 60_000,
  });
  assert.equal(report.units, 2);
  // At the first flag write both files exist; at the second, the first unit's is gone (it was done).
  assert.deepEqual(seen, [
    ['u-a.bin', true],
    ['u-b.bin', true],
    ['u-a.bin', false],
    ['u-b.bin', true],
  ]);
  for (const u of units) {
    assert.equal(await exists(u.files[0]!.storage_path), false);
    assert.equal((await db.units.findOne({ _id: u._id }))?.downloaded, false);
  }
});

test('a save whose files were reclaimed between its check and its write leaves the unit not downloaded', async () => {
  const db = await testDatabase('save_order');
  await createRepo(db, await buildRepo({ name: 's', type: 'file', feed: 'http://127.0.0.1:1/' }));
  const unit = await storedUnit(db, root, 's', 'c.bin', false);
  // The reclaim runs right when the save writes `downloaded: true`: the file goes first.
  const racing = spied(db, async (update) => {
    const set = update.$set as { downloaded?: boolean } | undefined;
    if (set?.downloaded === true) await rm(unit.files[0]!.storage_path);
  });
  assert.equal(await markDownloadedIfComplete(racing, unit._id), false);
  assert.equal((await db.units.findOne({ _id: unit._id }))?.downloaded, false, 'downloaded without its file');
});
