/**
 * Yum (rpm-md) importer through the real CLI: RPMs built with rpmbuild,
 * repodata from createrepo_c, served by a local upstream counting requests.
 */
import assert from 'node:assert/strict';
import { lstat, mkdtemp, readdir, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { execa } from 'execa';
import { connect, type Database } from '../src/db/index.ts';
import { runCli, syncJson } from './helpers/cli.ts';
import { dbSnapshot, mongoUrl } from './helpers/db.ts';
import { type TestEnv, testEnv } from './helpers/env.ts';
import {
  buildRpm,
  checkLazyPackages,
  compress,
  createrepo,
  patchRepomd,
  readTree,
  repomdLocations,
  serveTree,
  sha256,
} from './helpers/pkgrepos.ts';
import { checkRefusedSyncs, type RefusedSyncCase } from './helpers/refused-sync.ts';
import { hitsMatching, startUpstream, type Upstream } from './helpers/upstream.ts';

let work: string;
/** Three RPMs plus one spare, built once: relative path → bytes. */
let rpms: Map<string, Buffer>;
const SPARE = 'Packages/noarch/plyum-delta-1.0-1.noarch.rpm';

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-yumfx-'));
  const out = path.join(work, 'built');
  for (const p of [
    { name: 'plyum-alpha', version: '1.0' },
    { name: 'plyum-beta', version: '2.1', release: '3' },
    { name: 'plyum-gamma', version: '0.9' },
    { name: 'plyum-delta', version: '1.0' },
  ]) {
    await buildRpm(path.join(work, 'build'), out, p);
  }
  rpms = await readTree(out);
  assert.equal(rpms.size, 4);
});
after(() => rm(work, { recursive: true, force: true }));

/** A fresh upstream repo dir with the given RPMs and createrepo_c metadata. */
async function makeRepo(names: string[], args: string[] = []): Promise<string> {
  const dir = await mkdtemp(path.join(work, 'repo-'));
  const { mkdir, writeFile } = await import('node:fs/promises');
  for (const rel of names) {
    await mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await writeFile(path.join(dir, rel), rpms.get(rel)!);
  }
  await createrepo(dir, args);
  return dir;
}

const three = () => [...rpms.keys()].filter((k) => k !== SPARE).sort();

async function setup(label: string, args: string[] = []) {
  const env = await testEnv(label);
  const dir = await makeRepo(three(), args);
  return { env, dir, ...(await serveAndCreate(env, dir)) };
}

/** Serves `dir` as the feed of a new yum repository "y"; a connection to the test database. */
async function serveAndCreate(env: TestEnv, dir: string): Promise<{ up: Upstream; db: Database }> {
  const up = await startUpstream();
  await serveTree(up.files, '/yum/', dir);
  const c = await runCli(['repo', 'create', 'y', '--type', 'yum', '--feed', `${up.url}yum/`], {
    env: env.env,
  });
  assert.equal(c.code, 0, c.stderr);
  const db = await connect(mongoUrl(), env.dbName);
  after(() => db.close());
  return { up, db };
}

const sync = (env: TestEnv) => syncJson(env.env, 'y');
const packageHits = (up: Upstream) => hitsMatching(up, /\.rpm$/);

/** Checks the published tree against the upstream dir: metadata byte-identical, packages dangling links. */
async function checkPublished(env: TestEnv, dir: string, db: Database, packages: string[]) {
  const pub = path.join(env.config.paths.published, 'y');
  const upstream = await readTree(dir);
  const repodata = [...upstream.keys()].filter((k) => k.startsWith('repodata/'));
  for (const rel of repodata) {
    assert.deepEqual(await readFile(path.join(pub, rel)), upstream.get(rel), `${rel} byte-identical`);
  }
  const listed = new Set((await readdir(path.join(pub, 'repodata'))).map((n) => `repodata/${n}`));
  assert.deepEqual([...listed].sort(), repodata.sort(), 'exactly the upstream repodata is published');
  await checkLazyPackages(db, env.config.paths.storage, pub, 'rpm', 'yum', rpms, packages);
}

