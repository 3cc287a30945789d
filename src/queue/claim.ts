/**
 * The deferred_download queue holds one entry per unit to copy into storage.
 * This module claims entries and keeps their leases: claim, renew, give back
 * (released, or failed with a backoff). Queueing and removing entries are in
 * entries.ts, the operator's `queue retry` in retry.ts.
 *
 * Entries are never removed when work starts (Pulp 2's flaw: a worker dying
 * after the removal lost the unit). A worker *claims* an entry with a lease,
 * renews it while it works, and deletes the entry only once the unit is
 * stored. A claim (claimOne) reads the entry by _id and checks in process
 * that it is claimable; the race between claimers is then decided by
 * inserting a claim token whose unique _id names the state read (tokens.ts),
 * and only the token's taker writes the lease, by _id and only if the entry
 * still has that state (attempts and lease expiry as read; see
 * src/db/by-id.ts and docs/ferretdb.md: on FerretDB only unique inserts are
 * atomic). A dead worker's lease simply expires and the entry becomes
 * claimable again. Failures keep the entry, with the error and an
 * exponential backoff; after max_attempts the entry is parked in state
 * 'failed' until `queue retry`.
 */
import type { Filter, UpdateFilter } from 'mongodb';
import { retryBusy } from '../db/busy.ts';
import { type Database, type DeferredDownloadDoc, updateOneById } from '../db/index.ts';
import { matches } from '../db/match.ts';
import { backoffDelay, type QueueSettings } from './settings.ts';
import { stamp, takeClaimToken } from './tokens.ts';

export type Entry = DeferredDownloadDoc;

/** Entries a worker may claim at `now`: pending, due, and not leased (or the lease expired). */
export function claimableFilter(now: Date): Filter<DeferredDownloadDoc> {
  return {
    state: 'pending',
    next_attempt_at: { $lte: now },
    $or: [{ lease_expires_at: null }, { lease_expires_at: { $lte: now } }],
  };
}

/** How many claimable entries one queue read returns (see EntryClaimer). */
const CANDIDATE_WINDOW = 1000;

/**
 * Claims entries for one worker, batch after batch. Candidates are read in
 * windows of up to CANDIDATE_WINDOW ids (one query, the only one here that
 * is not by _id), shuffled so concurrent workers rarely collide, and kept
 * across batches; each is then claimed by claimOne, which re-checks the
 * whole claimable condition, so a stale candidate just fails to claim. A
 * queue of n entries costs n/CANDIDATE_WINDOW reads instead of one per
 * batch (a read scans the whole queue on FerretDB).
 */
export class EntryClaimer {
  private candidates: string[] = [];
  /** The last read returned a full window: there may be more beyond it. */
  private more = true;

  constructor(
    private readonly db: Database,
    private readonly owner: string,
    private readonly s: Pick<QueueSettings, 'leaseMs'>,
    private readonly clock: () => number = Date.now,
    private readonly window = CANDIDATE_WINDOW,
  ) {}

  /** Claims up to `n` entries; an empty result means nothing is claimable now. */
  async claim(n: number): Promise<Entry[]> {
    const claimed: Entry[] = [];
    let reads = 0;
    while (claimed.length < n) {
      const id = this.candidates.pop();
      if (id === undefined) {
        // Out of candidates: read again (entries may have become due since), a few times at most
        // when others took every candidate we had.
        if (reads >= 3 || (reads > 0 && !this.more)) break;
        await this.read();
        reads++;
        continue;
      }
      const entry = await claimOne(this.db, id, this.owner, this.s, this.clock);
      if (entry) claimed.push(entry);
    }
    return claimed;
  }

  private async read(): Promise<void> {
    const now = new Date(this.clock());
    const docs = await retryBusy(() =>
      this.db.deferred
        .find(claimableFilter(now), { projection: { _id: 1 } })
        .sort({ next_attempt_at: 1 })
        .limit(this.window)
        .toArray(),
    );
    this.more = docs.length === this.window;
    this.candidates = docs.map((d) => d._id);
    shuffle(this.candidates);
  }
}

