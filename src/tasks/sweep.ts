/**
 * The deferred-downloads task (Pulp's download_deferred), made safe:
 *
 *   - entries are claimed in batches with leases (never removed up front)
 *     and renewed while the work goes on; an entry is deleted only after its
 *     unit is stored, so a killed worker loses nothing;
 *   - each unit is claimed itself (a unit lease, see src/queue/units.ts,
 *     re-checking `downloaded`) before any fetch, so a concurrent sweep or download_repo
 *     never fetches it twice; a unit already downloaded just completes its
 *     entry;
 *   - failures keep the entry with the error and a backoff;
 *   - stale temp files of dead workers are removed at the start and the end;
 *   - below storage.min_free (the disk guard) it stops claiming: paused_low_disk;
 *   - a unit waiting for a blocked upstream origin (src/upstream/health.ts;
 *     blocked.ts) is given back without spending an attempt, due again at
 *     the origin's next probe: skipped_blocked.
 *
 * It claims batches until nothing is claimable, and returns a summary.
 */
import { oneLine } from '../errors.ts';
import {
  claimUnit,
  completeEntry,
  type Entry,
  EntryClaimer,
  failEntry,
  LeaseHeartbeat,
  LeaseLost,
  pruneTokens,
  releaseEntry,
  releaseUnit,
} from '../queue/index.ts';
import { cleanStaleTemps, tempDirOf } from '../storage/temp-files.ts';
import { blockedCheck } from './blocked.ts';
import { downloadUnit, goneUpstream, upstreamBlocked } from './download.ts';
import { catalogExplainer } from './explain.ts';
import { Limiter } from './limit.ts';
import type { TaskDeps } from './setup.ts';

/** Claim tokens are kept this long (far beyond any claim still racing on them). */
const TOKEN_RETENTION_MS = 24 * 3600_000;

export interface SweepOptions {
  batchSize?: number;
  concurrency?: number;
  /** Stop claiming (finish the units in progress, give back the rest). */
  stop?: AbortSignal;
  /** Abort the downloads in progress too (their entries are given back, not failed). */
  signal?: AbortSignal;
}

export interface SweepFailure {
  unit_id: string;
  unit_type_id: string;
  error: string;
  attempts: number;
  /** Parked in state 'failed' (max_attempts reached). */
  parked: boolean;
  next_attempt_at: string | null;
}

export interface SweepSummary {
  worker: string;
  /** Entries claimed. */
  claimed: number;
  /** Units stored by this run (entry deleted). */
  stored: number;
  failed: SweepFailure[];
  /** Units found already downloaded (entry just deleted). */
  skipped_already_downloaded: number;
  /** Units being downloaded by another worker (entry given back for later). */
  skipped_busy: number;
  /** Units whose files' upstream origins are blocked (entry given back, attempts unchanged, due at the next probe). */
  skipped_blocked: number;
  /** Entries whose unit no longer exists (entry deleted). */
  skipped_missing: number;
  /** Entries given back unprocessed (stop or abort). */
  released: number;
  files_fetched: number;
  /** Files this run renamed into storage (the rest were saved by the streamer on the way). */
  files_committed: number;
  files_present: number;
  bytes: number;
  seconds: number;
  temp_files_removed: number;
  /** The run stopped claiming because free space was under storage.min_free (the next run tries again). */
  paused_low_disk: boolean;
}

