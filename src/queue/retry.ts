/**
 * `queue retry`, the operator's word that upstream is fixed: parked or
 * backed-off entries become claimable now (see retryEntries).
 */
import type { Filter } from 'mongodb';
import { clearFailures } from '../catalog/failures.ts';
import { retryBusy } from '../db/busy.ts';
import { type Database, type DeferredDownloadDoc, updateOneById } from '../db/index.ts';

export interface RetryResult {
  /** Unit ids made claimable now. */
  units: string[];
  /** Catalog entries whose verification cool-down was lifted. */
  catalog_cleared: number;
}

/**
 * `queue retry`: entries parked as 'failed' or waiting out a backoff become
 * pending and claimable now, with attempts reset to 0. Entries leased by a
 * running worker are left alone. The operator says upstream is fixed, so the
 * catalog's verification cool-down of those units' files is lifted too.
 */
export async function retryEntries(
  db: Database,
  target: { all: true } | { unitId: string },
  clock: () => number = Date.now,
): Promise<RetryResult> {
  const now = new Date(clock());
  const base: Filter<DeferredDownloadDoc> = {
    $and: [
      {
        $or: [
          { state: 'failed' },
          { state: 'pending', next_attempt_at: { $gt: now } },
          { attempts: { $gt: 0 } },
        ],
      },
      { $or: [{ lease_expires_at: null }, { lease_expires_at: { $lte: now } }] },
    ],
  };
  const filter: Filter<DeferredDownloadDoc> = 'unitId' in target ? { ...base, unit_id: target.unitId } : base;
  const docs = await retryBusy(() =>
    db.deferred.find(filter, { projection: { _id: 1, unit_id: 1 } }).toArray(),
  );
  const units: string[] = [];
  for (const d of docs) {
    const matched = await retryBusy(() =>
      updateOneById(
        db.server,
        db.deferred,
        d._id,
        { $or: [{ lease_expires_at: null }, { lease_expires_at: { $lte: now } }] },
        {
          $set: {
            state: 'pending',
            attempts: 0,
            next_attempt_at: now,
            last_error: null,
            lease_owner: null,
            lease_expires_at: now,
          },
        },
      ),
    );
    if (matched) units.push(d.unit_id);
  }
  const cleared = await clearFailures(db, units);
  return { units, catalog_cleared: cleared };
}
