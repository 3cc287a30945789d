/**
 * Download policies at sync time (issue #22), through the real CLI against a
 * local upstream, the test database and an in-process streamer daemon that
 * the download tasks reach through the signed proxy URL (tasks.fetch proxy):
 *   - background: the sync publishes lazily and queues what is not stored;
 *     clients are served before the sweep, and one sweep stores everything;
 *   - immediate: the sync returns once every unit is stored, the published
 *     tree never has a dangling link, and a file upstream lacks fails the
 *     sync with one line while the previous tree stays published.
 */
import assert from 'node:assert/strict';
import { readdir, readlink, realpath, stat } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import type { SyncSummary } from '../src/importers/sync.ts';
import { unitStoragePath } from '../src/storage/index.ts';
import { fetchRaw, urlFor } from './helpers/streamer.ts';
import {
  bytes,
  checkStorage,
  logLines,
  runCliIn,
  sha256,
  spawnCli,
  startTaskStreamer,
  startUpstream,
  type TaskEnv,
  taskEnv,
  type Upstream,
} from './helpers/tasks.ts';

/** Serves `files` (relative path → bytes) and their PULP_MANIFEST below /<name>/. */
function serveRepo(up: Upstream, name: string, files: Record<string, Buffer>, missing: string[] = []): void {
  const lines = Object.entries(files).map(([rel, body]) => `${rel},${sha256(body)},${body.length}`);
  up.files.set(`/${name}/PULP_MANIFEST`, Buffer.from(`${lines.join('\n')}\n`));
  for (const [rel, body] of Object.entries(files))
    if (!missing.includes(rel)) up.files.set(`/${name}/${rel}`, body);
}

