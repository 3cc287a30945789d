/**
 * The catalog's revisions (replaceCatalog) and its lookups (CatalogReader):
 * an identical catalog keeps its revision, a changed one replaces it, an
 * interrupted revision or a purge never passes for the catalog in force,
 * and lookups follow a re-sync at once, whatever the revision cache holds.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { catalogEntryId, type NewCatalogEntry, purgeImporter, replaceCatalog } from '../src/catalog/index.ts';
import { CatalogReader } from '../src/catalog/reader.ts';
import type { Database } from '../src/db/index.ts';
import { buildRepo } from '../src/repos/index.ts';
import { testDatabase } from './helpers/db.ts';

const entries = (n: number, url = 'http://127.0.0.1:1/'): NewCatalogEntry[] =>
  Array.from({ length: n }, (_, i) => ({
    path: `/storage/file/${i}.bin`,
    unit_id: `u${i}`,
    unit_type_id: 'file',
    url: `${url}${i}.bin`,
    checksum: String(i).padStart(64, '0'),
    checksum_algorithm: 'sha256',
    size: i,
  }));

const revisionsOf = async (db: Database, importer: string) =>
  [...new Set((await db.catalog.find({ importer_id: importer }).toArray()).map((e) => e.revision))].sort();

test('replaceCatalog: identical keeps the revision, changed replaces it, old entries go', async () => {
  const db = await testDatabase('catalog-replace');
  assert.deepEqual(await replaceCatalog(db, 'imp', entries(30)), { revision: 1, changed: true });
  assert.deepEqual(await replaceCatalog(db, 'imp', entries(30).reverse()), { revision: 1, changed: false });
  assert.deepEqual(await revisionsOf(db, 'imp'), [1]);
  assert.equal(await db.catalog.countDocuments({ importer_id: 'imp' }), 30);
  // One field of one entry differs: a new revision, and only it remains.
  const changed = entries(30);
  changed[7] = { ...changed[7]!, size: 999 };
  assert.deepEqual(await replaceCatalog(db, 'imp', changed), { revision: 2, changed: true });
  assert.deepEqual(await revisionsOf(db, 'imp'), [2]);
  assert.equal((await db.catalog.findOne({ path: '/storage/file/7.bin' }))?.size, 999);
  // Another importer is untouched by all this.
  assert.deepEqual(await replaceCatalog(db, 'other', entries(3)), { revision: 1, changed: true });
  assert.deepEqual(await replaceCatalog(db, 'imp', entries(30)), { revision: 3, changed: true });
  assert.equal(await db.catalog.countDocuments({ importer_id: 'other' }), 3);
});

test('replaceCatalog: an interrupted revision or a purge never passes for the catalog in force', async () => {
  const db = await testDatabase('catalog-interrupted');
  assert.deepEqual(await replaceCatalog(db, 'imp', entries(10)), { revision: 1, changed: true });
  // A sync that died after claiming revision 2 and writing part of it (no digest on its counter).
  await db.counters.insertOne({ _id: 'catalog:imp#2', value: 2 });
  await db.catalog.insertOne({
    ...entries(1)[0]!,
    _id: 'imp#2:/storage/file/0.bin',
    importer_id: 'imp',
    revision: 2,
  });
  assert.deepEqual(await replaceCatalog(db, 'imp', entries(10)), { revision: 3, changed: true });
  assert.deepEqual(await revisionsOf(db, 'imp'), [3]);
  assert.equal(await db.catalog.countDocuments({ importer_id: 'imp' }), 10);
  // Purged (repository deleted): the same catalog is written again, not taken as present.
  assert.equal(await purgeImporter(db, 'imp'), 10);
  assert.deepEqual(await replaceCatalog(db, 'imp', entries(10)), { revision: 4, changed: true });
  assert.equal(await db.catalog.countDocuments({ importer_id: 'imp' }), 10);
});

for (const strategy of ['by_id', 'by_path'] as const) {
  test(`CatalogReader (${strategy}): current revision, a re-sync seen at once, unknown paths, entries without a repository`, async () => {
    const db = await testDatabase(`catalog-reader-${strategy}`);
    const repo = await buildRepo({ name: 'r', type: 'file', feed: 'http://127.0.0.1:1/' });
    const synced = async (list: NewCatalogEntry[]) => {
      const { revision } = await replaceCatalog(db, repo.importer_id, list);
      await db.repos.updateOne(
        { _id: repo._id },
        {
          $set: {
            last_sync: { finished_at: new Date(), revision, units: list.length, added: 0, removed: 0 },
          },
        },
      );
      return revision;
    };
    await db.repos.insertOne(repo);
    await synced(entries(5, 'http://127.0.0.1:1/a/'));
    const reader = new CatalogReader(db, { ttlMs: 3_600_000, strategy });
    const first = await reader.entries('/storage/file/3.bin');
    assert.deepEqual(
      first.map((e) => [e.url, e.revision]),
      [['http://127.0.0.1:1/a/3.bin', 1]],
    );
    // Re-synced with other URLs while the reader's revisions are cached for an hour.
    assert.equal(await synced(entries(5, 'http://127.0.0.1:1/b/')), 2);
    await new Promise((r) => setTimeout(r, 5));
    const after = await reader.entries('/storage/file/3.bin');
    assert.deepEqual(
      after.map((e) => [e.url, e.revision]),
      [['http://127.0.0.1:1/b/3.bin', 2]],
    );
    // An entry of an older revision of the same importer (not cleaned up): not in force.
    await db.catalog.insertOne({
      ...entries(1, 'http://127.0.0.1:1/stale/')[0]!,
      _id: catalogEntryId(repo.importer_id, 1, '/storage/file/3.bin'),
      path: '/storage/file/3.bin',
      importer_id: repo.importer_id,
      revision: 1,
    });
    assert.deepEqual(
      (await reader.entries('/storage/file/3.bin')).map((e) => [e.url, e.revision]),
      [['http://127.0.0.1:1/b/3.bin', 2]],
    );
    assert.deepEqual(await reader.entries('/storage/file/none.bin'), []);
    // An entry of an importer no repository names (written by other means): found by path.
    await db.catalog.insertOne({
      ...entries(1, 'http://127.0.0.1:1/c/')[0]!,
      path: '/storage/x',
      importer_id: 'loose',
      revision: 1,
    });
    assert.deepEqual(
      (await reader.entries('/storage/x')).map((e) => e.url),
      ['http://127.0.0.1:1/c/0.bin'],
    );
  });
}

test('CatalogReader: by_id reads once per importer, by_path queries once whatever the number of importers', async () => {
  const db = await testDatabase('catalog-reader-queries');
  for (let i = 0; i < 5; i++) {
    const repo = await buildRepo({ name: `q${i}`, type: 'file', feed: 'http://127.0.0.1:1/' });
    await db.repos.insertOne(repo);
    const { revision } = await replaceCatalog(db, repo.importer_id, entries(2, `http://127.0.0.1:1/${i}/`));
    await db.repos.updateOne(
      { _id: repo._id },
      { $set: { last_sync: { finished_at: new Date(), revision, units: 2, added: 0, removed: 0 } } },
    );
  }
  const realFind = db.catalog.find.bind(db.catalog);
  // Every catalog read goes through find() (the driver's findOne() calls it).
  let queries = 0;
  (db.catalog as { find: unknown }).find = (...args: Parameters<typeof realFind>) => {
    queries++;
    return realFind(...args);
  };
  try {
    for (const [strategy, expected] of [
      ['by_id', 5],
      ['by_path', 1],
    ] as const) {
      const reader = new CatalogReader(db, { ttlMs: 3_600_000, strategy });
      await reader.entries('/storage/file/0.bin'); // reads the revisions
      queries = 0;
      const found = await reader.entries('/storage/file/1.bin');
      assert.equal(found.length, 5, `${strategy}: one entry per importer`);
      assert.equal(queries, expected, `${strategy}: catalog queries for one lookup`);
    }
  } finally {
    (db.catalog as { find: unknown }).find = realFind;
  }
});

/**
 * A database with one synced repository (3 entries) and a reader whose
 * revisions are cached (one lookup made); expire() moves its clock past the ttl.
 */
