/**
 * download_repo: stores every not-yet-downloaded unit of a repository (the
 * `background` policy, or an operator's request). With `verifyAll`, every
 * unit of the repository is checked: each stored file is re-hashed, missing
 * or corrupt files are fetched again, and the `downloaded` flag is fixed
 * both ways (Pulp 2's verify_all_units never set it, plan.io #2177).
 *
 * Units are claimed with their download lease like the sweep does, so a
 * concurrent sweep never fetches the same unit; a unit busy elsewhere is
 * waited for. A stored unit's deferred entry is deleted; a unit that failed
 * is queued (with its error) so the sweep retries it later.
 *
 * Below storage.min_free (the disk guard, src/storage/free-space.ts) no more
 * units are claimed: the rest are counted in `low_disk`, nothing is left
 * half-written, and a later run (or the sweep, once space is back) does them.
 */
import type { UnitDoc } from '../db/index.ts';
import { oneLine } from '../errors.ts';
import { claimUnit, completeUnit, enqueue, LeaseHeartbeat, releaseUnit } from '../queue/index.ts';
import { getRepo } from '../repos/index.ts';
import { cleanStaleTemps, tempDirOf } from '../storage/temp-files.ts';
import { downloadUnit, type FileOutcome, upstreamBlocked } from './download.ts';
import { catalogExplainer } from './explain.ts';
import { forEachConcurrent, Limiter } from './limit.ts';
import type { TaskDeps } from './setup.ts';

export interface DownloadRepoOptions {
  verifyAll?: boolean;
  concurrency?: number;
  signal?: AbortSignal;
  onProgress?: (p: RepoProgress) => void;
}

export interface RepoProgress {
  units_total: number;
  units_done: number;
  files_total: number;
  files_done: number;
  bytes_total: number;
  /** Bytes of files done (fetched or verified in place). */
  bytes_done: number;
  /** Body bytes received so far. */
  bytes_fetched: number;
  failed: number;
}

export interface DownloadRepoSummary {
  repo: string;
  worker: string;
  verify_all: boolean;
  /** Units considered (not downloaded, or all with verify_all). */
  units: number;
  /** Units whose files are all in storage and verified after the run. */
  stored: number;
  /** Units found already downloaded by someone else while waiting. */
  already_downloaded: number;
  failed: Array<{ unit_id: string; unit_type_id: string; error: string }>;
  /** Units not attempted because free space was below storage.min_free. */
  low_disk: number;
  /** Of the failed: units whose upstream origins are blocked (src/upstream/health.ts), not their own failure. */
  blocked: number;
  files_fetched: number;
  files_committed: number;
  /** Files found in storage with the right checksum. */
  files_verified: number;
  /** Stored files that were missing or corrupt and were fetched again (verify_all). */
  files_repaired: number;
  /** `downloaded` flags changed: false → true and true → false. */
  flags_set: number;
  flags_cleared: number;
  bytes: number;
  seconds: number;
}

export async function downloadRepo(
  deps: TaskDeps,
  name: string,
  opts: DownloadRepoOptions = {},
): Promise<DownloadRepoSummary> {
  const repo = await getRepo(deps.db, name);
  await cleanStaleTemps(tempDirOf(deps.workingDir), deps.queue.leaseMs, (deps.clock ?? Date.now)());
  const units = await repoUnits(deps, repo._id, opts.verifyAll ?? false);
  return downloadUnits(deps, repo._id, units, opts);
}

/**
 * Stores `units` (of repository `repoId`) the way download_repo does: unit
 * leases, the concurrency limit, verification. A unit that failed is queued
 * for the sweep unless `queueFailures` is false (the `immediate` sync, whose
 * failure keeps the previous catalog and tree).
 */
