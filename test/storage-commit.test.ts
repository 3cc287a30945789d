/**
 * commitFile (src/storage/index.ts) with the working dir on another
 * filesystem than storage (rename gives EXDEV): the file is copied beside its
 * target and renamed there; when that fails, no half-copied `.part` file is
 * left beside the stored files. /dev/shm (tmpfs) is the other filesystem.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { commitFile } from '../src/storage/index.ts';

async function twoFilesystems(t: { after: (fn: () => Promise<void>) => void }) {
  const working = await mkdtemp('/dev/shm/pulp-lazy-commit-');
  const storage = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-commit-'));
  t.after(async () => {
    await rm(working, { recursive: true, force: true });
    await rm(storage, { recursive: true, force: true });
  });
  assert.notEqual(
    (await stat(working)).dev,
    (await stat(storage)).dev,
    '/dev/shm is on the same filesystem as the temp dir',
  );
  return { working, storage };
}

test('across filesystems: the file is stored whole, the temp file removed, nothing else left', async (t) => {
  const { working, storage } = await twoFilesystems(t);
  const temp = path.join(working, 'unit.tmp');
  const bytes = Buffer.alloc(300_000, 7);
  await writeFile(temp, bytes);
  const target = path.join(storage, 'units', 'ab', 'unit.bin');
  await commitFile(temp, target);
  assert.ok((await readFile(target)).equals(bytes));
  assert.deepEqual(await readdir(path.dirname(target)), ['unit.bin']);
  await assert.rejects(stat(temp), { code: 'ENOENT' });
});

test('across filesystems: a failed final rename leaves no .part beside the stored files', async (t) => {
  const { working, storage } = await twoFilesystems(t);
  const temp = path.join(working, 'unit.tmp');
  await writeFile(temp, Buffer.alloc(300_000, 9));
  // The target is a directory that is not empty: the rename of the copy onto it fails.
  const target = path.join(storage, 'units', 'cd', 'unit.bin');
  await mkdir(target, { recursive: true });
  await writeFile(path.join(target, 'keep'), 'x');
  await assert.rejects(commitFile(temp, target));
  assert.deepEqual(await readdir(path.dirname(target)), ['unit.bin'], 'left beside the target');
  assert.deepEqual(await readdir(target), ['keep']);
  assert.equal((await stat(temp)).size, 300_000, 'the temp file is the caller’s to remove');
});
