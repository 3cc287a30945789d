/**
 * `pulp-lazy orphans`: removes what no repository needs any more (Pulp 2's
 * orphan purge). In order:
 *
 * 1. units no repository references (repo_content_units), past their
 *    protection and not being downloaded: the unit document, its catalog
 *    entries, its queue entry and access times, then its files (only below
 *    paths.storage);
 * 2. files in storage that no unit names, untouched for the protection;
 * 3. temp files in the working dir untouched for a task lease, and the sync
 *    plan folders of repositories that no longer exist (a sync killed
 *    before `repo delete`), untouched for a lease too.
 *
 * A unit's protection runs from max(created_at, unassociated_at): a running
 * sync inserts its units before it associates them, and a unit a re-sync
 * dropped may still be served by a kept link of the previous tree
 * (publish.keep_previous), so unassociated units are kept for the longer of
 * the two. Here, not in src/storage/: it calls src/queue/, which imports
 * src/storage/ (test/layering.test.ts forbids the cycle).
 */
import { lstat, readdir, rm, rmdir } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { deleteUnitEntries } from '../catalog/index.ts';
import { chunked, type Database, type UnitDoc } from '../db/index.ts';
import { deleteUnitsEntries, unitsLeased } from '../queue/index.ts';
import { forgetAccess } from '../storage/access.ts';
import { isPlanDirOf, syncPlansDir } from '../storage/temp-files.ts';
import { deleteUnits } from '../storage/units.ts';

export interface OrphanSettings {
  storageRoot: string;
  /** paths.working: its `gpgv-*` directories are temp files too. */
  workingDir: string;
  /** Folders holding temp files (the streamer's and the tasks'). */
  tempDirs: readonly string[];
  /** storage.orphan_protection. */
  protectionMs: number;
  /** publish.keep_previous: how long an unassociated unit may still be served. */
  keepPreviousMs: number;
  /** tasks.lease: a temp file untouched this long has no live writer. */
  leaseMs: number;
  dryRun: boolean;
  now?: number;
  logger?: Logger;
}

export interface OrphanReport {
  dry_run: boolean;
  units: number;
  /** Files of orphan units and stray files in storage. */
  files: number;
  bytes: number;
  temp_files: number;
  /** Plan folders of deleted repositories' syncs (`<working>/sync/<repo>-XXXXXX`). */
  sync_plans: number;
}

type UnitView = Pick<UnitDoc, '_id' | 'created_at' | 'unassociated_at' | 'download_lease' | 'files'>;

export async function removeOrphans(db: Database, s: OrphanSettings): Promise<OrphanReport> {
  const now = s.now ?? Date.now();
  const report: OrphanReport = {
    dry_run: s.dryRun,
    units: 0,
    files: 0,
    bytes: 0,
    temp_files: 0,
    sync_plans: 0,
  };
  const storageRoot = path.resolve(s.storageRoot);
  const referenced = new Set(await db.repoContentUnits.distinct('unit_id'));
  /** Every storage path a unit names (orphans' too: their files are counted with them). */
  const known = new Set<string>();
  const doomed: UnitView[] = [];
  const units = db.units.find(
    {},
    {
      projection: { _id: 1, created_at: 1, unassociated_at: 1, download_lease: 1, files: 1 },
      batchSize: 1000,
    },
  );
  for await (const u of units as AsyncIterable<UnitView>) {
    for (const f of u.files) known.add(path.resolve(f.storage_path));
    if (!referenced.has(u._id) && !protectedUnit(u, s, now)) doomed.push(u);
  }
  for await (const chunk of chunked(doomed)) {
    const ids = await deletable(db, chunk, now);
    const gone = chunk.filter((u) => ids.has(u._id));
    if (!s.dryRun) {
      const list = [...ids];
      await deleteUnits(db, list);
      await deleteUnitEntries(db, list);
      await deleteUnitsEntries(db, list);
      await forgetAccess(
        db,
        gone.flatMap((u) => u.files.map((f) => f.storage_path)),
      );
    }
    report.units += gone.length;
    for (const u of gone) {
      for (const f of u.files) {
        const p = path.resolve(f.storage_path);
        if (p.startsWith(storageRoot + path.sep)) await removeFile(p, storageRoot, s.dryRun, report);
      }
    }
  }
  for await (const file of filesBelow(storageRoot)) {
    if (known.has(file.path) || now - file.mtimeMs < s.protectionMs) continue;
    await removeFile(file.path, storageRoot, s.dryRun, report);
  }
  report.temp_files = await removeTemps(s, now);
  report.sync_plans = await removeDeletedReposPlans(db, s, now);
  s.logger?.info({ event: 'orphans.done', ...report }, 'orphans removed');
  return report;
}

