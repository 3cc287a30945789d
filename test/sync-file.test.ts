/**
 * `repo create` + `sync` of a file repository through the real CLI against a
 * local HTTP upstream and the test database.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { lstat, mkdir, readlink, realpath, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { connect, type Database } from '../src/db/index.ts';
import { unitStoragePath } from '../src/storage/index.ts';
import { runCli } from './helpers/cli.ts';
import { dbSnapshot, mongoUrl } from './helpers/db.ts';
import { type TestEnv, testEnv } from './helpers/env.ts';
import { startUpstream } from './helpers/upstream.ts';

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

function fixture(n: number): { files: Map<string, Buffer>; manifest: string } {
  const files = new Map<string, Buffer>();
  const lines: string[] = [];
  for (let i = 0; i < n; i++) {
    const rel = `dir${i % 10}/file-${i}.bin`;
    const body = Buffer.from(`content of file ${i}\n`.repeat(1 + (i % 5)));
    files.set(rel, body);
    lines.push(`${rel},${sha256(body)},${body.length}`);
  }
  return { files, manifest: `${lines.join('\n')}\n` };
}

async function openDb(env: TestEnv): Promise<Database> {
  return connect(mongoUrl(), env.dbName);
}

test('sync of a 1,000-file manifest: units, catalog, dangling links, no package bytes, idempotent', async (t) => {
  const env = await testEnv('sync1000');
  const { files, manifest } = fixture(1000);
  const up = await startUpstream(new Map([['/repo/PULP_MANIFEST', manifest]]));
  for (const [rel, body] of files) up.files.set(`/repo/${rel}`, body);

  const created = await runCli(['repo', 'create', 'demo', '--type', 'file', '--feed', `${up.url}repo/`], {
    env: env.env,
  });
  assert.equal(created.code, 0, created.stderr);

  const first = await runCli(['sync', 'demo', '--json'], { env: env.env });
  assert.equal(first.code, 0, first.stderr);
  const s1 = JSON.parse(first.stdout);
  assert.equal(s1.units, 1000);
  assert.equal(s1.units_created, 1000);
  assert.equal(s1.published, 1000);
  assert.equal(s1.changed, true);

  // Only the manifest was fetched: zero package bytes.
  assert.equal(up.total(), 1);
  assert.equal(up.hits.get('/repo/PULP_MANIFEST'), 1);

  const db = await openDb(env);
  t.after(() => db.close());
  assert.equal(await db.units.countDocuments({}), 1000);
  assert.equal(await db.units.countDocuments({ downloaded: false }), 1000);
  assert.equal(await db.catalog.countDocuments({}), 1000);
  assert.equal(await db.repoContentUnits.countDocuments({ repo_id: 'demo' }), 1000);

  // Every published path is a dangling symlink into content-addressed storage.
  const published = env.config.paths.published;
  let dangling = 0;
  const catalog = new Map((await db.catalog.find({}).toArray()).map((e) => [e.path, e]));
  for (const [rel, body] of files) {
    const link = path.join(published, 'demo', rel);
    const st = await lstat(link);
    assert.ok(st.isSymbolicLink(), rel);
    const target = await readlink(link);
    assert.equal(target, unitStoragePath(env.config.paths.storage, 'file', sha256(body), path.basename(rel)));
    await stat(link).then(
      () => assert.fail(`${rel} should dangle`),
      () => dangling++,
    );
    const entry = catalog.get(target);
    assert.ok(entry, `catalog entry for ${rel}`);
    assert.equal(entry.url, `${up.url}repo/${rel}`);
    assert.equal(entry.checksum, sha256(body));
  }
  assert.equal(dangling, 1000);

  // Second sync: nothing changes.
  const before = await dbSnapshot(db, { repos: true });
  const second = await runCli(['sync', 'demo', '--json'], { env: env.env });
  assert.equal(second.code, 0, second.stderr);
  const s2 = JSON.parse(second.stdout);
  assert.equal(s2.changed, false);
  assert.equal(s2.units_created, 0);
  assert.deepEqual(await dbSnapshot(db, { repos: true }), before);
  assert.equal(up.total(), 2, 'second sync fetched only the manifest');
});

test('re-sync picks up changes: dropped files unpublished, new ones published, catalog revision replaced', async (t) => {
  const env = await testEnv('resync');
  const { files, manifest } = fixture(20);
  const up = await startUpstream(new Map([['/r/PULP_MANIFEST', manifest]]));
  assert.equal(
    (await runCli(['repo', 'create', 'r', '--type', 'file', '--feed', `${up.url}r`], { env: env.env })).code,
    0,
  );
  assert.equal((await runCli(['sync', 'r'], { env: env.env })).code, 0);
  const db = await openDb(env);
  t.after(() => db.close());
  const rev1 = (await db.catalog.findOne({}))!.revision;

  // Drop file 0, add a new one.
  const lines = manifest.trim().split('\n').slice(1);
  const extra = Buffer.from('brand new');
  lines.push(`new/extra.txt,${sha256(extra)},${extra.length}`);
  up.files.set('/r/PULP_MANIFEST', `${lines.join('\n')}\n`);
  const res = await runCli(['sync', 'r', '--json'], { env: env.env });
  assert.equal(res.code, 0, res.stderr);
  const s = JSON.parse(res.stdout);
  assert.equal(s.paths_added, 1);
  assert.equal(s.paths_removed, 1);
  await assert.rejects(lstat(path.join(env.config.paths.published, 'r', 'dir0/file-0.bin')));
  assert.ok((await lstat(path.join(env.config.paths.published, 'r', 'new/extra.txt'))).isSymbolicLink());
  const revs = await db.catalog.distinct('revision');
  assert.equal(revs.length, 1, 'old revision deleted');
  assert.ok(revs[0]! > rev1);
  assert.equal(await db.catalog.countDocuments({}), 20);
  assert.equal(files.size, 20);
});

test('a file already in storage with the right checksum is created downloaded; a wrong one is not', async (t) => {
  const env = await testEnv('prestored');
  const good = Buffer.from('good bytes');
  const bad = Buffer.from('expected bytes');
  const manifest = `good.txt,${sha256(good)},${good.length}\nbad.txt,${sha256(bad)},${bad.length}\n`;
  const up = await startUpstream(new Map([['/x/PULP_MANIFEST', manifest]]));
  const storage = env.config.paths.storage;
  const goodPath = unitStoragePath(storage, 'file', sha256(good), 'good.txt');
  const badPath = unitStoragePath(storage, 'file', sha256(bad), 'bad.txt');
  await mkdir(path.dirname(goodPath), { recursive: true });
  await mkdir(path.dirname(badPath), { recursive: true });
  await writeFile(goodPath, good);
  await writeFile(badPath, 'corrupted!!!!!');
  assert.equal(
    (await runCli(['repo', 'create', 'x', '--type', 'file', '--feed', `${up.url}x/`], { env: env.env })).code,
    0,
  );
  assert.equal((await runCli(['sync', 'x'], { env: env.env })).code, 0);
  const db = await openDb(env);
  t.after(() => db.close());
  assert.equal((await db.units.findOne({ 'files.storage_path': goodPath }))?.downloaded, true);
  assert.equal((await db.units.findOne({ 'files.storage_path': badPath }))?.downloaded, false);
  // The published link of the stored file resolves.
  assert.equal(await realpath(path.join(env.config.paths.published, 'x', 'good.txt')), goodPath);
});

test('one file shared by two repositories is one unit stored once', async (t) => {
  const env = await testEnv('shared');
  const body = Buffer.from('shared');
  const manifest = `pkg/shared.bin,${sha256(body)},${body.length}\n`;
  const up = await startUpstream(
    new Map([
      ['/a/PULP_MANIFEST', manifest],
      ['/b/PULP_MANIFEST', manifest],
    ]),
  );
  for (const n of ['a', 'b']) {
    assert.equal(
      (await runCli(['repo', 'create', n, '--type', 'file', '--feed', `${up.url}${n}/`], { env: env.env }))
        .code,
      0,
    );
    assert.equal((await runCli(['sync', n], { env: env.env })).code, 0);
  }
  const db = await openDb(env);
  t.after(() => db.close());
  assert.equal(await db.units.countDocuments({}), 1);
  assert.equal(await db.catalog.countDocuments({}), 2, 'one entry per importer');
  const a = await readlink(path.join(env.config.paths.published, 'a', 'pkg/shared.bin'));
  const b = await readlink(path.join(env.config.paths.published, 'b', 'pkg/shared.bin'));
  assert.equal(a, b);
});

test('malformed manifest, unreachable feed, unknown repo, bad config: one-line errors, non-zero exit, DB unchanged', async (t) => {
  const env = await testEnv('errors');
  const good = fixture(5);
  const up = await startUpstream(new Map([['/m/PULP_MANIFEST', good.manifest]]));
  assert.equal(
    (await runCli(['repo', 'create', 'm', '--type', 'file', '--feed', `${up.url}m/`], { env: env.env })).code,
    0,
  );
  assert.equal((await runCli(['sync', 'm'], { env: env.env })).code, 0);
  const db = await openDb(env);
  t.after(() => db.close());
  const before = await dbSnapshot(db, { repos: true });
  const tree = await readlink(path.join(env.config.paths.published, 'm'));

  const oneLineError = (r: { code: number; stderr: string }, re: RegExp) => {
    assert.notEqual(r.code, 0);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `one line: ${r.stderr}`);
    assert.match(lines[0]!, re);
    assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
  };

  up.files.set(
    '/m/PULP_MANIFEST',
    `${good.manifest}broken-line-without-fields\n../escape,${'a'.repeat(64)},1\n`,
  );
  oneLineError(
    await runCli(['sync', 'm'], { env: env.env }),
    /^pulp-lazy: .*PULP_MANIFEST: line 6: expected 3 fields.*line 7: unsafe/,
  );

  up.files.delete('/m/PULP_MANIFEST');
  oneLineError(
    await runCli(['sync', 'm'], { env: env.env }),
    /^pulp-lazy: cannot fetch .*PULP_MANIFEST: HTTP 404$/,
  );

  await runCli(['repo', 'create', 'dead', '--type', 'file', '--feed', 'http://127.0.0.1:9/nothing/'], {
    env: env.env,
  });
  const deadBefore = await dbSnapshot(db, { repos: true });
  oneLineError(
    await runCli(['sync', 'dead'], { env: env.env }),
    /^pulp-lazy: cannot fetch http:\/\/127\.0\.0\.1:9\/nothing\/PULP_MANIFEST: .*ECONNREFUSED/,
  );
  assert.deepEqual(await dbSnapshot(db, { repos: true }), deadBefore);
  await runCli(['repo', 'delete', 'dead'], { env: env.env });

  const unknown = await runCli(['sync', 'nope'], { env: env.env });
  oneLineError(unknown, /^pulp-lazy: repository "nope" does not exist$/);
  assert.equal(unknown.code, 1);

  const badConfig = path.join(env.root, 'bad.toml');
  await writeFile(badConfig, '[tasks]\nconcurrency = 0\n');
  const bc = await runCli(['--config', badConfig, 'sync', 'm'], { env: env.env });
  oneLineError(bc, /^pulp-lazy: .*bad\.toml: tasks\.concurrency: /);
  assert.equal(bc.code, 2);

  assert.deepEqual(await dbSnapshot(db, { repos: true }), before, 'database unchanged');
  assert.equal(await readlink(path.join(env.config.paths.published, 'm')), tree, 'published tree unchanged');
});

test('a second concurrent sync of one repository is refused, not interleaved', async (t) => {
  const env = await testEnv('concurrent');
  const { manifest } = fixture(300);
  const up = await startUpstream(new Map([['/c/PULP_MANIFEST', manifest]]));
  assert.equal(
    (await runCli(['repo', 'create', 'c', '--type', 'file', '--feed', `${up.url}c/`], { env: env.env })).code,
    0,
  );
  const [a, b] = await Promise.all([
    runCli(['sync', 'c'], { env: env.env }),
    runCli(['sync', 'c'], { env: env.env }),
  ]);
  const codes = [a.code, b.code].sort();
  const db = await openDb(env);
  t.after(() => db.close());
  // Either both ran one after the other (both 0) or one was refused with a clear message.
  for (const r of [a, b]) if (r.code !== 0) assert.match(r.stderr, /already being synced/);
  assert.ok(codes[0] === 0);
  assert.equal(await db.catalog.countDocuments({}), 300);
  assert.equal(await db.units.countDocuments({}), 300);
  assert.equal(await db.locks.countDocuments({ _id: 'sync:c' }), 0, 'lease released');
});
