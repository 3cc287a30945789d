/**
 * Writes of deferred_download entries outside a lease: queueing a unit
 * (idempotent: one entry per unit, under the unique _id deferredId, so a
 * duplicate key means "already queued"), recording a failure against a
 * unit's entry, and removing the entry once the unit is stored. The
 * streamer and the tasks queue through here; src/queue/ is the only writer
 * of the queue (test/collection-owners.test.ts).
 */
import { retryBusy } from '../db/busy.ts';
import { chunked, type Database, deferredId, newDeferredEntry, type UnitRef } from '../db/index.ts';
import { isDuplicateKey } from '../errors.ts';
import type { Entry } from './claim.ts';

/** The unit is stored: the entry goes (whoever holds it; the work is done). */
export async function completeEntry(db: Database, entry: Pick<Entry, '_id'>): Promise<void> {
  // The streamer often removed it already when it saved the last file. Checking first
  // saves a write, which costs a collection scan on FerretDB (a read by _id does not).
  if (!(await retryBusy(() => db.deferred.findOne({ _id: entry._id }, { projection: { _id: 1 } })))) return;
  await retryBusy(() => db.deferred.deleteOne({ _id: entry._id }));
}

/** Removes the unit's entry: the unit was stored (by the streamer, or by download_repo). True when there was one. */
export async function completeUnit(db: Database, unit: UnitRef): Promise<boolean> {
  const r = await retryBusy(() => db.deferred.deleteOne({ _id: deferredId(unit) }));
  return r.deletedCount > 0;
}

/** Queues a unit (idempotent: an existing entry is kept as it is). Returns false when already queued. */
export async function enqueue(
  db: Database,
  unit: UnitRef,
  opts: { error?: string; now?: Date } = {},
): Promise<boolean> {
  const now = opts.now ?? new Date();
  try {
    await retryBusy(() => db.deferred.insertOne(newDeferredEntry(unit, now, { error: opts.error ?? null })));
    return true;
  } catch (err) {
    if (isDuplicateKey(err)) return false;
    throw err;
  }
}

/**
 * Queues many units (the `background` policy's sync), WRITE_CHUNK entries per
 * insert; units already queued keep their entry. Returns how many were queued now.
 */
export async function enqueueMany(
  db: Database,
  units: AsyncIterable<UnitRef> | Iterable<UnitRef>,
  now = new Date(),
): Promise<number> {
  let queued = 0;
  for await (const chunk of chunked(units)) {
    const docs = chunk.map((u) => newDeferredEntry(u, now));
    try {
      queued += (await retryBusy(() => db.deferred.insertMany(docs, { ordered: false }))).insertedCount;
    } catch (err) {
      // Unordered: every entry not queued yet went in; the others failed on their unique _id.
      const e = err as { writeErrors?: unknown; result?: { insertedCount?: number } };
      const errors = e.writeErrors ? [e.writeErrors].flat() : [err];
      if (!errors.every(isDuplicateKey)) throw err;
      queued += e.result?.insertedCount ?? docs.length - errors.length;
    }
  }
  return queued;
}

/**
 * Records a failure against the unit's entry, creating the entry when there
 * is none (first attempt not before `retryAt`); the streamer's word that a
 * file of the unit failed verification.
 */
export async function recordDeferredFailure(
  db: Database,
  unit: UnitRef,
  error: string,
  now: Date,
  retryAt: Date,
): Promise<void> {
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
    await retryBusy(() => db.deferred.updateOne(filter, update, { upsert: true }));
  } catch (err) {
    // Two upserts raced and one inserted first: the entry now exists, so update it.
    if (!isDuplicateKey(err)) throw err;
    await retryBusy(() => db.deferred.updateOne(filter, { $set: { last_error: error } }));
  }
}

/** Removes the queue entries of these units (orphans), WRITE_CHUNK per delete; how many went. */
export async function deleteUnitsEntries(db: Database, unitIds: readonly string[]): Promise<number> {
  let deleted = 0;
  for await (const ids of chunked(unitIds)) {
    deleted += (await retryBusy(() => db.deferred.deleteMany({ unit_id: { $in: ids } }))).deletedCount;
  }
  return deleted;
}
