/**
 * Verification failures recorded on catalog entries: an entry whose bytes
 * failed verification is skipped until `failed_until` (the streamer's
 * failover), and `queue retry` lifts that cool-down for the units it makes
 * claimable again. src/catalog/ is the only writer of the catalog
 * (test/collection-owners.test.ts).
 */
import { retryBusy } from '../db/busy.ts';
import { type CatalogEntryDoc, chunked, type Database } from '../db/index.ts';

/** Unit ids per `$in` list. */
const IN_LIST_MAX = 500;

/** Skips `entry` until `until` and records why. */
export async function markEntryFailed(
  db: Database,
  entry: CatalogEntryDoc,
  error: string,
  until: Date,
): Promise<void> {
  const filter = entry._id
    ? { _id: entry._id }
    : { path: entry.path, importer_id: entry.importer_id, revision: entry.revision };
  await retryBusy(() => db.catalog.updateOne(filter, { $set: { failed_until: until, last_error: error } }));
}

/** Lifts the cool-down of every entry of `unitIds`; returns how many entries had one. */
export async function clearFailures(db: Database, unitIds: readonly string[]): Promise<number> {
  let cleared = 0;
  // One update statement per batch: its `$in` list is what is bounded, not a statement count.
  for await (const ids of chunked(unitIds, IN_LIST_MAX)) {
    const r = await retryBusy(() =>
      db.catalog.updateMany(
        { unit_id: { $in: ids }, failed_until: { $ne: null } },
        { $set: { failed_until: null } },
      ),
    );
    cleared += r.modifiedCount;
  }
  return cleared;
}