test('lazy sync: rpm units, catalog, repodata stored and published byte-identical, zero package bytes', async () => {
  const { env, dir, up, db } = await setup('yumlazy');
  const s = await sync(env);
  const repomd = await readFile(path.join(dir, 'repodata/repomd.xml'), 'utf8');
  const dataFiles = repomdLocations(repomd);
  assert.ok(dataFiles.has('primary') && dataFiles.has('filelists') && dataFiles.has('primary_db'));
  assert.equal(s.units, 3 + dataFiles.size + 1, 'rpms + listed files + repomd.xml');
  assert.equal(await db.units.countDocuments({ unit_type_id: 'rpm' }), 3);
  assert.equal(await db.units.countDocuments({ unit_type_id: 'rpm', downloaded: false }), 3);
  assert.equal(
    await db.units.countDocuments({ unit_type_id: 'yum_metadata', downloaded: true }),
    dataFiles.size + 1,
  );
  const rpm = await db.units.findOne({ unit_type_id: 'rpm', 'unit_key.name': 'plyum-beta' });
  assert.deepEqual(
    { ...rpm!.unit_key, checksum: undefined },
    {
      name: 'plyum-beta',
      epoch: '0',
      version: '2.1',
      release: '3',
      arch: 'noarch',
      checksumtype: 'sha256',
      checksum: undefined,
    },
  );
  assert.equal(rpm!.metadata?.location_href, 'Packages/noarch/plyum-beta-2.1-3.noarch.rpm');
  await checkPublished(env, dir, db, three());

  // Only metadata was requested, each once; optional files 404ed without failing the sync.
  assert.equal(packageHits(up), 0, 'no package bytes fetched');
  const expected = [
    'repodata/repomd.xml',
    'repodata/repomd.xml.asc',
    '.treeinfo',
    'treeinfo',
    ...dataFiles.values(),
  ].map((p) => `/yum/${p}`);
  assert.deepEqual([...up.hits.keys()].sort(), expected.sort());
  for (const c of up.hits.values()) assert.equal(c, 1);
  // Temp files are gone.
  assert.deepEqual(await readdir(path.join(env.config.paths.working, 'tmp')), []);
});

test('re-sync is idempotent; upstream changes (added, removed package, regenerated metadata) are picked up', async () => {
  const { env, dir, up, db } = await setup('yumresync');
  await sync(env);
  const before = await dbSnapshot(db);
  const link1 = await readlink(path.join(env.config.paths.published, 'y'));
  const s2 = await sync(env);
  assert.equal(s2.changed, false);
  assert.deepEqual(await dbSnapshot(db), before);
  assert.equal(await readlink(path.join(env.config.paths.published, 'y')), link1, 'tree untouched');

  // Remove alpha, add delta, regenerate.
  const names = [...three().filter((n) => !n.includes('alpha')), SPARE].sort();
  const dir2 = await makeRepo(names);
  await serveTree(up.files, '/yum/', dir2);
  const s3 = await sync(env);
  assert.equal(s3.changed, true);
  assert.equal(await db.repoContentUnits.countDocuments({ unit_type_id: 'rpm' }), 3);
  await checkPublished(env, dir2, db, names);
  const pub = path.join(env.config.paths.published, 'y');
  await assert.rejects(
    lstat(path.join(pub, three().find((n) => n.includes('alpha'))!)),
    'removed package unpublished',
  );
  assert.equal(packageHits(up), 0);
  assert.notEqual(dir, dir2);
});

test('comps, updateinfo, repomd.xml.asc and .treeinfo are stored and published byte-identical', async () => {
  const env = await testEnv('yumextra');
  const dir = await mkdtemp(path.join(work, 'repo-'));
  const { mkdir, writeFile } = await import('node:fs/promises');
  for (const rel of three()) {
    await mkdir(path.dirname(path.join(dir, rel)), { recursive: true });
    await writeFile(path.join(dir, rel), rpms.get(rel)!);
  }
  const comps = path.join(work, `comps-${Date.now()}.xml`);
  await writeFile(
    comps,
    '<?xml version="1.0"?>\n<comps><group><id>pl</id><name>pl</name><packagelist><packagereq>plyum-alpha</packagereq></packagelist></group></comps>\n',
  );
  await createrepo(dir, ['-g', comps]);
  const updateinfo = path.join(work, 'updateinfo.xml');
  await writeFile(
    updateinfo,
    '<?xml version="1.0"?>\n<updates><update type="bugfix" status="stable"><id>PL-1</id><title>fix</title></update></updates>\n',
  );
  await execa('modifyrepo_c', [updateinfo, path.join(dir, 'repodata')]);
  await writeFile(
    path.join(dir, 'repodata/repomd.xml.asc'),
    '-----BEGIN PGP SIGNATURE-----\nfake\n-----END PGP SIGNATURE-----\n',
  );
  await writeFile(path.join(dir, '.treeinfo'), '[general]\nname = pulp-lazy test\n');
  const { up, db } = await serveAndCreate(env, dir);
  await sync(env);
  const types = [...repomdLocations(await readFile(path.join(dir, 'repodata/repomd.xml'), 'utf8')).keys()];
  assert.ok(
    types.includes('group') && types.includes('group_gz') && types.includes('updateinfo'),
    types.join(),
  );
  await checkPublished(env, dir, db, three());
  const pub = path.join(env.config.paths.published, 'y');
  assert.deepEqual(await readFile(path.join(pub, '.treeinfo')), await readFile(path.join(dir, '.treeinfo')));
  await assert.rejects(lstat(path.join(pub, 'treeinfo')), 'absent upstream, absent here');
  assert.equal(packageHits(up), 0);
});