/** Created or unassociated too recently, or its download lease (on the unit) is live. */
function protectedUnit(u: UnitView, s: OrphanSettings, now: number): boolean {
  if (now - u.created_at.getTime() < s.protectionMs) return true;
  const unassociated = u.unassociated_at?.getTime();
  if (unassociated !== undefined && now - unassociated < Math.max(s.protectionMs, s.keepPreviousMs))
    return true;
  return (u.download_lease?.expires_at.getTime() ?? 0) > now;
}

/** Of `chunk`, the units still unreferenced (a sync may have associated one since) and not being downloaded. */
async function deletable(db: Database, chunk: readonly UnitView[], now: number): Promise<Set<string>> {
  const ids = chunk.map((u) => u._id);
  const busy = await unitsLeased(db, ids, now);
  for (const id of await db.repoContentUnits.distinct('unit_id', { unit_id: { $in: ids } })) busy.add(id);
  return new Set(ids.filter((id) => !busy.has(id)));
}

/** Counts a file (and its bytes) and, unless a dry run, deletes it and the empty folders above it. */
export async function removeFile(
  file: string,
  root: string,
  dryRun: boolean,
  report: { files: number; bytes: number },
): Promise<void> {
  const st = await lstat(file).catch(() => undefined);
  if (!st?.isFile()) return;
  report.files++;
  report.bytes += st.size;
  if (dryRun) return;
  await rm(file, { force: true });
  for (let dir = path.dirname(file); dir.startsWith(root + path.sep); dir = path.dirname(dir)) {
    if (
      !(await rmdir(dir).then(
        () => true,
        () => false,
      ))
    )
      break;
  }
}

/** Regular files below `dir` (symlinks are not followed), with their mtime. */
async function* filesBelow(dir: string): AsyncGenerator<{ path: string; mtimeMs: number }> {
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) yield* filesBelow(p);
    else if (e.isFile()) {
      const st = await lstat(p).catch(() => undefined);
      if (st) yield { path: p, mtimeMs: st.mtimeMs };
    }
  }
}

/**
 * The plan folders of syncs of repositories that no longer exist, when nothing in them was touched
 * for a lease. A live repository's leftover plan goes at its next sync (src/importers/plan.ts).
 */
async function removeDeletedReposPlans(db: Database, s: OrphanSettings, now: number): Promise<number> {
  const dir = syncPlansDir(s.workingDir);
  const names = await readdir(dir).catch(() => [] as string[]);
  if (names.length === 0) return 0;
  const repos = await db.repos.distinct('_id');
  let n = 0;
  for (const name of names) {
    if (repos.some((repo) => isPlanDirOf(name, repo))) continue;
    const p = path.join(dir, name);
    // The newest file decides (a running sync writes its spools); an empty folder, its own mtime.
    let newest: number | undefined;
    for await (const f of filesBelow(p)) newest = Math.max(newest ?? 0, f.mtimeMs);
    newest ??= (await lstat(p).catch(() => undefined))?.mtimeMs ?? now;
    if (now - newest < s.leaseMs) continue;
    n++;
    if (!s.dryRun) await rm(p, { recursive: true, force: true });
  }
  return n;
}

/** Temp files and gpgv homes untouched for a lease: their writers are gone. How many (removed unless a dry run). */
async function removeTemps(s: OrphanSettings, now: number): Promise<number> {
  const stale = async (p: string) => {
    const st = await lstat(p).catch(() => undefined);
    return st !== undefined && now - st.mtimeMs >= s.leaseMs;
  };
  const doomed: string[] = [];
  for (const dir of s.tempDirs) {
    for await (const file of filesBelow(dir)) if (now - file.mtimeMs >= s.leaseMs) doomed.push(file.path);
  }
  const names = await readdir(s.workingDir).catch(() => []);
  for (const name of names) {
    const p = path.join(s.workingDir, name);
    if (name.startsWith('gpgv-') && (await stale(p))) doomed.push(p);
  }
  if (!s.dryRun) for (const p of doomed) await rm(p, { recursive: true, force: true });
  return doomed.length;
}