async function readerWithRevisions(label: string) {
  const db = await testDatabase(label);
  const repo = await buildRepo({ name: 'r', type: 'file', feed: 'http://127.0.0.1:1/' });
  await db.repos.insertOne(repo);
  const { revision } = await replaceCatalog(db, repo.importer_id, entries(3, 'http://127.0.0.1:1/a/'));
  await db.repos.updateOne(
    { _id: repo._id },
    { $set: { last_sync: { finished_at: new Date(), revision, units: 3, added: 0, removed: 0 } } },
  );
  let now = 1_000;
  const reader = new CatalogReader(db, { ttlMs: 100, clock: () => now });
  assert.equal((await reader.entries('/storage/file/1.bin')).length, 1);
  return {
    db,
    reader,
    expire: () => {
      now += 1_000;
    },
  };
}

/** Every read of the repositories (the revisions) goes through `toArray(real)`; counted in `reads`. */
function interceptRevisionsReads(
  db: Database,
  toArray: (real: () => Promise<unknown[]>) => Promise<unknown[]>,
) {
  const realFind = db.repos.find.bind(db.repos);
  const state = {
    reads: 0,
    restore: () => {
      (db.repos as { find: unknown }).find = realFind;
    },
  };
  (db.repos as { find: unknown }).find = (...args: Parameters<typeof realFind>) => {
    state.reads++;
    const cursor = realFind(...args);
    const real = cursor.toArray.bind(cursor);
    return Object.assign(cursor, { toArray: () => toArray(real) });
  };
  return state;
}

