/**
 * `pulp-lazy reclaim`: frees the storage of units nobody has asked for in a
 * while. Their files are deleted and they go back to `downloaded: false`:
 * still published, fetched again lazily on the next request (nothing is
 * queued).
 *
 * Which units: downloaded, associated with the repositories named (default:
 * all), every repository holding them of policy on_demand, background or
 * streamed (the policy in force; immediate too with `force`: a unit shared
 * with an immediate repository is skipped otherwise), and whose files were
 * last served (src/storage/access.ts) before now − unusedFor; without
 * unusedFor, files never served since they were stored (no access, or one
 * older than the file).
 *
 * Per unit, under its download lease (src/queue/units.ts: the sweep and
 * download-repo take it too, so none of them stores or verifies the unit
 * meanwhile; a unit whose lease is held is skipped as busy, for the next
 * run): re-check it is downloaded and still unused, set `downloaded: false`,
 * then unlink its files (readers that opened one keep their bytes), forget
 * its accesses, and release the lease. The streamer saves without the
 * lease; its side is markDownloadedIfComplete, which looks at the files
 * again after setting the flag, and ours is unmarkIfIncomplete after the
 * unlink: whichever order their steps run in, no unit stays downloaded
 * without its files.
 */
import { stat } from 'node:fs/promises';
import path from 'node:path';
import type { Logger } from 'pino';
import { chunked, type Database, type DownloadPolicy, type UnitDoc } from '../db/index.ts';
import { claimUnit, releaseUnit } from '../queue/index.ts';
import { getRepo, listRepos, policyInForce } from '../repos/index.ts';
import { forgetAccess, isUnitFile, lastServed } from '../storage/access.ts';
import { markReclaimed, unmarkIfIncomplete } from '../storage/units.ts';
import { removeFile } from './orphans.ts';

/** The policies whose units may be reclaimed without `force`. */
const LAZY: ReadonlySet<DownloadPolicy> = new Set(['on_demand', 'background', 'streamed']);

export interface ReclaimSettings {
  /** Repository names; empty: every repository. */
  repos: readonly string[];
  /** Files not served for this long; undefined: never served since stored. */
  unusedForMs: number | undefined;
  /** Units of immediate repositories too. */
  force: boolean;
  dryRun: boolean;
  storageRoot: string;
  /** Who takes the unit leases, and for how long (tasks.lease). */
  owner: string;
  leaseMs: number;
  now?: number;
  logger?: Logger;
}

export interface ReclaimRepoReport {
  repo: string;
  policy: DownloadPolicy;
  /** Units of the repository reclaimed (a unit two repositories share counts in both). */
  units: number;
  bytes: number;
}

export interface ReclaimReport {
  dry_run: boolean;
  /** Units reclaimed, files deleted and bytes freed (each unit once). */
  units: number;
  files: number;
  bytes: number;
  repos: ReclaimRepoReport[];
  /** Units skipped because their download lease was held (stored, swept or verified now): for the next run. */
  busy: string[];
  /** Units skipped because a repository holding them has the immediate policy (without force). */
  immediate: string[];
}

