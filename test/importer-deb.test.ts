/**
 * Deb (apt) importer through the real CLI: .debs built with dpkg-deb,
 * Packages and Release from apt-ftparchive, served by a local upstream
 * counting requests.
 */
import assert from 'node:assert/strict';
import { cp, lstat, mkdtemp, readdir, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { connect, type Database } from '../src/db/index.ts';
import { parseRelease } from '../src/importers/debian.ts';
import { runCli, syncJson } from './helpers/cli.ts';
import { dbSnapshot, mongoUrl } from './helpers/db.ts';
import { type TestEnv, testEnv } from './helpers/env.ts';
import {
  aptIndexes,
  buildDeb,
  checkLazyPackages,
  readTree,
  serveTree,
  writeAptRelease,
} from './helpers/pkgrepos.ts';
import { checkRefusedSyncs, type RefusedSyncCase } from './helpers/refused-sync.ts';
import { hitsMatching, startUpstream, type Upstream } from './helpers/upstream.ts';

let work: string;
/** Built once: Filename → bytes. */
let debs: Map<string, Buffer>;
let SPARE: string;

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-debfx-'));
  const out = path.join(work, 'built');
  for (const p of [
    { name: 'pldeb-alpha', version: '1.0' },
    { name: 'pldeb-beta', version: '2.1-3', arch: 'amd64' },
    { name: 'pldeb-gamma', version: '0.9' },
  ]) {
    await buildDeb(path.join(work, 'build'), out, p);
  }
  SPARE = await buildDeb(path.join(work, 'build'), out, { name: 'pldeb-delta', version: '1.0' });
  debs = await readTree(out);
  assert.equal(debs.size, 4);
});
after(() => rm(work, { recursive: true, force: true }));

const three = () => [...debs.keys()].filter((k) => k !== SPARE).sort();

async function makeArchive(names: string[], opts: Parameters<typeof aptIndexes>[1] = {}): Promise<string> {
  const dir = await mkdtemp(path.join(work, 'archive-'));
  for (const rel of names) {
    await cp(path.join(work, 'built', rel), path.join(dir, rel));
  }
  await aptIndexes(dir, opts);
  await writeFile(path.join(dir, 'dists/stable/Release.gpg'), 'not really a signature\n');
  return dir;
}

async function setup(label: string, opts: Parameters<typeof aptIndexes>[1] = {}) {
  const env = await testEnv(label);
  const dir = await makeArchive(three(), opts);
  const up = await startUpstream();
  await serveTree(up.files, '/deb/', dir);
  const c = await runCli(
    [
      'repo',
      'create',
      'd',
      '--type',
      'deb',
      '--feed',
      `${up.url}deb/`,
      '--dists',
      'stable',
      '--components',
      'main',
      '--architectures',
      'amd64,all',
    ],
    { env: env.env },
  );
  assert.equal(c.code, 0, c.stderr);
  const db = await connect(mongoUrl(), env.dbName);
  after(() => db.close());
  return { env, dir, up, db };
}

