/**
 * Unit download leases: whoever copies a unit into storage first claims the
 * unit itself, so a sweep and a download_repo (or two sweeps holding stale
 * entries) never fetch the same unit at once.
 *
 * The authority is a lease chain per unit in `unit_leases` (src/db/chain.ts),
 * `u:<unit>#1`, `u:<unit>#2`, ...: a claim reads the chain from the start
 * and inserts the first generation that does not exist yet, provided every
 * earlier one is released or expired. Two claimers that race insert the
 * same _id, and exactly one insert succeeds. This is deliberate: FerretDB
 * 1.24 does not apply findOneAndUpdate/updateOne atomically (racers all
 * pass the filter) and writes whole documents, so a losing racer's write
 * could even undo a concurrent `downloaded: true` (measured: 7 of 40
 * rounds); inserts under a unique _id are atomic on both servers, and a
 * loser here writes nothing.
 *
 * Once the chain is won, the holder re-reads the unit (stored meanwhile by
 * a holder that just released, or by the streamer: then it gives the lease
 * back). Claims and renewals never write the unit document: on FerretDB any
 * write to it could undo a `downloaded: true` the streamer sets at the same
 * moment. The unit is written once, at release, when the outcome is known:
 * the `downloaded` flag and `download_lease` (the last holder, expired).
 * The live holder of a unit is read from the chain (`busy` claims name it).
 */

import { retryBusy } from '../db/busy.ts';
import { type ChainLease, LeaseChain } from '../db/chain.ts';
import type { Database, UnitDoc } from '../db/index.ts';
import { recordRelease, setDownloaded } from '../storage/units.ts';

export const UNIT_LEASES_COLLECTION = 'unit_leases';

/** A held unit lease (returned by claimUnit, passed to renewUnit/releaseUnit). */
export interface UnitLease {
  unitId: string;
  gen: number;
  owner: string;
}

export type UnitClaim =
  | { kind: 'claimed'; unit: UnitDoc; lease: UnitLease }
  | { kind: 'downloaded'; unit: UnitDoc }
  | { kind: 'busy'; owner: string; expiresAt: Date }
  | { kind: 'missing' };

/** The chain `u:<unit id>#<gen>` in unit_leases (documents carry `unit_id`). */
const chain = (db: Database) => new LeaseChain(db, UNIT_LEASES_COLLECTION, 'u:', 'unit_id');
const asChain = (l: UnitLease): ChainLease => ({ key: l.unitId, gen: l.gen, owner: l.owner });

/**
 * Claims `unitId` for `owner`. Only a unit not yet downloaded is claimed,
 * unless `evenIfDownloaded` (download_repo --verify-all re-checks those too).
 */
export async function claimUnit(
  db: Database,
  unitId: string,
  owner: string,
  leaseMs: number,
  opts: { evenIfDownloaded?: boolean; clock?: () => number } = {},
): Promise<UnitClaim> {
  const clock = opts.clock ?? Date.now;
  const seen = await retryBusy(() => db.units.findOne({ _id: unitId }));
  if (!seen) return { kind: 'missing' };
  if (seen.downloaded && !opts.evenIfDownloaded) return { kind: 'downloaded', unit: seen };

  const won = await chain(db).acquire(unitId, owner, leaseMs, clock);
  if (won.kind === 'busy') return { kind: 'busy', owner: won.owner, expiresAt: won.expiresAt };
  const lease: UnitLease = { unitId, gen: won.gen, owner };
  const unit = await retryBusy(() => db.units.findOne({ _id: unitId }));
  if (unit && (opts.evenIfDownloaded || !unit.downloaded)) return { kind: 'claimed', unit, lease };
  // Stored meanwhile (its holder released just before we won, or the streamer saved it), or gone.
  await chain(db).release(asChain(lease), clock);
  return unit ? { kind: 'downloaded', unit } : { kind: 'missing' };
}

/**
 * Extends the lease; false when it is lost (released, or taken over after it
 * expired: a later generation exists).
 */
export async function renewUnit(
  db: Database,
  lease: UnitLease,
  leaseMs: number,
  clock: () => number = Date.now,
): Promise<boolean> {
  return chain(db).renew(asChain(lease), leaseMs, clock);
}

/**
 * Releases the lease. With `downloaded` (true: every file verified in
 * storage; false: some file is missing or was corrupt) the flag is written
 * together with the visible lease (left expired, naming the last holder).
 * Without it the unit document is not written at all: on FerretDB any write
 * to it could undo a `downloaded: true` the streamer set at the same time.
 * A holder whose lease was taken over only ever writes `downloaded: true`.
 */
export async function releaseUnit(
  db: Database,
  lease: UnitLease,
  opts: { downloaded?: boolean; clock?: () => number } = {},
): Promise<void> {
  const clock = opts.clock ?? Date.now;
  const leases = chain(db);
  if (await leases.takenOver(asChain(lease))) {
    // Taken over after our lease expired: only report verified files, never undo the new holder's work.
    if (opts.downloaded === true) await setDownloaded(db, lease.unitId);
    await leases.release(asChain(lease), clock);
    return;
  }
  // Flag first, then the chain: a claimer that wins the next generation sees the flag.
  if (opts.downloaded !== undefined)
    await recordRelease(db, lease.unitId, lease.owner, new Date(clock()), opts.downloaded);
  await leases.release(asChain(lease), clock);
}

/** Of `unitIds`, those whose download lease is live now (held, not released, not expired). */
export async function unitsLeased(
  db: Database,
  unitIds: readonly string[],
  now = Date.now(),
): Promise<Set<string>> {
  const leased = new Set<string>();
  if (unitIds.length === 0) return leased;
  const leases = chain(db);
  const docs = db.db
    .collection<{ unit_id: string; gen: number; expires_at: Date }>(UNIT_LEASES_COLLECTION)
    .find({ unit_id: { $in: [...unitIds] }, expires_at: { $gt: new Date(now) } });
  for await (const d of docs) {
    if (!(await leases.isReleased(d.unit_id, d.gen))) leased.add(d.unit_id);
  }
  return leased;
}
