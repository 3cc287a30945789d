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
 * Once the chain is won, the holder re-reads the unit (stored meanwhile by
 * a holder that just released, or by the streamer: then it gives the lease
 * back). Claims and renewals never write the unit document: on FerretDB any
 * write to it could undo a `downloaded: true` the streamer sets at the same
 * moment. The unit is written once, at release, when the outcome is known:
 * the `downloaded` flag and `download_lease` (the last holder, expired).
 * The live holder of a unit is read from the chain (`busy` claims name it).
 */
import { type Database, type UnitDoc, updateOneById } from '../db/index.ts';
import { isDuplicateKey } from '../errors.ts';
import { retryBusy } from './busy.ts';

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
  const seen = await retryBusy(() => db.units.findOne({ _id: unitId }));
  if (!seen) return { kind: 'missing' };
  if (seen.downloaded && !opts.evenIfDownloaded) return { kind: 'downloaded', unit: seen };

  const won = await acquire(db, unitId, owner, leaseMs, clock);
  if (won.kind === 'busy') return won;
  const lease: UnitLease = { unitId, gen: won.gen, owner };
  const unit = await retryBusy(() => db.units.findOne({ _id: unitId }));
  if (unit && (opts.evenIfDownloaded || !unit.downloaded)) return { kind: 'claimed', unit, lease };
  // Stored meanwhile (its holder released just before we won, or the streamer saved it), or gone.
  await markReleased(db, lease, clock);
  return unit ? { kind: 'downloaded', unit } : { kind: 'missing' };
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
    let doc = await retryBusy(() => leases(db).findOne({ _id: key(unitId, gen) }));
    if (!doc) {
      const now = clock();
      try {
        await retryBusy(() =>
          leases(db).insertOne({
            _id: key(unitId, gen),
            unit_id: unitId,
            gen,
            owner,
            expires_at: new Date(now + leaseMs),
          }),
        );
        return { kind: 'won', gen };
      } catch (err) {
        if (!isDuplicateKey(err)) throw err;
        doc = await retryBusy(() => leases(db).findOne({ _id: key(unitId, gen) }));
        if (!doc) throw err;
      }
    }
    if (doc.expires_at.getTime() > clock() && !(await isReleased(db, unitId, gen))) {
      return { kind: 'busy', owner: doc.owner, expiresAt: doc.expires_at };
    }
  }
}

async function isReleased(db: Database, unitId: string, gen: number): Promise<boolean> {
  return (
    (await retryBusy(() =>
      leases(db).findOne({ _id: releasedKey(unitId, gen) }, { projection: { _id: 1 } }),
    )) !== null
  );
}

async function markReleased(db: Database, lease: UnitLease, clock: () => number): Promise<void> {
  try {
    await retryBusy(() =>
      leases(db).insertOne({
        _id: releasedKey(lease.unitId, lease.gen),
        unit_id: lease.unitId,
        gen: lease.gen,
        owner: lease.owner,
        expires_at: new Date(clock()),
      }),
    );
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
  const renewed = await retryBusy(() =>
    updateOneById(
      db.server,
      leases(db),
      key(lease.unitId, lease.gen),
      { owner: lease.owner },
      { $set: { expires_at: expires } },
    ),
  );
  if (!renewed) return false;
  if (
    await retryBusy(() =>
      leases(db).findOne({ _id: key(lease.unitId, lease.gen + 1) }, { projection: { _id: 1 } }),
    )
  )
    return false;
  return !(await isReleased(db, lease.unitId, lease.gen));
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
  const flag = opts.downloaded === undefined ? {} : { downloaded: opts.downloaded };
  if (
    await retryBusy(() =>
      leases(db).findOne({ _id: key(lease.unitId, lease.gen + 1) }, { projection: { _id: 1 } }),
    )
  ) {
    // Taken over after our lease expired: only report verified files, never undo the new holder's work.
    if (opts.downloaded === true)
      await retryBusy(() => db.units.updateOne({ _id: lease.unitId }, { $set: { downloaded: true } }));
    await markReleased(db, lease, clock);
    return;
  }
  // Flag first, then the chain: a claimer that wins the next generation sees the flag.
  if (opts.downloaded !== undefined)
    await retryBusy(() =>
      db.units.updateOne(
        { _id: lease.unitId },
        { $set: { download_lease: { owner: lease.owner, expires_at: new Date(clock()) }, ...flag } },
      ),
    );
  await markReleased(db, lease, clock);
}