test('CatalogReader: past its ttl a lookup goes on with the revisions in hand while they are read again', async () => {
  const { db, reader, expire } = await readerWithRevisions('catalog-reader-ahead');
  // The next read of the revisions hangs until released.
  let release!: () => void;
  const gate = new Promise<void>((r) => {
    release = r;
  });
  const pending: Array<Promise<unknown>> = [];
  const repos = interceptRevisionsReads(db, (toArray) => {
    const p = gate.then(toArray);
    pending.push(p.catch(() => {}));
    return p;
  });
  // The background read starts once the lookup's own reads are answered, not beside them.
  const realFindOne = db.catalog.findOne.bind(db.catalog);
  const readsBeside: number[] = [];
  (db.catalog as { findOne: unknown }).findOne = async (...args: Parameters<typeof realFindOne>) => {
    const found = await realFindOne(...args);
    readsBeside.push(repos.reads);
    return found;
  };
  try {
    expire();
    const found = await Promise.race([
      reader.entries('/storage/file/2.bin'),
      new Promise<'waited'>((r) => setTimeout(() => r('waited'), 2_000)),
    ]);
    assert.notEqual(found, 'waited', 'the lookup waited for the revisions read');
    assert.deepEqual(
      (found as Awaited<ReturnType<CatalogReader['entries']>>).map((e) => e.url),
      ['http://127.0.0.1:1/a/2.bin'],
    );
    assert.equal(repos.reads, 1, 'the revisions are being read again in the background');
    assert.deepEqual(readsBeside, [0], 'the revisions were read while the lookup ran');
    await reader.entries('/storage/file/0.bin');
    assert.equal(repos.reads, 1, 'one background read at a time');
  } finally {
    release();
    // The background read ends before the test does (the database is dropped and closed after it).
    await Promise.all(pending);
    repos.restore();
    (db.catalog as { findOne: unknown }).findOne = realFindOne;
  }
});

test('CatalogReader: a background read of the revisions that fails is dropped, never an unhandled rejection', async () => {
  const { db, reader, expire } = await readerWithRevisions('catalog-reader-fail');
  // The next read of the revisions fails (the database went away meanwhile).
  let failed!: () => void;
  const readFailed = new Promise<void>((r) => {
    failed = r;
  });
  const repos = interceptRevisionsReads(db, () => {
    setImmediate(failed);
    return Promise.reject(new Error('connection closed'));
  });
  const unhandled: unknown[] = [];
  const onUnhandled = (reason: unknown) => unhandled.push(reason);
  process.prependListener('unhandledRejection', onUnhandled);
  try {
    expire();
    // Past the ttl: the lookup answers from the revisions in hand and reads them again behind it.
    assert.deepEqual(
      (await reader.entries('/storage/file/2.bin')).map((e) => e.url),
      ['http://127.0.0.1:1/a/2.bin'],
    );
    await readFailed;
    await new Promise((r) => setTimeout(r, 20));
    assert.equal(repos.reads, 1, 'the revisions were read again in the background');
    assert.deepEqual(unhandled, [], 'the failed background read rejected where nobody listens');
  } finally {
    process.removeListener('unhandledRejection', onUnhandled);
    repos.restore();
  }
  // Lookups go on with the revisions in hand.
  assert.deepEqual(
    (await reader.entries('/storage/file/0.bin')).map((e) => e.url),
    ['http://127.0.0.1:1/a/0.bin'],
  );
});