export async function reclaim(db: Database, s: ReclaimSettings): Promise<ReclaimReport> {
  const now = s.now ?? Date.now();
  const root = path.resolve(s.storageRoot);
  const policies = new Map((await listRepos(db)).map((r) => [r._id, policyInForce(r)]));
  const selected = s.repos.length > 0 ? [...new Set(s.repos)] : [...policies.keys()].sort();
  for (const name of selected) if (!policies.has(name)) await getRepo(db, name); // throws RepoNotFound
  const report: ReclaimReport = {
    dry_run: s.dryRun,
    units: 0,
    files: 0,
    bytes: 0,
    repos: [],
    busy: [],
    immediate: [],
  };
  const perRepo = new Map<string, ReclaimRepoReport>();
  for (const repo of selected) {
    const r = { repo, policy: policies.get(repo)!, units: 0, bytes: 0 };
    perRepo.set(repo, r);
    report.repos.push(r);
  }
  const allowed = (p: DownloadPolicy | undefined) => p !== undefined && (LAZY.has(p) || s.force);

  const candidates = new Set<string>();
  for (const repo of selected) {
    for (const id of await db.repoContentUnits.distinct('unit_id', { repo_id: repo })) candidates.add(id);
  }
  for await (const ids of chunked(candidates, 500)) {
    const holders = new Map<string, string[]>();
    for await (const a of db.repoContentUnits.find(
      { unit_id: { $in: ids } },
      { projection: { unit_id: 1, repo_id: 1 } },
    )) {
      const list = holders.get(a.unit_id) ?? [];
      list.push(a.repo_id);
      holders.set(a.unit_id, list);
    }
    const units = await db.units
      .find({ _id: { $in: ids }, downloaded: true }, { projection: { _id: 1, files: 1, downloaded: 1 } })
      .toArray();
    const served = await lastServed(
      db,
      units.flatMap((u) => u.files.map((f) => f.storage_path)),
    );
    for (const unit of units) {
      const repos = holders.get(unit._id) ?? [];
      if (!repos.every((r) => allowed(policies.get(r)))) {
        report.immediate.push(unit._id);
        continue;
      }
      if (!(await unused(unit, served, s.unusedForMs, now))) continue;
      const freed = await reclaimUnit(db, unit, s, root, now);
      if (freed === 'busy') {
        report.busy.push(unit._id);
        continue;
      }
      if (!freed) continue;
      report.units++;
      report.files += freed.files;
      report.bytes += freed.bytes;
      for (const r of repos) {
        const rr = perRepo.get(r);
        if (!rr) continue;
        rr.units++;
        rr.bytes += freed.bytes;
      }
    }
  }
  s.logger?.info(
    { event: 'reclaim.done', ...report, busy: report.busy.length, immediate: report.immediate.length },
    'reclaim done',
  );
  return report;
}

/**
 * Every file of the unit unused (`served`: last served times, lastServed()):
 * last served before now − unusedFor, or (unusedFor undefined) never since stored.
 */
async function unused(
  unit: Pick<UnitDoc, 'files'>,
  served: ReadonlyMap<string, Date>,
  unusedForMs: number | undefined,
  now: number,
): Promise<boolean> {
  for (const f of unit.files.map((x) => x.storage_path)) {
    const at = served.get(f)?.getTime();
    if (at === undefined) continue;
    if (unusedForMs !== undefined) {
      if (at > now - unusedForMs) return false;
    } else {
      const mtime = (await stat(f).catch(() => undefined))?.mtimeMs;
      if (mtime === undefined || at >= mtime) return false;
    }
  }
  return true;
}

/**
 * Reclaims one unit under its download lease: 'busy' when the lease is
 * held; undefined when it is no longer downloaded or no longer unused.
 */
async function reclaimUnit(
  db: Database,
  seen: Pick<UnitDoc, '_id' | 'files'>,
  s: ReclaimSettings,
  root: string,
  now: number,
): Promise<{ files: number; bytes: number } | 'busy' | undefined> {
  const freed = { files: 0, bytes: 0 };
  const files = seen.files.map((f) => path.resolve(f.storage_path)).filter((f) => isUnitFile(root, f));
  if (s.dryRun) {
    for (const f of files) await removeFile(f, root, true, freed);
    return freed;
  }
  const claim = await claimUnit(db, seen._id, s.owner, s.leaseMs, { evenIfDownloaded: true });
  if (claim.kind === 'busy') return 'busy';
  if (claim.kind !== 'claimed') return undefined;
  try {
    // Served or reclaimed since the selection: look again under the lease.
    const served = await lastServed(
      db,
      claim.unit.files.map((f) => f.storage_path),
    );
    if (!claim.unit.downloaded || !(await unused(claim.unit, served, s.unusedForMs, now))) return undefined;
    if (!(await markReclaimed(db, seen._id))) return undefined;
    for (const f of files) await removeFile(f, root, false, freed);
    await forgetAccess(db, files);
    if (await unmarkIfIncomplete(db, seen._id))
      s.logger?.info(
        { unit_id: seen._id },
        'a save marked the unit downloaded while it was reclaimed; cleared',
      );
    return freed;
  } finally {
    await releaseUnit(db, claim.lease);
  }
}
