/**
 * The deferred_download queue: one entry per unit to copy into storage.
 *
 * Entries are never removed when work starts (Pulp 2's flaw: a worker dying
 * after the removal lost the unit). A worker *claims* an entry with a lease
 * (one atomic findOneAndUpdate per entry), renews it while it works, and
 * deletes the entry only once the unit is stored. A dead worker's lease
 * simply expires and the entry becomes claimable again. Failures keep the
 * entry, with the error and an exponential backoff; after max_attempts the
 * entry is parked in state 'failed' until `queue retry`.
 */
import type { Filter, ObjectId } from 'mongodb';
import type { Database, DeferredDownloadDoc } from '../db/index.ts';
import { isDuplicateKey } from '../errors.ts';
import { retryBusy } from './busy.ts';
import { backoffDelay, type QueueSettings } from './settings.ts';
import { stamp, takeToken } from './tokens.ts';

export type Entry = DeferredDownloadDoc & { _id: ObjectId };

export interface UnitRef {
  unit_id: string;
  unit_type_id: string;
}

/** Entries a worker may claim at `now`: pending, due, and not leased (or the lease expired). */
export function claimableFilter(now: Date): Filter<DeferredDownloadDoc> {
  return {
    state: 'pending',
    next_attempt_at: { $lte: now },
    $or: [{ lease_expires_at: null }, { lease_expires_at: { $lte: now } }],
  };
}

/**
 * Claims up to `n` entries for `owner`. Candidates are read first (cheap,
 * indexed on MongoDB), then each is claimed by one findOneAndUpdate that
 * re-checks the whole claimable condition, so two workers never hold one
 * entry. Candidates are shuffled so concurrent workers rarely collide.
 */
export async function claimBatch(
  db: Database,
  owner: string,
  n: number,
  s: Pick<QueueSettings, 'leaseMs'>,
  clock: () => number = Date.now,
): Promise<Entry[]> {
  const claimed: Entry[] = [];
  const window = Math.max(n * 4, 32);
  for (let pass = 0; claimed.length < n && pass < 50; pass++) {
    const now = new Date(clock());
    const candidates = await retryBusy(() =>
      db.deferred
        .find(claimableFilter(now), { projection: { _id: 1 } })
        .sort({ next_attempt_at: 1 })
        .limit(window)
        .toArray(),
    );
    if (candidates.length === 0) break;
    shuffle(candidates);
    for (const c of candidates) {
      if (claimed.length >= n) break;
      const entry = await claimOne(db, c._id, owner, s, clock);
      if (entry) claimed.push(entry);
    }
  }
  return claimed;
}

/**
 * Claims one entry by id if it is still claimable; null when another worker
 * got it first. The findOneAndUpdate is confirmed by a claim token named
 * after the state it replaced (see tokens.ts: exclusive on FerretDB too).
 */
export async function claimOne(
  db: Database,
  id: ObjectId,
  owner: string,
  s: Pick<QueueSettings, 'leaseMs'>,
  clock: () => number = Date.now,
): Promise<Entry | null> {
  const now = new Date(clock());
  const expires = new Date(now.getTime() + s.leaseMs);
  const before = (await retryBusy(() =>
    db.deferred.findOneAndUpdate(
      { _id: id, ...claimableFilter(now) },
      { $set: { lease_owner: owner, lease_expires_at: expires }, $inc: { attempts: 1 } },
      { returnDocument: 'before' },
    ),
  )) as Entry | null;
  if (!before) return null;
  const key = `e:${id.toHexString()}:${before.attempts}:${stamp(before.lease_expires_at)}:${stamp(before.next_attempt_at)}`;
  if (!(await takeToken(db, key, now))) return null;
  return { ...before, lease_owner: owner, lease_expires_at: expires, attempts: before.attempts + 1 };
}

/** Extends the leases `owner` still holds on `ids`; returns how many were extended. */
export async function renewEntries(
  db: Database,
  ids: ObjectId[],
  owner: string,
  s: Pick<QueueSettings, 'leaseMs'>,
  clock: () => number = Date.now,
): Promise<number> {
  if (ids.length === 0) return 0;
  const r = await retryBusy(() =>
    db.deferred.updateMany(
      { _id: { $in: ids }, lease_owner: owner },
      { $set: { lease_expires_at: new Date(clock() + s.leaseMs) } },
    ),
  );
  return r.matchedCount;
}