export async function runSweep(deps: TaskDeps, opts: SweepOptions = {}): Promise<SweepSummary> {
  const clock = deps.clock ?? Date.now;
  const started = clock();
  const log = deps.logger.child({ task: 'sweep', worker: deps.owner });
  const batchSize = opts.batchSize ?? deps.batchSize;
  const concurrency = opts.concurrency ?? deps.concurrency;
  const never = new AbortController().signal;
  const stop = opts.stop ?? never;
  const abort = opts.signal ?? never;
  const s: SweepSummary = {
    worker: deps.owner,
    claimed: 0,
    stored: 0,
    failed: [],
    skipped_already_downloaded: 0,
    skipped_busy: 0,
    skipped_blocked: 0,
    skipped_missing: 0,
    released: 0,
    files_fetched: 0,
    files_committed: 0,
    files_present: 0,
    bytes: 0,
    seconds: 0,
    temp_files_removed: 0,
    paused_low_disk: false,
  };
  const tempDir = tempDirOf(deps.workingDir);
  s.temp_files_removed += await cleanStaleTemps(tempDir, deps.queue.leaseMs, clock());
  await pruneTokens(deps.db, Math.max(TOKEN_RETENTION_MS, 10 * deps.queue.leaseMs), clock());

  const heartbeat = new LeaseHeartbeat(deps.db, deps.owner, deps.queue.leaseMs, log, clock);
  heartbeat.start();
  const limiter = new Limiter(concurrency);
  const ctx = {
    source: deps.source,
    workingDir: deps.workingDir,
    limiter,
    logger: log,
    onFile: (o: { result: string; committed: boolean }) => {
      if (o.result === 'fetched') s.files_fetched++;
      if (o.result === 'present') s.files_present++;
      if (o.committed) s.files_committed++;
    },
    onBytes: (n: number) => {
      s.bytes += n;
    },
    explain: catalogExplainer(deps.db, clock),
  };

  const blocked = deps.health ? blockedCheck(deps.db, deps.health, clock) : undefined;
  /** Gives the entry back unspent until `at` (a blocked origin's next probe). */
  const skipBlocked = async (entry: Entry, at: Date) => {
    await releaseEntry(deps.db, entry, deps.owner, { notBefore: at, clock });
    s.skipped_blocked++;
    log.info(
      { unit_id: entry.unit_id, next_attempt_at: at.toISOString() },
      'upstream blocked: unit given back until the next probe',
    );
  };

  const claimer = new EntryClaimer(deps.db, deps.owner, deps.queue, clock);
  // Entries claimed but not started yet; refilled one batch at a time.
  const buffer: Entry[] = [];
  let exhausted = false;
  let refill: Promise<void> | undefined;
  /** A claim failed (database error): no more claims; thrown once the work in progress is done. */
  let claimError: unknown;
  const halted = () => stop.aborted || abort.aborted;
  const next = async (): Promise<Entry | undefined> => {
    for (;;) {
      if (halted()) return undefined;
      const e = buffer.shift();
      if (e) {
        if (buffer.length < concurrency && !exhausted) void fill();
        return e;
      }
      if (exhausted) return undefined;
      await fill();
    }
  };
  const fill = (): Promise<void> => {
    refill ??= (async () => {
      try {
        // Low disk: nothing more is claimed (so nothing is left half-written); the next run tries again.
        if (deps.disk && !(await deps.disk.canSave())) {
          if (!s.paused_low_disk)
            log.warn({ event: 'sweep_paused_low_disk' }, 'low disk: the sweep stops claiming');
          s.paused_low_disk = true;
          exhausted = true;
          return;
        }
        const got = await claimer.claim(batchSize);
        for (const e of got) heartbeat.addEntry(e._id);
        s.claimed += got.length;
        if (got.length === 0) exhausted = true;
        buffer.push(...got);
        if (got.length) log.debug({ claimed: got.length }, 'claimed a batch');
      } catch (err) {
        claimError ??= err;
        exhausted = true;
      } finally {
        refill = undefined;
      }
    })();
    return refill;
  };

  const processEntry = async (entry: Entry): Promise<void> => {
    const unitRef = { unit_id: entry.unit_id, unit_type_id: entry.unit_type_id };
    try {
      const blockedUntil = await blocked?.retryAt(entry.unit_id);
      if (blockedUntil) {
        await skipBlocked(entry, blockedUntil);
        return;
      }
      const claim = await claimUnit(deps.db, entry.unit_id, deps.owner, deps.queue.leaseMs, { clock });
      if (claim.kind === 'missing') {
        log.warn(unitRef, 'queued unit no longer exists; dropping its entry');
        await completeEntry(deps.db, entry);
        s.skipped_missing++;
        return;
      }
      if (claim.kind === 'downloaded') {
        await completeEntry(deps.db, entry);
        s.skipped_already_downloaded++;
        return;
      }
      if (claim.kind === 'busy') {
        // Someone else is storing it; they delete the entry when done. Look again after their lease.
        await releaseEntry(deps.db, entry, deps.owner, { notBefore: claim.expiresAt, clock });
        s.skipped_busy++;
        return;
      }
      const ac = new AbortController();
      const onAbort = () => ac.abort(abort.reason);
      abort.addEventListener('abort', onAbort, { once: true });
      heartbeat.addUnit(claim.lease, ac);
      let stored = false;
      try {
        await downloadUnit(claim.unit, ctx, ac.signal);
        stored = true;
      } catch (err) {
        if (abort.aborted) {
          await releaseEntry(deps.db, entry, deps.owner, { clock });
          s.released++;
          return;
        }
        if (upstreamBlocked(err)) {
          // The streamer found the origin blocked first (another process blocked it): not an attempt.
          await skipBlocked(
            entry,
            deps.health?.nextProbe([]) ?? new Date(clock() + deps.queue.backoffBaseMs),
          );
          return;
        }
        if (ac.signal.reason instanceof LeaseLost) {
          // Another worker holds the unit now: not this unit's failure.
          await releaseEntry(deps.db, entry, deps.owner, { clock });
          s.skipped_busy++;
          return;
        }
        await recordFailure(entry, err);
      } finally {
        heartbeat.removeUnit(claim.lease);
        abort.removeEventListener('abort', onAbort);
        await releaseUnit(deps.db, claim.lease, stored ? { downloaded: true, clock } : { clock });
      }
      if (stored) {
        await completeEntry(deps.db, entry);
        s.stored++;
      }
    } catch (err) {
      // A database error: the lease expires and a later run retries.
      log.error({ ...unitRef, err }, 'cannot process queue entry');
      s.failed.push({
        ...unitRef,
        error: oneLine(err),
        attempts: entry.attempts,
        parked: false,
        next_attempt_at: null,
      });
    } finally {
      heartbeat.removeEntry(entry._id);
    }
  };

  const recordFailure = async (entry: Entry, err: unknown) => {
    const error = oneLine(err);
    // Gone upstream (the streamer flagged the unit and requested a re-sync): parked now, not retried
    // until `queue retry`; every other failure backs off until max_attempts.
    const settings = goneUpstream(err) ? { ...deps.queue, maxAttempts: 0 } : deps.queue;
    const r = await failEntry(deps.db, entry, deps.owner, error, settings, clock);
    const f: SweepFailure = {
      unit_id: entry.unit_id,
      unit_type_id: entry.unit_type_id,
      error,
      attempts: entry.attempts,
      parked: r.result === 'parked',
      next_attempt_at: r.result === 'parked' ? null : r.next_attempt_at.toISOString(),
    };
    s.failed.push(f);
    const { error: _flat, ...fields } = f;
    log.warn({ ...fields, err, lost_lease: r.result === 'lost' }, 'unit download failed');
  };

  try {
    await Promise.all(
      Array.from({ length: concurrency }, async () => {
        for (let e = await next(); e; e = await next()) await processEntry(e);
      }),
    );
  } finally {
    await refill?.catch(() => {});
    for (const e of buffer.splice(0)) {
      await releaseEntry(deps.db, e, deps.owner, { clock }).catch(() => {});
      heartbeat.removeEntry(e._id);
      s.released++;
    }
    await heartbeat.stop();
  }
  if (claimError) throw claimError;
  s.temp_files_removed += await cleanStaleTemps(tempDir, deps.queue.leaseMs, clock());
  s.seconds = Math.round((clock() - started) / 10) / 100;
  return s;
}
