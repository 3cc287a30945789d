/**
 * The tasks' temp folder (`<paths.working>/tasks/tmp`, also used by the
 * in-process streamer of the "local" fetch mode). A worker killed with -9
 * leaves its partial files there; every run removes files untouched for
 * longer than the lease: a live download writes continuously and its worker
 * renews its lease, so such a file can only belong to a dead worker.
 */
import { readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';

export function tasksWorkingDir(working: string): string {
  return path.join(working, 'tasks');
}

/** What src/storage tempPath() uses below a working dir. */
export function tempDirOf(workingDir: string): string {
  return path.join(workingDir, 'tmp');
}

/** Removes files in `dir` not modified for `olderThanMs`; returns how many were removed. */
export async function cleanStaleTemps(dir: string, olderThanMs: number, now = Date.now()): Promise<number> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return 0;
  }
  let removed = 0;
  for (const name of names) {
    const file = path.join(dir, name);
    const st = await stat(file).catch(() => undefined);
    if (!st?.isFile() || now - st.mtimeMs < olderThanMs) continue;
    await rm(file, { force: true });
    removed++;
  }
  return removed;
}