/** Claims up to `n` entries for `owner` in one go (see EntryClaimer). */
export async function claimBatch(
  db: Database,
  owner: string,
  n: number,
  s: Pick<QueueSettings, 'leaseMs'>,
  clock: () => number = Date.now,
): Promise<Entry[]> {
  return new EntryClaimer(db, owner, s, clock).claim(n);
}

/**
 * Claims one entry by id if it is still claimable; null when another worker
 * got it first. The entry is read by _id, and the claim is decided by a
 * claim token named after the state read (see tokens.ts: a unique insert,
 * exclusive on MongoDB and FerretDB alike); only the token's taker then
 * writes the lease, and only over that same state.
 */
export async function claimOne(
  db: Database,
  id: string,
  owner: string,
  s: Pick<QueueSettings, 'leaseMs'>,
  clock: () => number = Date.now,
): Promise<Entry | null> {
  const now = new Date(clock());
  const cur = await retryBusy(() => db.deferred.findOne({ _id: id }));
  if (!cur || !matches(cur, claimableFilter(now))) return null;
  const key = `e:${id}:${cur.attempts}:${stamp(cur.lease_expires_at)}:${stamp(cur.next_attempt_at)}`;
  if (!(await takeClaimToken(db, key, now, s.leaseMs))) return null;
  const expires = new Date(now.getTime() + s.leaseMs);
  const lease = { lease_owner: owner, lease_expires_at: expires, attempts: cur.attempts + 1 };
  const wrote = await retryBusy(() =>
    updateOneById(
      db.server,
      db.deferred,
      id,
      { attempts: cur.attempts, lease_expires_at: cur.lease_expires_at ?? null },
      { $set: lease },
    ),
  );
  // Released or retried between the read and the write: that new state is claimable afresh.
  return wrote ? { ...cur, ...lease } : null;
}

/** Extends the leases `owner` still holds on `ids`; returns how many were extended. */
export async function renewEntries(
  db: Database,
  ids: string[],
  owner: string,
  s: Pick<QueueSettings, 'leaseMs'>,
  clock: () => number = Date.now,
): Promise<number> {
  if (ids.length === 0) return 0;
  const update = { $set: { lease_expires_at: new Date(clock() + s.leaseMs) } };
  if (db.server === 'mongodb') {
    const r = await retryBusy(() =>
      db.deferred.updateMany({ _id: { $in: ids }, lease_owner: owner }, update),
    );
    return r.matchedCount;
  }
  // FerretDB: one scan-free write per entry instead of one updateMany that reads the whole queue.
  let renewed = 0;
  for (const id of ids) {
    if (await updateHeld(db, id, owner, update)) renewed++;
  }
  return renewed;
}

/** Writes to an entry only while `owner` holds its lease; false when it no longer does. */
function updateHeld(
  db: Database,
  id: string,
  owner: string,
  update: UpdateFilter<DeferredDownloadDoc>,
): Promise<boolean> {
  return retryBusy(() => updateOneById(db.server, db.deferred, id, { lease_owner: owner }, update));
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
  const matched = await updateHeld(db, entry._id, owner, {
    $set: {
      last_error: error.slice(0, 2000),
      lease_owner: null,
      // An expired lease (not null): the next claim replaces a state no earlier claim saw.
      lease_expires_at: new Date(now),
      next_attempt_at: next,
      ...(parked ? { state: 'failed' as const } : {}),
    },
  });
  return { result: !matched ? 'lost' : parked ? 'parked' : 'retry', next_attempt_at: next };
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
  return updateHeld(db, entry._id, owner, {
    $set: {
      lease_owner: null,
      lease_expires_at: now,
      next_attempt_at: opts.notBefore ?? now,
    },
    $inc: { attempts: -1 },
  });
}

function shuffle<T>(a: T[]): void {
  for (let i = a.length - 1; i > 0; i--) {
    const j = Math.floor(Math.random() * (i + 1));
    [a[i], a[j]] = [a[j]!, a[i]!];
  }
}
