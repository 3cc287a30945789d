/**
 * A sync streams its plan: the spool's external sort, the Packages reader on
 * input cut anywhere (CRLF, no final blank line, compressed), and syncs whose
 * plan spills to many run files: duplicates, a failure while reading the
 * metadata (nothing written), a failure after the units and the new catalog
 * revision were written (the previous catalog and tree stay in force).
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { CatalogReader } from '../src/catalog/reader.ts';
import { rootedPaths } from '../src/config.ts';
import { readStanzas, type Stanza } from '../src/importers/debian.ts';
import { readDecompressed } from '../src/importers/decompress.ts';
import { Spool } from '../src/importers/spool.ts';
import { buildRepo, createRepo } from '../src/repos/index.ts';
import { DispatcherPool } from '../src/upstream/dispatcher.ts';
import { dbSnapshot, testDatabase } from './helpers/db.ts';
import { debFilename, debStanza, generateDebRepo } from './helpers/deb-packages.ts';
import { compress } from './helpers/pkgrepos.ts';
import { syncIn } from './helpers/sync.ts';
import { startUpstream } from './helpers/upstream.ts';

const work = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-stream-'));
after(() => rm(work, { recursive: true, force: true }));

test('Spool: records come back sorted by key and stable, across many runs and merges, read after read', async () => {
  for (const runChars of [1 << 20, 300]) {
    const spool = new Spool<[string, number]>(path.join(work, `spool-${runChars}`), {
      key: (r) => r[0],
      runChars,
    });
    const added: Array<[string, number]> = [];
    for (let i = 0; i < 2000; i++) {
      // Few distinct keys, so that equal keys meet in different runs; non-ASCII ones too.
      const r: [string, number] = [`k${(i * 7919) % 97}${i % 5 === 0 ? '\u00e9\u4e2d' : ''}`, i];
      added.push(r);
      await spool.add(r);
    }
    const expected = [...added].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
    const read = async () => {
      const out: Array<[string, number]> = [];
      for await (const r of spool.sorted()) out.push(r);
      return out;
    };
    if (runChars === 300) assert.ok(spool.runs > 16, `spilled into ${spool.runs} runs`);
    assert.deepEqual(await read(), expected, `runChars ${runChars}`);
    assert.deepEqual(await read(), expected, 'a second read');
    // An early stop leaves the spool whole.
    for await (const _ of spool.sorted()) break;
    const late: [string, number] = ['k1', 5000];
    await spool.add(late);
    expected.splice(expected.findLastIndex((r) => r[0] <= 'k1') + 1, 0, late);
    assert.deepEqual(await read(), expected, 'records added after a read');
    assert.equal(spool.count, 2001);
    await spool.discard();
    assert.deepEqual(
      (await readdir(work)).filter((n) => n.startsWith(`spool-${runChars}.`)),
      [],
      'run files removed',
    );
  }
});

const STANZAS =
  'Package: a\r\nVersion: 1\r\nDescription: caf\u00e9 \u4e2d\r\n two\r\n .\r\n\r\n' +
  '# a comment\n\n\nPackage: b\nVersion: 2\nDescription: \u00e9\n' +
  '\nPackage: c\nVersion: 3';

const expectStanzas = (got: Stanza[], what: string) =>
  assert.deepEqual(
    got.map((s) => Object.fromEntries(s)),
    [
      { package: 'a', version: '1', description: 'caf\u00e9 \u4e2d\ntwo\n.' },
      { package: 'b', version: '2', description: '\u00e9' },
      { package: 'c', version: '3' },
    ],
    what,
  );

test('readStanzas: stanzas and UTF-8 characters split across chunks of any size, CRLF, no final blank line', async () => {
  const bytes = Buffer.from(STANZAS);
  for (let size = 1; size <= bytes.length; size++) {
    async function* chunks() {
      for (let i = 0; i < bytes.length; i += size) yield bytes.subarray(i, i + size);
    }
    const got: Stanza[] = [];
    const numbers: number[] = [];
    assert.equal(
      await readStanzas(chunks(), async (s, n) => {
        await new Promise((r) => setImmediate(r));
        got.push(s);
        numbers.push(n);
      }),
      3,
    );
    expectStanzas(got, `chunks of ${size}`);
    assert.deepEqual(numbers, [1, 2, 3]);
  }
});

test('readStanzas through the decompressors: gz, xz, bz2', async () => {
  const plain = Buffer.from(STANZAS);
  const files: Record<string, Buffer> = { 'Packages.gz': gzipSync(plain) };
  for (const [ext, tool] of [
    ['xz', 'xz'],
    ['bz2', 'bzip2'],
  ] as const) {
    files[`Packages.${ext}`] = await compress(tool, plain);
  }
  for (const [name, body] of Object.entries(files)) {
    const file = path.join(work, name);
    await writeFile(file, body);
    const got: Stanza[] = [];
    await readStanzas(readDecompressed(file, name), (s) => {
      got.push(s);
    });
    expectStanzas(got, name);
  }
});

/** A deb repository on a local upstream, synced in-process with tiny spools (many run files). */
async function debSetup(label: string) {
  const db = await testDatabase(label);
  const root = await mkdtemp(path.join(work, `${label}-`));
  const paths = rootedPaths(root);
  const up = await startUpstream();
  const serve = (stanza?: (i: number) => string) => {
    for (const [p, b] of generateDebRepo(N, stanza).files) up.files.set(`/deb/${p}`, b);
  };
  serve();
  const repo = await buildRepo({ name: 'd', type: 'deb', feed: `${up.url}deb/` });
  await createRepo(db, {
    ...repo,
    options: { dists: ['stable'], components: ['main'], architectures: ['amd64'] },
  });
  const pool = new DispatcherPool({ connectMs: 5000, headersMs: 30_000, bodyIdleMs: 30_000 });
  after(() => pool.close());
  const sync = () => syncIn(db, paths, 'd', { pool, spoolChars: 4000 });
  return { db, paths, up, serve, sync, importer: repo.importer_id };
}

