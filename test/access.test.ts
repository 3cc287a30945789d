/**
 * Access tracking (src/storage/access.ts) on the real database: a path is
 * written at most once per granularity (the second hit within 12 h writes
 * nothing: the document removed in between stays absent), again after it,
 * never for files outside `<storage>/units/`, at most WRITE_CHUNK paths per
 * bulk write, and `$max` keeps the latest time. The content daemon records
 * GET hits of unit files (its X-Sendfile answer), not HEAD and not published
 * metadata, and writes them when it closes. The fast path's piped logger
 * does the same for the lines Apache gives it, and writes at end of input.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { connect, WRITE_CHUNK } from '../src/db/index.ts';
import { createAccessRecorder } from '../src/storage/access.ts';
import { unitStoragePath } from '../src/storage/index.ts';
import { BIN } from './helpers/cli.ts';
import { contentConfig, digestOf, insertRepo, makeTree, startDaemon } from './helpers/content.ts';
import { mongoUrl, testDatabase } from './helpers/db.ts';
import { testEnv } from './helpers/env.ts';

const HOUR = 3_600_000;

test('the recorder writes a path once per granularity, only unit files, in bounded chunks, keeping the latest time', async (t) => {
  const db = await testDatabase('access');
  const root = '/srv/storage';
  let now = Date.parse('2026-01-01T00:00:00Z');
  const rec = createAccessRecorder(db, { storageRoot: root, clock: () => now, flushMs: 3_600_000 });
  t.after(() => rec.close());
  const unit = `${root}/units/file/ab/${'c'.repeat(62)}/a.bin`;
  const at = async (p: string) => (await db.unitAccess.findOne({ _id: p }))?.last_served_at.getTime();

  rec.served(unit);
  rec.served(`${root}/other/metadata.xml`);
  rec.served('/elsewhere/units/x');
  await rec.flush();
  assert.equal(rec.writes, 1);
  assert.equal(await at(unit), now);
  assert.equal(await db.unitAccess.countDocuments({}), 1, 'only the unit file is recorded');

  // Within 12 h: no write at all (the document removed meanwhile stays absent).
  await db.unitAccess.deleteMany({});
  now += 11 * HOUR;
  rec.served(unit);
  rec.served(unit);
  await rec.flush();
  assert.equal(rec.writes, 1, 'a second hit within the granularity was written');
  assert.equal(await at(unit), undefined);

  // After 12 h: written again.
  now += 2 * HOUR;
  rec.served(unit);
  await rec.flush();
  assert.equal(rec.writes, 2);
  assert.equal(await at(unit), now);

  // 250 paths: ceil(250 / 99) bulk writes; an older time never moves a path back ($max).
  const many = Array.from({ length: 250 }, (_, i) => `${root}/units/file/00/${i}/f`);
  for (const p of many) rec.served(p);
  await rec.flush();
  assert.equal(rec.writes, 2 + Math.ceil(250 / WRITE_CHUNK));
  assert.equal(await db.unitAccess.countDocuments({}), 251);
  const late = createAccessRecorder(db, { storageRoot: root, clock: () => now - HOUR });
  late.served(unit);
  await late.close();
  assert.equal(await at(unit), now, '$max: an older flush left the newer time');
});

test('the content daemon records GET hits of unit files (X-Sendfile), not HEAD nor published metadata', async () => {
  const db = await testDatabase('access-content');
  const tree = await makeTree('access-content');
  await insertRepo(db, 'r', 'r');
  await tree.repo('r');
  const stored = await tree.store('file', digestOf('a'), 'a.bin', 'bytes of a\n');
  const headOnly = await tree.store('file', digestOf('h'), 'h.bin', 'bytes of h\n');
  await tree.link('r', 'a.bin', stored);
  await tree.link('r', 'h.bin', headOnly);
  const meta = path.join(tree.paths.published, 'r', 'repodata.xml');
  await writeFile(meta, '<metadata/>');
  const d = await startDaemon(contentConfig(tree), { db });

  const hit = await d.get('/pulp/content/r/a.bin');
  assert.equal(hit.status, 200);
  assert.equal(hit.headers['x-sendfile'], stored);
  assert.equal((await d.head('/pulp/content/r/h.bin')).status, 200);
  assert.equal((await d.get('/pulp/content/r/repodata.xml')).status, 200);
  await d.daemon.close({ deadlineMs: 1000 });
  assert.deepEqual(
    (await db.unitAccess.find({}).toArray()).map((d) => d._id),
    [stored],
    'the GET hit of the unit file, and nothing else',
  );
});

test("the fast path's piped logger (pulp-lazy access-log) records served GETs of unit files and writes them when Apache closes its input", async (t) => {
  const env = await testEnv('access-log');
  const db = await connect(mongoUrl(), env.dbName);
  t.after(() => db.close());
  const { storage, published } = env.config.paths;
  const unitFile = unitStoragePath(storage, 'file', digestOf('logged'), 'logged.rpm');
  const other = unitStoragePath(storage, 'file', digestOf('head'), 'head.rpm');
  for (const f of [unitFile, other]) {
    await mkdir(path.dirname(f), { recursive: true });
    await writeFile(f, 'bytes');
  }
  const link = path.join(published, 'r', 'Packages', 'logged.rpm');
  const headLink = path.join(published, 'r', 'Packages', 'head.rpm');
  const metadata = path.join(published, 'r', 'repodata', 'repomd.xml');
  await mkdir(path.dirname(link), { recursive: true });
  await mkdir(path.dirname(metadata), { recursive: true });
  await symlink(unitFile, link);
  await symlink(other, headLink);
  await writeFile(metadata, '<repomd/>');

  // As Apache pipes them (FAST_HIT_LOG_FORMAT "%>s %m %f"): only the first line is a served unit file.
  const child = spawn(process.execPath, [BIN, 'access-log'], {
    env: env.env,
    stdio: ['pipe', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  child.stdin.end(
    [
      `200 GET ${link}`,
      `200 HEAD ${headLink}`,
      `404 GET ${headLink}`,
      `200 GET ${metadata}`,
      'garbage',
      '',
    ].join('\n'),
  );
  const [code] = (await once(child, 'exit')) as [number | null];
  assert.equal(code, 0, stderr);
  // The recorder writes every 5 s; the process ended at once, so the write came from the end of input.
  const docs = await db.unitAccess.find({}).toArray();
  assert.deepEqual(
    docs.map((d) => d._id),
    [unitFile],
  );
});