const sync = (env: TestEnv) => syncJson(env.env, 'd');
const packageHits = (up: Upstream) => hitsMatching(up, /\/pool\//);

async function checkPublished(env: TestEnv, dir: string, db: Database, packages: string[]) {
  const pub = path.join(env.config.paths.published, 'd');
  const upstream = await readTree(dir);
  const dists = [...upstream.keys()].filter((k) => k.startsWith('dists/'));
  for (const rel of dists) {
    assert.deepEqual(await readFile(path.join(pub, rel)), upstream.get(rel), `${rel} byte-identical`);
  }
  // by-hash copies of every index (Acquire-By-Hash: yes), SHA256 and SHA512.
  const release = parseRelease(upstream.get('dists/stable/Release')!.toString('utf8'));
  assert.equal(release.acquireByHash, true);
  const published = await readTree(path.join(pub, 'dists'));
  for (const [rel, f] of release.files) {
    if (!upstream.has(`dists/stable/${rel}`)) continue;
    const dirName = path.posix.dirname(rel);
    for (const [alg, digest] of [
      ['SHA256', f.sha256],
      ['SHA512', f.sha512],
    ] as const) {
      const byHash = `stable/${dirName}/by-hash/${alg}/${digest}`;
      assert.deepEqual(published.get(byHash), upstream.get(`dists/stable/${rel}`), byHash);
    }
  }
  await checkLazyPackages(db, env.config.paths.storage, pub, 'deb', 'deb', debs, packages);
  const pool = await readTree(path.join(pub, 'pool')).catch(() => new Map());
  assert.equal(pool.size, 0, 'pool links dangle');
}

test('lazy sync: deb units, catalog, dists/ published byte-identical with by-hash, zero package bytes', async () => {
  const { env, dir, up, db } = await setup('deblazy');
  const s = await sync(env);
  // Release, Release.gpg, Packages, Packages.gz, Packages.xz.
  assert.equal(await db.units.countDocuments({ unit_type_id: 'deb_metadata', downloaded: true }), 5);
  assert.equal(await db.units.countDocuments({ unit_type_id: 'deb', downloaded: false }), 3);
  assert.equal(s.units, 8);
  assert.equal(s.published, 5 + 3 * 2 + 3, 'metadata + by-hash (SHA256, SHA512) of 3 indexes + packages');
  const beta = await db.units.findOne({ unit_type_id: 'deb', 'unit_key.name': 'pldeb-beta' });
  assert.equal(beta?.unit_key.version, '2.1-3');
  assert.equal(beta?.unit_key.architecture, 'amd64');
  assert.equal(beta?.metadata?.filename, 'pool/main/p/pldeb-beta/pldeb-beta_2.1-3_amd64.deb');
  await checkPublished(env, dir, db, three());
  assert.equal(packageHits(up), 0, 'no package bytes fetched');
  const base = '/deb/dists/stable/';
  assert.deepEqual(
    [...up.hits.keys()].sort(),
    [
      'InRelease',
      'Release',
      'Release.gpg',
      'main/binary-amd64/Packages',
      'main/binary-amd64/Packages.gz',
      'main/binary-amd64/Packages.xz',
    ]
      .map((p) => base + p)
      .sort(),
  );
  assert.deepEqual(await readdir(path.join(env.config.paths.working, 'tmp')), []);
});

test('re-sync is idempotent; added and removed packages and regenerated indexes are picked up', async () => {
  const { env, up, db } = await setup('debresync');
  await sync(env);
  const before = await dbSnapshot(db);
  const link = path.join(env.config.paths.published, 'd');
  const tree = await readlink(link);
  const s2 = await sync(env);
  assert.equal(s2.changed, false);
  assert.deepEqual(await dbSnapshot(db), before);
  assert.equal(await readlink(link), tree);

  const names = [...three().filter((n) => !n.includes('alpha')), SPARE].sort();
  const dir2 = await makeArchive(names);
  await serveTree(up.files, '/deb/', dir2);
  const s3 = await sync(env);
  assert.equal(s3.changed, true);
  await checkPublished(env, dir2, db, names);
  await assert.rejects(lstat(path.join(link, three().find((n) => n.includes('alpha'))!)));
  assert.equal(await db.repoContentUnits.countDocuments({ unit_type_id: 'deb' }), 3);
  assert.equal(packageHits(up), 0);
});

test('InRelease only, .xz-only indexes, default components and architectures', async () => {
  const env = await testEnv('debinrel');
  const dir = await makeArchive(three(), { variants: ['xz'], byHash: false });
  const release = await readFile(path.join(dir, 'dists/stable/Release'), 'utf8');
  // A clearsigned wrapper (signature not checked by the importer; clients verify it).
  const inRelease = `-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\n${release
    .split('\n')
    .map((l) => (l.startsWith('-') ? `- ${l}` : l))
    .join('\n')}-----BEGIN PGP SIGNATURE-----\n\nbm90IGEgc2lnbmF0dXJl\n-----END PGP SIGNATURE-----\n`;
  await rm(path.join(dir, 'dists/stable/Release'));
  await rm(path.join(dir, 'dists/stable/Release.gpg'));
  await writeFile(path.join(dir, 'dists/stable/InRelease'), inRelease);
  const up = await startUpstream();
  await serveTree(up.files, '/deb/', dir);
  const c = await runCli(['repo', 'create', 'd', '--type', 'deb', '--feed', `${up.url}deb`], {
    env: env.env,
  });
  assert.equal(c.code, 0, c.stderr);
  const db = await connect(mongoUrl(), env.dbName);
  after(() => db.close());
  const s = await sync(env);
  assert.equal(await db.units.countDocuments({ unit_type_id: 'deb' }), 3);
  assert.equal(s.published, 2 + 3, 'InRelease, Packages.xz, three packages (no by-hash)');
  const pub = path.join(env.config.paths.published, 'd');
  assert.equal(await readFile(path.join(pub, 'dists/stable/InRelease'), 'utf8'), inRelease);
  assert.equal(packageHits(up), 0);
});

test('bad metadata fails with one line and leaves the published tree, database and storage untouched', async () => {
  const { env, dir, up, db } = await setup('debbad');
  await sync(env);
  const base = '/deb/dists/stable/';

  /** Replaces the index variants with `files` and regenerates a matching Release. */
  const withIndexes = async (files: Record<string, Buffer>) => {
    const d = await mkdtemp(path.join(work, 'bad-'));
    await cp(dir, d, { recursive: true });
    const bin = path.join(d, 'dists/stable/main/binary-amd64');
    await rm(bin, { recursive: true });
    const { mkdir } = await import('node:fs/promises');
    await mkdir(bin, { recursive: true });
    for (const [n, b] of Object.entries(files)) await writeFile(path.join(bin, n), b);
    await writeAptRelease(d, 'stable');
    await serveTree(up.files, '/deb/', d);
  };
  const plain = await readFile(path.join(dir, 'dists/stable/main/binary-amd64/Packages'));

  const cases: RefusedSyncCase[] = [
    [
      'checksum mismatch',
      async () => {
        const p = `${base}main/binary-amd64/Packages.gz`;
        const body = Buffer.from(up.files.get(p) as Buffer);
        body[body.length - 3]! ^= 0xff;
        up.files.set(p, body);
      },
      /^pulp-lazy: dists\/stable\/main\/binary-amd64\/Packages\.gz: sha256 [0-9a-f]{64}, dists\/stable\/Release says [0-9a-f]{64} \(checksum mismatch\)$/,
    ],
    [
      'truncated gzip',
      () => withIndexes({ 'Packages.gz': gzipSync(plain).subarray(0, 100) }),
      /^pulp-lazy: dists\/stable\/main\/binary-amd64\/Packages\.gz: corrupt or truncated gzip data \(unexpected end of file\)$/,
    ],
    [
      'unparsable index',
      () => withIndexes({ Packages: Buffer.from(`${plain.toString('utf8')}\nthis line is not a field\n`) }),
      /^pulp-lazy: dists\/stable\/main\/binary-amd64\/Packages line \d+: not a "Field: value" line$/,
    ],
    [
      'stanza without SHA256',
      () => withIndexes({ Packages: Buffer.from(plain.toString('utf8').replace(/^SHA256: .*\n/m, '')) }),
      /^pulp-lazy: dists\/stable\/main\/binary-amd64\/Packages: stanza 1 \(pldeb-alpha\): missing SHA256 field$/,
    ],
    [
      'missing listed index',
      async () => {
        for (const n of ['Packages', 'Packages.gz', 'Packages.xz'])
          up.files.delete(`${base}main/binary-amd64/${n}`);
      },
      /^pulp-lazy: dists\/stable\/Release: none of the Packages indexes listed for main\/binary-amd64 is on the feed \(HTTP 404\)$/,
    ],
    [
      'no Release',
      async () => {
        up.files.delete(`${base}Release`);
      },
      /^pulp-lazy: distribution "stable": neither dists\/stable\/InRelease nor dists\/stable\/Release on the feed \(HTTP 404\)$/,
    ],
  ];
  await checkRefusedSyncs(env, db, 'd', up, cases);
  assert.equal((await sync(env)).changed, false);
});
