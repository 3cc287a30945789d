/**
 * publish.keep_previous in the published tree and the catalog: a republish
 * carries the previous tree's links the new one lacks ("kept"), with their
 * expiry in a manifest outside the tree; links kept already keep their first
 * expiry; pruneKept (and every publish) removes the expired ones in place;
 * an unchanged tree with unexpired kept links is left alone. Older catalog
 * revisions stay while kept links may need them (retireOlderRevisions).
 * Temp dirs, an explicit clock, the real database; the scheduler (`pulp-lazy
 * schedule`) prunes on each run.
 */
import assert from 'node:assert/strict';
import { lstat, mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { type NewCatalogEntry, retireOlderRevisions, writeCatalog } from '../src/catalog/index.ts';
import { pruneKept, publishTree, readPublished, VERSIONS_DIR } from '../src/publish/index.ts';
import { testDatabase } from './helpers/db.ts';
import { spawnCli, taskEnv } from './helpers/tasks.ts';

const T0 = 1_800_000_000_000;
const KEEP = 1000;

async function root(): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-keep-'));
  after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

const publish = (dir: string, tree: Record<string, string>, at: number, keepMs = KEEP) =>
  publishTree(dir, 'el/9', new Map(Object.entries(tree)), { keepMs, now: () => at });

const published = async (dir: string) => Object.fromEntries(await readPublished(dir, 'el/9'));

/** The manifests under .versions: name → kept paths and expiries. */
async function manifests(dir: string): Promise<Record<string, unknown>[]> {
  const names = (await readdir(path.join(dir, VERSIONS_DIR))).filter((n) => n.endsWith('.kept'));
  return Promise.all(
    names.map(async (n) => JSON.parse(await readFile(path.join(dir, VERSIONS_DIR, n), 'utf8'))),
  );
}

const A = { 'repodata/repomd.xml': '/s/repomd-a', 'repodata/aaa-primary.xml.gz': '/s/pa', 'p/x.rpm': '/s/x' };
const B = { 'repodata/repomd.xml': '/s/repomd-b', 'repodata/bbb-primary.xml.gz': '/s/pb', 'p/y.rpm': '/s/y' };
const C = { 'repodata/repomd.xml': '/s/repomd-c', 'repodata/ccc-primary.xml.gz': '/s/pc', 'p/y.rpm': '/s/y' };

test('a republish keeps the links the new tree lacks, until keep_previous, then they are pruned', async () => {
  const dir = await root();
  assert.deepEqual(await publish(dir, A, T0), { changed: true, kept: 0 });
  assert.deepEqual(await publish(dir, B, T0), { changed: true, kept: 2 });
  // The new tree plus the previous tree's hashed primary and dropped package; repomd.xml is B's.
  assert.deepEqual(await published(dir), { ...B, 'repodata/aaa-primary.xml.gz': '/s/pa', 'p/x.rpm': '/s/x' });
  assert.deepEqual(await manifests(dir), [
    { 'repodata/aaa-primary.xml.gz': T0 + KEEP, 'p/x.rpm': T0 + KEEP },
  ]);
  // Only the new version dir and its manifest remain (the manifest is beside the tree, not in it).
  assert.equal((await readdir(path.join(dir, VERSIONS_DIR))).length, 2);

  // The same tree again, kept links unexpired: nothing to do.
  assert.deepEqual(await publish(dir, B, T0 + 500), { changed: false, kept: 2 });
  // C: A's kept links carry over with their first expiry, B's dropped ones get a new one.
  assert.deepEqual(await publish(dir, C, T0 + 500), { changed: true, kept: 3 });
  assert.deepEqual(await manifests(dir), [
    {
      'repodata/aaa-primary.xml.gz': T0 + KEEP,
      'p/x.rpm': T0 + KEEP,
      'repodata/bbb-primary.xml.gz': T0 + 1500,
    },
  ]);

  // pruneKept at A's expiry: A's links go, in place (the empty p/ dir of x.rpm stays: y.rpm is there).
  assert.deepEqual(await pruneKept(dir, T0 + KEEP), { kept: 1 });
  assert.deepEqual(await published(dir), { ...C, 'repodata/bbb-primary.xml.gz': '/s/pb' });
  // A publish past B's expiry prunes too; then C alone is published, unchanged.
  assert.deepEqual(await publish(dir, C, T0 + 1500), { changed: false, kept: 0 });
  assert.deepEqual(await published(dir), C);
  assert.deepEqual(await manifests(dir), []);
});

test('a kept path published again is no longer kept; a path now under a new directory is not carried', async () => {
  const dir = await root();
  await publish(dir, { a: '/s/a', d: '/s/d', 'e/f': '/s/f' }, T0);
  await publish(dir, { a: '/s/a' }, T0);
  assert.deepEqual(await published(dir), { a: '/s/a', d: '/s/d', 'e/f': '/s/f' });
  // d comes back with a new target: the tree differs (d was kept) and d is a plain link again.
  assert.deepEqual(await publish(dir, { a: '/s/a', d: '/s/d2', 'd2/x': '/s/x' }, T0 + 10), {
    changed: true,
    kept: 1,
  });
  assert.deepEqual(await manifests(dir), [{ 'e/f': T0 + KEEP }]);
  // `e` becomes a link where the kept `e/f` was: e/f cannot be carried, and nothing fails.
  assert.deepEqual(await publish(dir, { a: '/s/a', e: '/s/e' }, T0 + 20), { changed: true, kept: 2 });
  assert.deepEqual(await published(dir), { a: '/s/a', e: '/s/e', d: '/s/d2', 'd2/x': '/s/x' });
  await pruneKept(dir, T0 + 20 + KEEP);
  assert.deepEqual(await published(dir), { a: '/s/a', e: '/s/e' });
  assert.deepEqual(await readdir(path.join(dir, 'el/9/')), ['a', 'e'], 'emptied directories removed');
});

test('keep_previous 0: the previous tree goes at once', async () => {
  const dir = await root();
  await publish(dir, A, T0, 0);
  assert.deepEqual(await publish(dir, B, T0, 0), { changed: true, kept: 0 });
  assert.deepEqual(await published(dir), B);
  assert.deepEqual(await manifests(dir), []);
});

const entry = (p: string): NewCatalogEntry => ({
  path: p,
  unit_id: p,
  unit_type_id: 'rpm',
  url: `http://127.0.0.1:1${p}`,
  checksum: '0'.repeat(64),
  checksum_algorithm: 'sha256',
  size: 1,
});

test('retireOlderRevisions with keepMs: older revisions stay until superseded for keepMs', async () => {
  const db = await testDatabase('catalog-keep');
  const revisions = async () =>
    [...new Set((await db.catalog.find({ importer_id: 'imp' }).toArray()).map((e) => e.revision))].sort();
  const write = async (paths: string[]) =>
    (await writeCatalog(db, 'imp', paths.join(), paths.map(entry))).revision;
  const at = (ms: number) => ({ keepMs: KEEP, now: new Date(T0 + ms) });
  await write(['/s/x', '/s/y']);
  const r2 = await write(['/s/y']);
  await retireOlderRevisions(db, 'imp', r2, at(0));
  assert.deepEqual(await revisions(), [1, 2], 'revision 1 kept: the kept link of /s/x needs it');
  const r3 = await write(['/s/z']);
  await retireOlderRevisions(db, 'imp', r3, at(500));
  assert.deepEqual(await revisions(), [1, 2, 3]);
  await retireOlderRevisions(db, 'imp', r3, at(KEEP));
  assert.deepEqual(await revisions(), [2, 3], 'revision 1 superseded at 0: gone at keepMs');
  await retireOlderRevisions(db, 'imp', r3, at(500 + KEEP));
  assert.deepEqual(await revisions(), [3]);
  // keepMs 0: today's behaviour, older revisions go at once.
  const r4 = await write(['/s/w']);
  await retireOlderRevisions(db, 'imp', r4);
  assert.deepEqual(await revisions(), [4]);
});

test('the scheduler prunes expired kept links on each run, with no sync', async () => {
  const te = await taskEnv('keepsched', { tasks: { fetch: 'local', sweep_interval: '1s' } });
  const published = te.config.paths.published;
  // Kept 1 ms from ten seconds ago: expired.
  const past = { keepMs: 1, now: () => Date.now() - 10_000 };
  await publishTree(published, 'el/9', new Map(Object.entries(A)), past);
  await publishTree(published, 'el/9', new Map(Object.entries(B)), past);
  const kept = path.join(published, 'el/9/repodata/aaa-primary.xml.gz');
  await lstat(kept);
  const p = spawnCli(te, ['schedule']);
  // Runs every second: the link goes at the first (the bound only ends a test that would wait forever).
  const exists = () =>
    lstat(kept).then(
      () => true,
      () => false,
    );
  for (let waited = 0; await exists(); waited += 100) {
    assert.ok(waited < 30_000 && p.child.exitCode === null, `kept link still there: ${p.stderr()}`);
    await sleep(100);
  }
  assert.deepEqual(Object.fromEntries(await readPublished(published, 'el/9')), B);
  p.child.kill('SIGTERM');
  assert.equal((await p.exited).code, 0, p.stderr());
});