test('xz, bz2 and zstd compressed repodata', async () => {
  for (const c of ['xz', 'bz2', 'zstd'] as const) {
    const env = await testEnv(`yum${c}`);
    // Debian's createrepo_c cannot write zstd: recompress its gzip primary by hand.
    const dir = await makeRepo(three(), c === 'zstd' ? [] : [`--general-compress-type=${c}`]);
    let primaryName = '';
    if (c === 'zstd') {
      const repomdPath = path.join(dir, 'repodata/repomd.xml');
      let xml = await readFile(repomdPath, 'utf8');
      const gz = repomdLocations(xml).get('primary')!;
      const plain = (await execa('gzip', ['-dc', path.join(dir, gz)], { encoding: 'buffer' })).stdout;
      const zst = await compress('zstd', Buffer.from(plain));
      primaryName = `repodata/${sha256(zst)}-primary.xml.zst`;
      const { writeFile } = await import('node:fs/promises');
      await writeFile(path.join(dir, primaryName), zst);
      await rm(path.join(dir, gz));
      xml = patchRepomd(xml, 'primary', zst, primaryName);
      await writeFile(repomdPath, xml);
    }
    const { up, db } = await serveAndCreate(env, dir);
    const s = await sync(env);
    assert.equal(await db.units.countDocuments({ unit_type_id: 'rpm' }), 3, c);
    assert.ok(s.published >= 3);
    const primary = repomdLocations(await readFile(path.join(dir, 'repodata/repomd.xml'), 'utf8')).get(
      'primary',
    )!;
    assert.ok(primary.endsWith(c === 'zstd' ? '.zst' : `.${c}`), primary);
    if (primaryName) assert.equal(primary, primaryName);
    await checkPublished(env, dir, db, three());
    assert.equal(packageHits(up), 0);
  }
});

test('bad metadata fails with one line and leaves the published tree, database and storage untouched', async () => {
  const { env, dir, up, db } = await setup('yumbad');
  await sync(env);
  const repomdXml = await readFile(path.join(dir, 'repodata/repomd.xml'), 'utf8');
  const loc = repomdLocations(repomdXml);
  const primaryGz = await readFile(path.join(dir, loc.get('primary')!));

  const cases: RefusedSyncCase[] = [
    [
      'checksum mismatch',
      () => {
        const p = `/yum/${loc.get('filelists')!}`;
        const body = Buffer.from(up.files.get(p) as Buffer);
        body[body.length - 5]! ^= 0xff;
        up.files.set(p, body);
      },
      /^pulp-lazy: repodata\/[0-9a-f]+-filelists\.xml\.gz: sha256 [0-9a-f]{64}, repodata\/repomd\.xml says [0-9a-f]{64} \(checksum mismatch\)$/,
    ],
    [
      'truncated gzip',
      () => {
        const cut = primaryGz.subarray(0, Math.floor(primaryGz.length / 2));
        up.files.set(`/yum/${loc.get('primary')!}`, cut);
        up.files.set('/yum/repodata/repomd.xml', patchRepomd(repomdXml, 'primary', cut));
      },
      /^pulp-lazy: repodata\/[0-9a-f]+-primary\.xml\.gz: corrupt or truncated gzip data \(unexpected end of file\)$/,
    ],
    [
      'unparsable XML',
      () => {
        const broken = gzipSync(
          '<?xml version="1.0"?>\n<metadata packages="1"><package type="rpm"><name>x</nam></package>',
        );
        up.files.set(`/yum/${loc.get('primary')!}`, broken);
        up.files.set('/yum/repodata/repomd.xml', patchRepomd(repomdXml, 'primary', broken));
      },
      /^pulp-lazy: repodata\/[0-9a-f]+-primary\.xml\.gz: not well-formed XML \(.*\)$/,
    ],
    [
      'unparsable repomd.xml',
      () => {
        up.files.set('/yum/repodata/repomd.xml', repomdXml.slice(0, 200));
      },
      /^pulp-lazy: repodata\/repomd\.xml: not well-formed XML/,
    ],
    [
      'missing listed file',
      () => {
        up.files.delete(`/yum/${loc.get('other')!}`);
      },
      /^pulp-lazy: repodata\/[0-9a-f]+-other\.xml\.gz is listed in repodata\/repomd\.xml but the feed answers HTTP 404$/,
    ],
    [
      'missing repomd.xml',
      () => {
        up.files.delete('/yum/repodata/repomd.xml');
      },
      /^pulp-lazy: cannot fetch http:\/\/127\.0\.0\.1:\d+\/yum\/repodata\/repomd\.xml: HTTP 404$/,
    ],
  ];
  await checkRefusedSyncs(env, db, 'y', up, cases);
  // And the repository still syncs once upstream is fixed.
  const s = await sync(env);
  assert.equal(s.changed, false);
});
