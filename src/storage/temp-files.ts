/**
 * Cleaning the temp folder tempPath() (index.ts) writes in below a working
 * dir: the streamer's (`<paths.working>/tmp`) and the tasks'
 * (`<paths.working>/tasks/tmp`, also used by the in-process streamer of the
 * "local" fetch mode). A worker killed with -9 leaves its partial files
 * there; every task run removes files untouched for longer than the lease:
 * a live download writes continuously and its worker renews its lease, so
 * such a file can only belong to a dead worker. A starting streamer removes
 * the files of dead writers on its host at once (removeDeadWritersTemps:
 * temp file names carry the host and the pid).
 */
import { readdir, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { processAlive } from '../util/process.ts';
import { tempHost, tempWriter } from './index.ts';

/** What src/storage tempPath() uses below a working dir. */
export function tempDirOf(workingDir: string): string {
  return path.join(workingDir, 'tmp');
}

/** Where a sync spools its plan (src/importers/plan.ts): one folder per running sync. */
export function syncPlansDir(workingDir: string): string {
  return path.join(workingDir, 'sync');
}

/** The start of the plan folder names of `repo`'s syncs (mkdtemp adds six random characters). */
export function planDirPrefix(repo: string): string {
  return `${repo.replace(/[^A-Za-z0-9._-]/g, '_')}-`;
}

/**
 * Whether `name` (in syncPlansDir) is a plan folder of `repo`: its prefix and
 * exactly mkdtemp's six characters, so repository "a" never claims the plan
 * of a running sync of "a-b" ("a-b-Xy12Zq").
 */
export function isPlanDirOf(name: string, repo: string): boolean {
  const prefix = planDirPrefix(repo);
  return name.length === prefix.length + 6 && name.startsWith(prefix);
}

/** Removes files in `dir` not modified for `olderThanMs`; returns how many were removed. */
export function cleanStaleTemps(dir: string, olderThanMs: number, now = Date.now()): Promise<number> {
  return removeFiles(dir, async (file) => {
    const st = await stat(file).catch(() => undefined);
    return st?.isFile() === true && now - st.mtimeMs >= olderThanMs;
  });
}

/**
 * Removes the files in `dir` that tempPath() named for a process of this
 * host that is no longer alive (a streamer or worker killed with -9, or a
 * zombie: it writes nothing more);
 * returns how many. Files of a live pid stay (a sync or a task on this host
 * may be writing there), so do other hosts' (streamers with share_fetches
 * may share the dir) and names tempPath() did not make.
 */
export function removeDeadWritersTemps(dir: string, host: string = tempHost()): Promise<number> {
  return removeFiles(dir, async (_file, name) => {
    const writer = tempWriter(name);
    return writer !== undefined && writer.host === host && !processAlive(writer.pid);
  });
}

/** Removes the entries of `dir` that `doomed` picks; how many (0 when `dir` cannot be read). */
async function removeFiles(
  dir: string,
  doomed: (file: string, name: string) => Promise<boolean>,
): Promise<number> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return 0;
  }
  let removed = 0;
  for (const name of names) {
    const file = path.join(dir, name);
    if (!(await doomed(file, name))) continue;
    await rm(file, { force: true });
    removed++;
  }
  return removed;
}