export async function downloadUnits(
  deps: TaskDeps,
  repoId: string,
  units: UnitDoc[],
  opts: DownloadRepoOptions & { queueFailures?: boolean; task?: string } = {},
): Promise<DownloadRepoSummary> {
  const clock = deps.clock ?? Date.now;
  const started = clock();
  const verifyAll = opts.verifyAll ?? false;
  const task = opts.task ?? 'download_repo';
  const log = deps.logger.child({ task, repo: repoId, worker: deps.owner });
  const s: DownloadRepoSummary = {
    repo: repoId,
    worker: deps.owner,
    verify_all: verifyAll,
    units: units.length,
    stored: 0,
    already_downloaded: 0,
    failed: [],
    low_disk: 0,
    blocked: 0,
    files_fetched: 0,
    files_committed: 0,
    files_verified: 0,
    files_repaired: 0,
    flags_set: 0,
    flags_cleared: 0,
    bytes: 0,
    seconds: 0,
  };
  const p: RepoProgress = {
    units_total: units.length,
    units_done: 0,
    files_total: units.reduce((n, u) => n + u.files.length, 0),
    files_done: 0,
    bytes_total: units.reduce((n, u) => n + u.files.reduce((m, f) => m + f.size, 0), 0),
    bytes_done: 0,
    bytes_fetched: 0,
    failed: 0,
  };
  const report = () => opts.onProgress?.({ ...p });
  log.info(
    { units: units.length, files: p.files_total, bytes: p.bytes_total, verify_all: verifyAll },
    'starting',
  );
  report();

  const signal = opts.signal ?? new AbortController().signal;
  const ctx = {
    source: deps.source,
    workingDir: deps.workingDir,
    limiter: new Limiter(opts.concurrency ?? deps.concurrency),
    logger: log,
    onBytes: (n: number) => {
      s.bytes += n;
      p.bytes_fetched += n;
    },
    onFile: (o: FileOutcome) => {
      if (o.result === 'fetched') s.files_fetched++;
      if (o.result === 'present') s.files_verified++;
      if (o.committed) s.files_committed++;
      if (o.repaired) s.files_repaired++;
      p.files_done++;
      if (o.result !== 'failed') p.bytes_done += o.file.size;
      report();
    },
    explain: catalogExplainer(deps.db, clock),
  };

  const skip = (listed: UnitDoc) => {
    p.units_done++;
    p.files_done += listed.files.length;
    p.bytes_done += listed.files.reduce((m, f) => m + f.size, 0);
    report();
  };
  const one = async (listed: UnitDoc) => {
    if (signal.aborted) return;
    const ref = { unit_id: listed._id, unit_type_id: listed.unit_type_id };
    if (s.low_disk > 0 || (deps.disk && !(await deps.disk.canSave()))) {
      if (s.low_disk++ === 0)
        log.warn({ event: `${task}.paused_low_disk` }, 'low disk: no more units are claimed');
      return skip(listed);
    }
    const claimed = await waitAndClaim(deps, listed._id, verifyAll, signal);
    if (claimed.kind !== 'claimed') {
      if (claimed.kind === 'downloaded') s.already_downloaded++;
      return skip(listed);
    }
    const { unit, lease } = claimed;
    let ok = false;
    let error = '';
    let failure: unknown;
    const ac = new AbortController();
    const onAbort = () => ac.abort(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    heartbeat.addUnit(lease, ac);
    try {
      await downloadUnit(unit, ctx, ac.signal);
      ok = true;
    } catch (err) {
      failure = err;
      error = oneLine(err);
    } finally {
      heartbeat.removeUnit(lease);
      signal.removeEventListener('abort', onAbort);
      if (!signal.aborted || ok) {
        await releaseUnit(deps.db, lease, { downloaded: ok, clock });
        if (ok && !unit.downloaded) s.flags_set++;
        if (!ok && unit.downloaded) s.flags_cleared++;
      } else {
        await releaseUnit(deps.db, lease, { clock });
      }
    }
    p.units_done++;
    if (ok) {
      s.stored++;
      await completeUnit(deps.db, ref);
    } else if (!signal.aborted) {
      p.failed++;
      s.failed.push({ ...ref, error });
      if (upstreamBlocked(failure)) s.blocked++;
      if (opts.queueFailures === false) {
        log.warn({ event: `${task}.unit_failed`, ...ref, err: failure }, 'unit download failed');
      } else {
        log.warn({ ...ref, err: failure }, 'unit download failed; queued for the sweep');
        await enqueue(deps.db, ref, { error, now: new Date(clock()) });
      }
    }
    report();
  };

  const heartbeat = new LeaseHeartbeat(deps.db, deps.owner, deps.queue.leaseMs, log, clock);
  heartbeat.start();
  try {
    await forEachConcurrent(units, opts.concurrency ?? deps.concurrency, one);
  } finally {
    await heartbeat.stop();
  }
  if (signal.aborted) throw signal.reason;
  await cleanStaleTemps(tempDirOf(deps.workingDir), deps.queue.leaseMs, clock());
  s.seconds = Math.round((clock() - started) / 10) / 100;
  return s;
}

/** The repository's units to work on, read in chunks. */
async function repoUnits(deps: TaskDeps, repoId: string, all: boolean): Promise<UnitDoc[]> {
  const links = await deps.db.repoContentUnits
    .find({ repo_id: repoId }, { projection: { unit_id: 1 } })
    .toArray();
  const ids = [...new Set(links.map((l) => l.unit_id))].sort();
  const out: UnitDoc[] = [];
  for (let i = 0; i < ids.length; i += 1000) {
    const chunk = ids.slice(i, i + 1000);
    out.push(
      ...(await deps.db.units.find({ _id: { $in: chunk }, ...(all ? {} : { downloaded: false }) }).toArray()),
    );
  }
  return out.sort((a, b) => (a._id < b._id ? -1 : a._id > b._id ? 1 : 0));
}

/**
 * Claims the unit, waiting while another worker holds it (it is being stored
 * right now: its outcome decides whether there is anything left to do).
 */
async function waitAndClaim(deps: TaskDeps, unitId: string, evenIfDownloaded: boolean, signal: AbortSignal) {
  const clock = deps.clock ?? Date.now;
  for (;;) {
    const c = await claimUnit(deps.db, unitId, deps.owner, deps.queue.leaseMs, { evenIfDownloaded, clock });
    if (c.kind !== 'busy' || signal.aborted) return c;
    const wait = Math.min(500, Math.max(20, c.expiresAt.getTime() - clock()));
    await new Promise((r) => setTimeout(r, wait));
  }
}