async function sync(te: TaskEnv, name: string): Promise<SyncSummary> {
  const r = await runCliIn(te, ['sync', name, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as SyncSummary;
}

async function cli(te: TaskEnv, args: string[]): Promise<void> {
  const r = await runCliIn(te, args);
  assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
}

/** Every file of the repository's published tree: its relative path and whether its link resolves. */
async function publishedFiles(te: TaskEnv, name: string): Promise<Map<string, boolean>> {
  const out = new Map<string, boolean>();
  const root = await realpath(path.join(te.config.paths.published, name)).catch(() => undefined);
  if (!root) return out;
  for (const e of await readdir(root, { recursive: true, withFileTypes: true }).catch(() => [])) {
    if (!e.isSymbolicLink()) continue;
    const p = path.join(e.parentPath, e.name);
    out.set(
      path.relative(root, p),
      await stat(p).then(
        () => true,
        () => false,
      ),
    );
  }
  return out;
}

const storagePathOf = (te: TaskEnv, rel: string, body: Buffer) =>
  unitStoragePath(te.config.paths.storage, 'file', sha256(body), path.basename(rel));

test('background: a switched repository queues what is missing at its next sync; served before, all stored after one sweep', async () => {
  const te = await taskEnv('policy-bg');
  const { port } = await startTaskStreamer(te);
  const up = await startUpstream();
  const files = Object.fromEntries(Array.from({ length: 6 }, (_, i) => [`d/f${i}.bin`, bytes(3000 + i, i)]));
  serveRepo(up, 'bg', files);
  await cli(te, ['repo', 'create', 'bg', '--type', 'file', '--feed', `${up.base}/bg/`]);

  // on_demand first: nothing queued.
  const s1 = await sync(te, 'bg');
  assert.equal(s1.policy, 'on_demand');
  assert.equal(s1.queued, 0);
  assert.equal(await te.db.deferred.countDocuments({}), 0);

  // A client is served one file (the streamer saves it), then the policy changes.
  const first = await fetchRaw(
    urlFor(`http://127.0.0.1:${port}`, storagePathOf(te, 'd/f0.bin', files['d/f0.bin']!)),
  );
  assert.equal(first.status, 200);
  assert.ok(first.body.equals(files['d/f0.bin']!));
  assert.equal((await te.db.repos.findOne({ _id: 'bg' }))?.policy_in_force, 'on_demand');
  await cli(te, ['repo', 'update', 'bg', '--policy', 'background']);
  assert.equal(
    (await te.db.repos.findOne({ _id: 'bg' }))?.policy_in_force,
    'on_demand',
    'not before the sync',
  );
  assert.match((await runCliIn(te, ['repo', 'list'])).stdout, /^bg\tfile\tbackground\t/m);
  const s2 = await sync(te, 'bg');
  assert.equal(s2.policy, 'background');
  assert.equal(s2.queued, 5, 'every unit not stored yet is queued, the stored one is not');
  assert.equal(
    (await te.db.repos.findOne({ _id: 'bg' }))?.policy_in_force,
    'background',
    'in force from the sync',
  );
  assert.equal(s2.downloaded, 0);
  assert.equal(await te.db.deferred.countDocuments({}), 5);
  assert.equal(up.getsOf('/bg/d/f1.bin'), 0, 'the sync itself downloads nothing');
  // Published lazily: the stored file resolves, the others dangle until the sweep.
  const before = await publishedFiles(te, 'bg');
  assert.equal(before.size, 6);
  assert.equal([...before.values()].filter(Boolean).length, 1);

  // Clients are served while the queue waits.
  const served = await fetchRaw(
    urlFor(`http://127.0.0.1:${port}`, storagePathOf(te, 'd/f3.bin', files['d/f3.bin']!)),
  );
  assert.equal(served.status, 200);
  assert.ok(served.body.equals(files['d/f3.bin']!));

  await cli(te, ['sweep']);
  assert.deepEqual(await checkStorage(te), { downloaded: 6, notDownloaded: 0 });
  assert.equal(await te.db.deferred.countDocuments({}), 0);
  assert.deepEqual([...(await publishedFiles(te, 'bg')).values()], Array(6).fill(true));
  for (const rel of Object.keys(files)) assert.equal(up.getsOf(`/bg/${rel}`), 1, `${rel} fetched once`);

  // A re-sync queues nothing: everything is stored.
  assert.equal((await sync(te, 'bg')).queued, 0);
});

test('immediate: the sync returns with every unit stored and never publishes a dangling link; a 404 keeps the previous tree', async () => {
  const te = await taskEnv('policy-imm');
  await startTaskStreamer(te);
  const up = await startUpstream();
  const files = Object.fromEntries(
    Array.from({ length: 8 }, (_, i) => [`p/f${i}.bin`, bytes(4096, `i${i}`)]),
  );
  serveRepo(up, 'imm', files);
  await cli(te, [
    'repo',
    'create',
    'imm',
    '--type',
    'file',
    '--feed',
    `${up.base}/imm/`,
    '--policy',
    'immediate',
  ]);

  // Slow bodies: the tree is watched while the sync runs; every link it ever shows resolves.
  up.delayMs = 5;
  const run = spawnCli(te, ['sync', 'imm', '--json']);
  let done = false;
  const exited = run.exited.then((e) => {
    done = true;
    return e;
  });
  let looks = 0;
  while (!done) {
    for (const [rel, resolves] of await publishedFiles(te, 'imm'))
      assert.ok(resolves, `${rel} published dangling`);
    looks++;
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.equal((await exited).code, 0, run.stderr());
  assert.ok(looks > 0);
  const s = JSON.parse(run.stdout()) as SyncSummary;
  assert.equal(s.policy, 'immediate');
  assert.equal(s.downloaded, 8);
  assert.equal(s.queued, 0);
  assert.deepEqual(await checkStorage(te), { downloaded: 8, notDownloaded: 0 });
  const tree = await publishedFiles(te, 'imm');
  assert.equal(tree.size, 8);
  assert.deepEqual([...tree.values()], Array(8).fill(true));
  assert.equal(await te.db.deferred.countDocuments({}), 0);
  up.delayMs = 0;

  // Upstream adds two files but lacks one of them: the sync fails, the previous tree and catalog stay.
  const repoBefore = await te.db.repos.findOne({ _id: 'imm' });
  const revisions = await te.db.catalog.distinct('revision');
  const treeBefore = await readlink(path.join(te.config.paths.published, 'imm'));
  const more = { ...files, 'p/new-ok.bin': bytes(1000, 'ok'), 'p/new-gone.bin': bytes(1000, 'gone') };
  serveRepo(up, 'imm', more, ['p/new-gone.bin']);
  const failed = await runCliIn(te, ['sync', 'imm']);
  assert.equal(failed.code, 1);
  // Besides the structured log lines (the failed unit, at warn), one line: the error.
  const lines = failed.stderr
    .trim()
    .split('\n')
    .filter((l) => !l.startsWith('{'));
  assert.equal(lines.length, 1, failed.stderr);
  assert.ok(logLines(failed.stderr).some((l) => l.event === 'sync_immediate.unit_failed'));
  assert.match(lines[0]!, /1 of 2 units could not be downloaded, the previous tree stays published/);
  assert.doesNotMatch(failed.stderr, /\n\s+at /);
  assert.equal(await readlink(path.join(te.config.paths.published, 'imm')), treeBefore);
  const after = await publishedFiles(te, 'imm');
  assert.deepEqual([...after.keys()].sort(), [...tree.keys()].sort());
  assert.deepEqual([...after.values()], Array(8).fill(true));
  assert.deepEqual(await te.db.catalog.distinct('revision'), revisions, 'the new revision was discarded');
  assert.deepEqual((await te.db.repos.findOne({ _id: 'imm' }))?.last_sync, repoBefore?.last_sync);
  assert.equal(await te.db.deferred.countDocuments({}), 0, 'an immediate failure queues nothing');

  // Once upstream has it, the next sync publishes everything, stored.
  up.files.set('/imm/p/new-gone.bin', more['p/new-gone.bin']);
  const s3 = await runCliIn(te, ['sync', 'imm']);
  assert.equal(s3.code, 0, s3.stderr);
  assert.match(
    s3.stdout,
    /^synced "imm": .*, 1 units downloaded\n$/,
    'the file fetched by the failed sync is kept',
  );
  assert.deepEqual([...(await publishedFiles(te, 'imm')).values()], Array(10).fill(true));
  assert.equal(up.getsOf('/imm/p/new-ok.bin'), 1);
});
