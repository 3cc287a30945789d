/**
 * Unit download leases: whoever copies a unit into storage first claims the
 * unit itself, so a sweep and a download_repo (or two sweeps holding stale
 * entries) never fetch the same unit at once.
 *
 * The authority is a chain of lease documents per unit in `unit_leases`,
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
 * Once the chain is won, the holder (and only it) writes the visible lease
 * on the unit, `units.download_lease`, with a findOneAndUpdate that also
 * re-checks `downloaded` (filter: not downloaded, lease free or expired).
 * Release marks the generation released (a marker insert) and clears the
 * visible lease together with the new `downloaded` flag.
 */
import type { Database, UnitDoc } from '../db/index.ts';
import { isDuplicateKey } from '../errors.ts';

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

interface LeaseDoc {
  /** `u:<unit id>#<gen>`, or `u:<unit id>#<gen>:released` for a release marker. */
  _id: string;
  unit_id: string;
  gen: number;
  owner: string;
  expires_at: Date;
}

const leases = (db: Database) => db.db.collection<LeaseDoc>(UNIT_LEASES_COLLECTION);
const key = (unitId: string, gen: number) => `u:${unitId}#${gen}`;
const releasedKey = (unitId: string, gen: number) => `${key(unitId, gen)}:released`;

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
  const seen = await db.units.findOne({ _id: unitId });
  if (!seen) return { kind: 'missing' };
  if (seen.downloaded && !opts.evenIfDownloaded) return { kind: 'downloaded', unit: seen };

  const won = await acquire(db, unitId, owner, leaseMs, clock);
  if (won.kind === 'busy') return won;
  const lease: UnitLease = { unitId, gen: won.gen, owner };
  const now = new Date(clock());
  const expires = new Date(now.getTime() + leaseMs);
  const unit = await db.units.findOneAndUpdate(
    {
      _id: unitId,
      ...(opts.evenIfDownloaded ? {} : { downloaded: false }),
      $or: [
        { download_lease: null },
        { 'download_lease.expires_at': { $lte: now } },
        { 'download_lease.owner': owner },
      ],
    },
    { $set: { download_lease: { owner, expires_at: expires } } },
    { returnDocument: 'after' },
  );
  if (unit) return { kind: 'claimed', unit, lease };
  // Stored meanwhile (its holder released just before we won), gone, or a stale visible lease.
  await markReleased(db, lease, clock);
  const current = await db.units.findOne({ _id: unitId });
  if (!current) return { kind: 'missing' };
  if (current.downloaded && !opts.evenIfDownloaded) return { kind: 'downloaded', unit: current };
  const held = current.download_lease;
  return { kind: 'busy', owner: held?.owner ?? 'another worker', expiresAt: held?.expires_at ?? expires };
}

/** Walks the unit's lease chain and inserts the first free generation, unless one is live. */
async function acquire(
  db: Database,
  unitId: string,
  owner: string,
  leaseMs: number,
  clock: () => number,
): Promise<{ kind: 'won'; gen: number } | { kind: 'busy'; owner: string; expiresAt: Date }> {
  for (let gen = 1; ; gen++) {
    let doc = await leases(db).findOne({ _id: key(unitId, gen) });
    if (!doc) {
      const now = clock();
      try {
        await leases(db).insertOne({
          _id: key(unitId, gen),
          unit_id: unitId,
          gen,
          owner,
          expires_at: new Date(now + leaseMs),
        });
        return { kind: 'won', gen };
      } catch (err) {
        if (!isDuplicateKey(err)) throw err;
        doc = await leases(db).findOne({ _id: key(unitId, gen) });
        if (!doc) throw err;
      }
    }
    if (doc.expires_at.getTime() > clock() && !(await isReleased(db, unitId, gen))) {
      return { kind: 'busy', owner: doc.owner, expiresAt: doc.expires_at };
    }
  }
}

async function isReleased(db: Database, unitId: string, gen: number): Promise<boolean> {
  return (await leases(db).findOne({ _id: releasedKey(unitId, gen) }, { projection: { _id: 1 } })) !== null;
}

async function markReleased(db: Database, lease: UnitLease, clock: () => number): Promise<void> {
  try {
    await leases(db).insertOne({
      _id: releasedKey(lease.unitId, lease.gen),
      unit_id: lease.unitId,
      gen: lease.gen,
      owner: lease.owner,
      expires_at: new Date(clock()),
    });
  } catch (err) {
    if (!isDuplicateKey(err)) throw err;
  }
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
  const expires = new Date(clock() + leaseMs);
  const r = await leases(db).updateOne(
    { _id: key(lease.unitId, lease.gen), owner: lease.owner },
    { $set: { expires_at: expires } },
  );
  if (r.matchedCount === 0) return false;
  if (await leases(db).findOne({ _id: key(lease.unitId, lease.gen + 1) }, { projection: { _id: 1 } }))
    return false;
  if (await isReleased(db, lease.unitId, lease.gen)) return false;
  // The visible lease (best effort: it is informative).
  await db.units.updateOne(
    { _id: lease.unitId, 'download_lease.owner': lease.owner },
    { $set: { 'download_lease.expires_at': expires } },
  );
  return true;
}

/**
 * Releases the lease, setting the `downloaded` flag in the same write when
 * given (true: every file verified in storage; false: some file is missing
 * or was corrupt). The visible lease is left expired, naming the last holder.
 * A holder whose lease was taken over only ever writes `downloaded: true`.
 */
export async function releaseUnit(
  db: Database,
  lease: UnitLease,
  opts: { downloaded?: boolean; clock?: () => number } = {},
): Promise<void> {
  const clock = opts.clock ?? Date.now;
  const flag = opts.downloaded === undefined ? {} : { downloaded: opts.downloaded };
  if (await leases(db).findOne({ _id: key(lease.unitId, lease.gen + 1) }, { projection: { _id: 1 } })) {
    // Taken over after our lease expired: only report verified files, never undo the new holder's work.
    if (opts.downloaded === true)
      await db.units.updateOne({ _id: lease.unitId }, { $set: { downloaded: true } });
    await markReleased(db, lease, clock);
    return;
  }
  // Flag first, then the chain: a claimer that wins the next generation sees the flag.
  await db.units.updateOne(
    { _id: lease.unitId },
    { $set: { download_lease: { owner: lease.owner, expires_at: new Date(clock()) }, ...flag } },
  );
  await markReleased(db, lease, clock);
}
