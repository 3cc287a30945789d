/**
 * The end of a flight's fetch: the bytes are verified against the catalog
 * entry, the file is moved into storage (save enabled), and the database is
 * told (unit downloaded, or queued for the download tasks). Bytes that do not
 * match cool the entry down and are recorded in the queue, so the download
 * tasks see why. The database writes are passed in (CommitRecords).
 */
import type { CatalogEntryDoc, Database } from '../db/index.ts';
import { ChecksumMismatch } from '../errors.ts';
import type { Logger } from '../log.ts';
import { completeUnit, enqueue, recordDeferredFailure } from '../queue/entries.ts';
import { checkDigest } from '../storage/index.ts';
import { markDownloadedIfComplete } from '../storage/units.ts';
import { redactUrl } from '../upstream/describe.ts';
import { type CatalogLookup, isStreamed } from './catalog.ts';
import type { StreamerMetrics } from './metrics.ts';

/** The database writes of a commit. */
export interface CommitRecords {
  /** Marks the entry's unit downloaded when every file of it is stored; whether it now is. */
  downloaded(entry: CatalogEntryDoc): Promise<boolean>;
  /** Removes the unit from the deferred download queue. */
  clearDeferred(entry: CatalogEntryDoc): Promise<void>;
  /** Queues the unit for the download tasks (no-op when queued already). */
  queueDeferred(entry: CatalogEntryDoc, now: Date): Promise<void>;
  /** Skips the entry until `until` and records `reason` against its unit in the queue. */
  markFailed(entry: CatalogEntryDoc, reason: string, now: Date, until: Date): Promise<void>;
}

export function databaseRecords(db: Database, catalog: CatalogLookup): CommitRecords {
  return {
    downloaded: (entry) => markDownloadedIfComplete(db, entry.unit_id),
    clearDeferred: async (entry) => {
      await completeUnit(db, entry);
    },
    // A repository with the streamed policy has nothing queued, not even a failure.
    queueDeferred: async (entry, now) => {
      if (!(await isStreamed(catalog, entry))) await enqueue(db, entry, { now });
    },
    markFailed: async (entry, reason, now, until) => {
      await catalog.markFailed(entry, reason, until);
      if (!(await isStreamed(catalog, entry))) await recordDeferredFailure(db, entry, reason, now, until);
    },
  };
}

export interface CommitDeps {
  records: CommitRecords;
  metrics: Pick<StreamerMetrics, 'saves' | 'checksumFailures'>;
  log: Logger;
  clock: () => number;
  settings: {
    saveToStorage: boolean;
    /** How long an entry whose bytes failed verification is skipped. */
    failureCooldownMs: number;
  };
}

/** The written temp file (temp-file.ts's TempFileWriter). */
export interface WrittenFile {
  /** fsyncs the file and renames it onto `target`. */
  moveTo(target: string): Promise<void>;
}

/**
 * Verifies the body (`got`: its digest and size; `size`: the size expected)
 * against `entry`, saves the file into storage (or not), then records the
 * download. A mismatch is recorded (recordVerificationFailure) and thrown; a
 * save or database failure is logged, and the body still counts as good.
 * `savedAt`: when the file was in storage (clock), before the database writes.
 */
export async function verifyAndCommit(
  deps: CommitDeps,
  entry: CatalogEntryDoc,
  file: WrittenFile,
  got: { digest: string; size: number },
  size: number | undefined,
  wantsDeferred: boolean,
): Promise<{ saved: boolean; savedAt: number }> {
  const { records, metrics, log, clock } = deps;
  try {
    checkDigest(redactUrl(entry.url), got, {
      size,
      checksum: entry.checksum,
      checksum_algorithm: entry.checksum_algorithm,
    });
  } catch (err) {
    if (!(err instanceof ChecksumMismatch)) throw err;
    await recordVerificationFailure(deps, entry, err, true);
    throw err;
  }
  let saved = false;
  if (deps.settings.saveToStorage) {
    try {
      await file.moveTo(entry.path);
      saved = true;
    } catch (err) {
      log.error({ err }, 'verified file could not be saved into storage');
    }
  }
  const savedAt = clock();
  try {
    const downloaded = saved && (await records.downloaded(entry));
    if (downloaded) await records.clearDeferred(entry);
    else if (wantsDeferred) {
      await records.queueDeferred(entry, new Date(clock()));
      // The flight's logger carries the id of the request that started it: the entry is found by it.
      log.info({ unit_id: entry.unit_id }, 'deferred download queued');
    }
  } catch (err) {
    log.error({ err }, 'cannot record the download in the database');
  }
  metrics.saves.inc({ result: saved ? 'saved' : deps.settings.saveToStorage ? 'failed' : 'not_saved' });
  return { saved, savedAt };
}

/**
 * Bytes did not match the catalog: cool the entry down and record the
 * failure in the queue. `saving`: the flight had committed to the entry (a
 * failed save then counts too).
 */
export async function recordVerificationFailure(
  deps: CommitDeps,
  entry: CatalogEntryDoc,
  err: ChecksumMismatch,
  saving: boolean,
): Promise<void> {
  const { records, clock, metrics, log } = deps;
  metrics.checksumFailures.inc();
  if (saving) metrics.saves.inc({ result: 'failed' });
  const now = clock();
  const until = new Date(now + deps.settings.failureCooldownMs);
  log.warn(
    { url: redactUrl(entry.url), err: err.message },
    'verification failed; entry skipped until cooldown ends',
  );
  try {
    await records.markFailed(entry, err.message, new Date(now), until);
  } catch (dbErr) {
    log.error({ err: dbErr }, 'cannot record the verification failure');
  }
}

/**
 * The fetch failed a client (not a download task) and nothing was stored:
 * queue the unit, so a download task stores it later (an entry that failed
 * verification was already queued with its cool-down: no-op then).
 */
export async function queueAfterFailure(
  deps: CommitDeps,
  unit: CatalogEntryDoc | undefined,
  wantsDeferred: boolean,
): Promise<void> {
  if (!wantsDeferred || !unit) return;
  try {
    await deps.records.queueDeferred(unit, new Date(deps.clock()));
  } catch (err) {
    deps.log.error({ err }, 'cannot queue the failed download');
  }
}
