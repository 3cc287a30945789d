/**
 * The resolver while a file's storage folders come and go under it, as a
 * reclaim (unlink, remove emptied folders) racing a save (make the folders,
 * rename the file in) does them, in another process: a published link is
 * always a hit or a miss with its storage path, never "not found" and never
 * a "(deleted)" name from /proc. Before the fix about 1 in 500 lookups
 * answered 404 (seen once in CI through `serve`: test/reclaim.test.ts).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { createContentResolver } from '../src/content/resolve.ts';

/** Removes the file and its emptied folders, then makes them again, until killed. */
const CHURN = `
const fs = require('node:fs'), path = require('node:path');
const [root, dir, file] = process.argv.slice(1);
for (let i = 0; ; i++) {
  try { fs.unlinkSync(file); } catch {}
  try { fs.rmdirSync(dir); fs.rmdirSync(path.dirname(dir)); } catch {}
  fs.mkdirSync(dir, { recursive: true });
  const tmp = path.join(root, 'tmp-' + i);
  fs.writeFileSync(tmp, 'x');
  fs.renameSync(tmp, file);
}`;

test('a published link whose storage folders are removed and made again is a hit or a miss, never not found', async (t) => {
  const root = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-resolve-race-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const storage = path.join(root, 'storage');
  const published = path.join(root, 'published');
  const dir = path.join(storage, 'units', 'file', 'ab', 'cdef');
  const file = path.join(dir, 'f.bin');
  await mkdir(dir, { recursive: true });
  await writeFile(file, 'x');
  await mkdir(path.join(published, '.versions', 'v1'), { recursive: true });
  await symlink(file, path.join(published, '.versions', 'v1', 'f.bin'));
  await symlink('.versions/v1', path.join(published, 'r'));
  const resolver = createContentResolver({ storage, published });

  const churn = spawn(process.execPath, ['-e', CHURN, root, dir, file], { stdio: 'ignore' });
  const kinds: Record<string, number> = {};
  const targets = new Set<string>();
  try {
    const started = Date.now();
    for (let n = 0; n < 30_000 && Date.now() - started < 6000; n++) {
      const r = await resolver.resolve('r/f.bin');
      kinds[r.kind] = (kinds[r.kind] ?? 0) + 1;
      if (r.kind === 'missing') targets.add(r.storagePath);
      if (r.kind === 'file') targets.add(r.file);
    }
  } finally {
    // Before the temp root goes: the churn would make its folders again under rm.
    churn.kill('SIGKILL');
    await once(churn, 'exit');
  }
  // Never a "(deleted)" name that /proc gives a folder removed while it was looked at.
  assert.deepEqual([...targets], [file], "a hit and a miss name the link's storage target");
  const seen = JSON.stringify(kinds);
  assert.ok((kinds.file ?? 0) > 0 && (kinds.missing ?? 0) > 0, `the churn raced the lookups: ${seen}`);
  assert.deepEqual(Object.keys(kinds).sort(), ['file', 'missing'], seen);
});
