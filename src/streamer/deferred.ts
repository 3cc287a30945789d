/**
 * The streamer's writes to the deferred_download queue: one entry per unit
 * (unique index on unit_id + unit_type_id), so an insert that hits a
 * duplicate key means "already queued" and counts as success.
 */
import { type Database, deferredId, newDeferredEntry } from '../db/index.ts';
import { isDuplicateKey } from '../errors.ts';

export interface UnitRef {
  unit_id: string;
  unit_type_id: string;
}

/** Queues the unit for the download tasks; returns false when it was already queued. */
export async function queueDeferred(db: Database, unit: UnitRef, now: Date): Promise<boolean> {
  try {
    await db.deferred.insertOne(newDeferredEntry(unit, now));
    return true;
  } catch (err) {
    if (isDuplicateKey(err)) return false;
    throw err;
  }
}

/**
 * Records a failure against the unit's entry, creating the entry when there
 * is none (first attempt not before `retryAt`).
 */
export async function recordDeferredFailure(
  db: Database,
  unit: UnitRef,
  error: string,
  now: Date,
  retryAt: Date,
) {
  // By _id: the one filter FerretDB hands to SQLite (docs/ferretdb.md).
  const filter = { _id: deferredId(unit) };
  const update = {
    $set: { last_error: error },
    $setOnInsert: {
      unit_id: unit.unit_id,
      unit_type_id: unit.unit_type_id,
      state: 'pending' as const,
      attempts: 0,
      next_attempt_at: retryAt,
      created_at: now,
      lease_owner: null,
      lease_expires_at: null,
    },
  };
  try {
    await db.deferred.updateOne(filter, update, { upsert: true });
  } catch (err) {
    // Two upserts raced and one inserted first: the entry now exists, so update it.
    if (!isDuplicateKey(err)) throw err;
    await db.deferred.updateOne(filter, { $set: { last_error: error } });
  }
}

/** Removes the unit's entry once the unit is downloaded. */
export async function clearDeferred(db: Database, unit: UnitRef): Promise<void> {
  await db.deferred.deleteOne({ _id: deferredId(unit) });
}