const N = 300;

test('a plan spilled to many run files syncs like one in memory; a package listed twice is one unit; unchanged re-sync', async () => {
  const { db, paths, serve, sync } = await debSetup('stream-ok');
  // Stanza 7 listed again at the end: the same unit at the same path.
  serve((i) => debStanza(i === N - 1 ? 7 : i));
  const s = await sync();
  assert.equal(s.units, N - 1 + 3, 'packages + Release, Packages, Packages.gz');
  assert.equal(s.published, N - 1 + 3);
  assert.equal(s.units_created, N - 1 + 3);
  assert.equal(await db.catalog.countDocuments({}), N - 1);
  assert.equal(await db.repoContentUnits.countDocuments({}), N - 1 + 3);
  const link = await readlink(path.join(paths.published, 'd', debFilename(5)));
  assert.match(link, /\/units\/deb\//);
  assert.deepEqual(await readdir(path.join(paths.working, 'sync')), [], 'plan files removed');
  const before = await dbSnapshot(db, { repos: true });
  const again = await sync();
  assert.equal(again.changed, false);
  assert.deepEqual(await dbSnapshot(db, { repos: true }), before);
});

test('a sync failing late in a spilled Packages writes nothing: database, tree and working dir as they were', async () => {
  const { db, paths, serve, sync } = await debSetup('stream-parse');
  await sync();
  const before = await dbSnapshot(db, { repos: true });
  const tree = await readlink(path.join(paths.published, 'd'));
  serve((i) => (i === N - 10 ? debStanza(i).replace(/^SHA256: .*$/m, 'SHA256: nothex') : debStanza(i)));
  await assert.rejects(sync(), /Packages: stanza 291 \(pkg-82\): bad SHA256 "nothex"$/);
  assert.deepEqual(await dbSnapshot(db, { repos: true }), before, 'database untouched');
  assert.equal(await readlink(path.join(paths.published, 'd')), tree, 'tree untouched');
  assert.deepEqual(await readdir(path.join(paths.working, 'sync')), [], 'plan files removed');
  assert.deepEqual(await readdir(path.join(paths.working, 'tmp')), [], 'temp files removed');
  assert.equal(await db.locks.countDocuments({}), 0, 'lease released');
});

test('two packages at one Filename, or one below another: BadMetadata before any write', async () => {
  const { db, serve, sync } = await debSetup('stream-conflict');
  const other = (i: number) => debStanza(i).replace(/^Version: .*$/m, 'Version: 9');
  serve((i) => (i === N - 1 ? other(3) : debStanza(i)));
  await assert.rejects(
    sync(),
    /Packages: stanza 300 \(pkg-3\): pool\/main\/3\/pkg-3\/pkg-3_1\.3-3_amd64\.deb is listed with different contents elsewhere$/,
  );
  serve((i) =>
    i === N - 1 ? debStanza(i).replace(/^Filename: .*$/m, `Filename: ${debFilename(4)}/x.deb`) : debStanza(i),
  );
  await assert.rejects(
    sync(),
    /would lie below pool\/main\/4\/pkg-4\/pkg-4_1\.4-4_amd64\.deb, which is published as a file$/,
  );
  assert.equal(await db.units.countDocuments({}), 0);
  assert.equal(await db.catalog.countDocuments({}), 0);
});

test('a sync failing after its units and catalog revision were written leaves the previous catalog and tree in force', async () => {
  const { db, paths, serve, sync, importer } = await debSetup('stream-late');
  const first = await sync();
  assert.equal(first.catalog_revision, 1);
  const tree = await readlink(path.join(paths.published, 'd'));
  // Upstream moves every package, and one Filename is longer than a file name may be: the units
  // and the new revision are written, then the link cannot be made.
  const long = `pool/main/l/${'l'.repeat(300)}.deb`;
  serve((i) =>
    debStanza(i).replace(
      /^Filename: .*$/m,
      i === 100 ? `Filename: ${long}` : `Filename: moved/${debFilename(i)}`,
    ),
  );
  await assert.rejects(sync(), (err: NodeJS.ErrnoException) => err.code === 'ENAMETOOLONG');
  assert.ok(
    await db.counters.findOne({ _id: `catalog:${importer}#2` }),
    'revision 2 was taken: the failure came after the catalog was written',
  );
  assert.equal((await db.repos.findOne({ _id: 'd' }))?.last_sync?.revision, 1, 'revision 1 still in force');
  assert.equal(await db.catalog.countDocuments({ revision: { $ne: 1 } }), 0, 'the failed revision is gone');
  assert.equal(await db.catalog.countDocuments({ revision: 1 }), N);
  const old = (await db.catalog.findOne({ revision: 1 }))!;
  assert.deepEqual(
    (await new CatalogReader(db).entries(old.path)).map((e) => [e.importer_id, e.revision, e.url]),
    [[importer, 1, old.url]],
    'lookups find the previous entries',
  );
  assert.equal(await readlink(path.join(paths.published, 'd')), tree, 'the previous tree is still published');
  assert.deepEqual(await readdir(path.join(paths.published, '.versions')), [path.basename(tree)]);
  assert.equal(await db.locks.countDocuments({}), 0, 'lease released');
  assert.deepEqual(await readdir(path.join(paths.working, 'sync')), [], 'plan files removed');

  // Fixed upstream: the next sync takes a new revision and retires the old one.
  serve((i) => debStanza(i).replace(/^Filename: .*$/m, `Filename: moved/${debFilename(i)}`));
  const fixed = await sync();
  assert.equal(fixed.catalog_changed, true);
  assert.ok(fixed.catalog_revision > 2, `revision ${fixed.catalog_revision}`);
  assert.deepEqual(await db.catalog.distinct('revision'), [fixed.catalog_revision]);
  assert.equal((await db.repos.findOne({ _id: 'd' }))?.last_sync?.revision, fixed.catalog_revision);
});