/** The unit is stored: the entry goes (whoever holds it; the work is done). */
export async function completeEntry(db: Database, entry: Pick<Entry, '_id'>): Promise<void> {
  // The streamer often removed it already when it saved the last file. Checking first
  // saves a write, which costs a collection scan on FerretDB (a read by _id does not).
  if (!(await retryBusy(() => db.deferred.findOne({ _id: entry._id }, { projection: { _id: 1 } })))) return;
  await retryBusy(() => db.deferred.deleteOne({ _id: entry._id }));
}

/** Removes the entry of a unit that was stored by other means (download_repo). */
export async function completeUnit(db: Database, unit: UnitRef): Promise<boolean> {
  const r = await retryBusy(() =>
    db.deferred.deleteOne({ unit_id: unit.unit_id, unit_type_id: unit.unit_type_id }),
  );
  return r.deletedCount > 0;
}

export type FailResult = 'retry' | 'parked' | 'lost';

/**
 * Records a failed attempt: keeps the entry with the error and releases the
 * lease; the next attempt waits an exponential backoff, and after
 * max_attempts the entry is parked in state 'failed'. 'lost': `owner` no
 * longer held the lease (nothing written).
 */
export async function failEntry(
  db: Database,
  entry: Entry,
  owner: string,
  error: string,
  s: QueueSettings,
  clock: () => number = Date.now,
): Promise<{ result: FailResult; next_attempt_at: Date }> {
  const now = clock();
  const parked = entry.attempts >= s.maxAttempts;
  const next = new Date(now + backoffDelay(entry.attempts, s));
  const r = await retryBusy(() =>
    db.deferred.updateOne(
      { _id: entry._id, lease_owner: owner },
      {
        $set: {
          last_error: error.slice(0, 2000),
          lease_owner: null,
          // An expired lease (not null): the next claim replaces a state no earlier claim saw.
          lease_expires_at: new Date(now),
          next_attempt_at: next,
          ...(parked ? { state: 'failed' as const } : {}),
        },
      },
    ),
  );
  return { result: r.matchedCount === 0 ? 'lost' : parked ? 'parked' : 'retry', next_attempt_at: next };
}

/**
 * Gives an entry back without counting the attempt (shutdown, or the unit is
 * being downloaded by someone else); `notBefore` delays the next claim.
 */
export async function releaseEntry(
  db: Database,
  entry: Pick<Entry, '_id'>,
  owner: string,
  opts: { notBefore?: Date; clock?: () => number } = {},
): Promise<boolean> {
  const now = new Date((opts.clock ?? Date.now)());
  const r = await retryBusy(() =>
    db.deferred.updateOne(
      { _id: entry._id, lease_owner: owner },
      {
        $set: {
          lease_owner: null,
          lease_expires_at: now,
          next_attempt_at: opts.notBefore ?? now,
        },
        $inc: { attempts: -1 },
      },
    ),
  );
  return r.matchedCount > 0;
}

/** Queues a unit (idempotent: an existing entry is kept as it is). Returns false when already queued. */
export async function enqueue(
  db: Database,
  unit: UnitRef,
  opts: { error?: string; now?: Date } = {},
): Promise<boolean> {
  const now = opts.now ?? new Date();
  try {
    await retryBusy(() =>
      db.deferred.insertOne({
        unit_id: unit.unit_id,
        unit_type_id: unit.unit_type_id,
        state: 'pending',
        created_at: now,
        lease_owner: null,
        lease_expires_at: null,
        attempts: 0,
        last_error: opts.error ?? null,
        next_attempt_at: now,
      }),
    );
    return true;
  } catch (err) {
    if (isDuplicateKey(err)) return false;
    throw err;
  }
}

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
    const r = await retryBusy(() =>
      db.deferred.updateOne(
        { _id: d._id, $or: [{ lease_expires_at: null }, { lease_expires_at: { $lte: now } }] },
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
    if (r.matchedCount > 0) units.push(d.unit_id);
  }
  let cleared = 0;
  for (let i = 0; i < units.length; i += 500) {
    const r = await retryBusy(() =>
      db.catalog.updateMany(
        { unit_id: { $in: units.slice(i, i + 500) }, failed_until: { $ne: null } },
        { $set: { failed_until: null } },
      ),
    );
    cleared += r.modifiedCount;
  }
  return { units, catalog_cleared: cleared };
}

function shuffle<T>(a: T[]): void {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
}
