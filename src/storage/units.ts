/**
 * The units collection's one writer (test/collection-owners.test.ts): units
 * created by a sync, and their `downloaded` flag. A unit is downloaded when
 * every one of its files is in storage: files only enter storage through
 * commitFile() after verification, so presence with the right size is the
 * check here.
 */
import { stat } from 'node:fs/promises';
import { retryBusy } from '../db/busy.ts';
import { chunked, type Database, type UnitDoc } from '../db/index.ts';
import { isDuplicateKey } from '../errors.ts';

/** Files of `unit` that are not (yet) in storage with the expected size. */
export async function missingFiles(unit: Pick<UnitDoc, 'files'>): Promise<UnitDoc['files']> {
  const missing: UnitDoc['files'] = [];
  for (const f of unit.files) {
    try {
      const st = await stat(f.storage_path);
      if (!st.isFile() || st.size !== f.size) missing.push(f);
    } catch {
      missing.push(f);
    }
  }
  return missing;
}

/**
 * Sets `downloaded: true` when every file of the unit is present (and clears
 * its gone-upstream flag: a file of it was just fetched); returns whether the
 * unit is now downloaded. Safe to call from several processes.
 */
export async function markDownloadedIfComplete(db: Database, unitId: string): Promise<boolean> {
  const unit = await db.units.findOne({ _id: unitId });
  if (!unit) return false;
  if ((await missingFiles(unit)).length > 0) {
    if (unit.gone_upstream) await clearGoneUpstream(db, unitId);
    return false;
  }
  if (!unit.downloaded || unit.gone_upstream) {
    await retryBusy(() => db.units.updateOne({ _id: unitId }, { $set: { downloaded: true }, ...UNSET_GONE }));
    // A reclaim (src/tasks/reclaim.ts) may have removed a file since the check above: look again.
    if ((await missingFiles(unit)).length > 0) {
      await retryBusy(() => db.units.updateOne({ _id: unitId }, { $set: { downloaded: false } }));
      return false;
    }
  }
  return true;
}

/**
 * Reclaim: the unit's files are about to leave storage, so it is no longer
 * downloaded (written before any file goes: nothing is ever marked downloaded
 * without its files). Conditional on `downloaded: true`; the caller holds the
 * unit's download lease. Returns whether it was downloaded.
 */
export async function markReclaimed(db: Database, unitId: string): Promise<boolean> {
  const r = await retryBusy(() =>
    db.units.updateOne({ _id: unitId, downloaded: true }, { $set: { downloaded: false } }),
  );
  return r.matchedCount > 0;
}

/**
 * After a reclaim removed files: a unit marked downloaded meanwhile (a
 * streamer's save that checked its files before they went) whose files are
 * missing is set back to not downloaded. Returns whether it had to.
 */
export async function unmarkIfIncomplete(db: Database, unitId: string): Promise<boolean> {
  const unit = await db.units.findOne({ _id: unitId });
  if (!unit?.downloaded || (await missingFiles(unit)).length === 0) return false;
  await retryBusy(() => db.units.updateOne({ _id: unitId }, { $set: { downloaded: false } }));
  return true;
}

/** The update part that clears the gone-upstream flag (absent on units never flagged). */
const UNSET_GONE = { $unset: { gone_upstream: '' } } as const;

/** Sets `downloaded: true` on the unit, and nothing else. */
export async function setDownloaded(db: Database, unitId: string): Promise<void> {
  await retryBusy(() => db.units.updateOne({ _id: unitId }, { $set: { downloaded: true } }));
}

/**
 * What a unit lease's release records on the unit: the last holder (its
 * lease shown expired at `at`) and whether every file was verified in storage.
 */
export async function recordRelease(
  db: Database,
  unitId: string,
  owner: string,
  at: Date,
  downloaded: boolean,
): Promise<void> {
  await retryBusy(() =>
    db.units.updateOne(
      { _id: unitId },
      { $set: { download_lease: { owner, expires_at: at }, downloaded }, ...(downloaded ? UNSET_GONE : {}) },
    ),
  );
}

/**
 * Upstream drift: every catalog entry of a file of the unit answered 404 or
 * 410. Records when and the status, unless the unit is flagged already (the
 * first time is kept: "gone since"). Returns whether this call flagged it.
 */
export async function markGoneUpstream(
  db: Database,
  unitId: string,
  gone: { at: Date; status: number },
): Promise<boolean> {
  const unit = await db.units.findOne({ _id: unitId }, { projection: { gone_upstream: 1 } });
  if (!unit || unit.gone_upstream) return false;
  await retryBusy(() => db.units.updateOne({ _id: unitId }, { $set: { gone_upstream: gone } }));
  return true;
}

/** A fetch of a file of the unit succeeded: it is no longer gone upstream. Returns whether it was flagged. */
export async function clearGoneUpstream(db: Database, unitId: string): Promise<boolean> {
  const unit = await db.units.findOne({ _id: unitId }, { projection: { gone_upstream: 1 } });
  if (!unit?.gone_upstream) return false;
  await retryBusy(() => db.units.updateOne({ _id: unitId }, UNSET_GONE));
  return true;
}

/**
 * Inserts new units (a sync's). A unit another sync created meanwhile is
 * identical: its duplicate key is not an error.
 */
export async function insertUnits(db: Database, units: UnitDoc[]): Promise<void> {
  try {
    await retryBusy(() => db.units.insertMany(units, { ordered: false }));
  } catch (err) {
    if (!isDuplicateKey(err) && !(err as { writeErrors?: unknown }).writeErrors) throw err;
  }
}

/**
 * Associations of these units were just removed: their orphan protection
 * (src/storage/orphans.ts) starts again now. WRITE_CHUNK units per update.
 */
export async function markUnassociated(
  db: Database,
  unitIds: Iterable<string>,
  at = new Date(),
): Promise<void> {
  for await (const ids of chunked(new Set(unitIds))) {
    await retryBusy(() => db.units.updateMany({ _id: { $in: ids } }, { $set: { unassociated_at: at } }));
  }
}

/** Deletes unit documents (orphans), WRITE_CHUNK per delete; how many went. */
export async function deleteUnits(db: Database, unitIds: readonly string[]): Promise<number> {
  let deleted = 0;
  for await (const ids of chunked(unitIds)) {
    deleted += (await retryBusy(() => db.units.deleteMany({ _id: { $in: ids } }))).deletedCount;
  }
  return deleted;
}
