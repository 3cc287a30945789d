/**
 * Claim tokens: the tie-breaker that makes queue entry claims exclusive on
 * FerretDB too (unit leases use a lease chain instead, see units.ts).
 *
 * FerretDB 1.24 (SQLite) evaluates the filter of findOneAndUpdate/updateOne
 * and writes the update as two steps: under concurrency several callers
 * pass the same filter and all "win" (measured: 9 of 30 rounds with 6
 * racers; $inc also loses increments). Inserts under a unique key are
 * atomic there (docs/ferretdb.md). So an entry claim (claimOne in
 * entries.ts) is three steps: it reads the entry by _id and checks that it
 * is claimable; it inserts a token whose _id is derived from the state it
 * read (entry id, attempts, lease expiry, next attempt): racers that read
 * the same state compute the same _id and exactly one insert succeeds, the
 * others give up without writing; the taker then writes the lease by _id,
 * conditionally on the entry still having the attempts and lease expiry it
 * read (a release or retry in between makes that write miss). Every later
 * state differs (claims count an attempt, releases and failures stamp the
 * lease expiry with the current time), so a legitimate later claim gets a
 * fresh _id. The same steps run on MongoDB (the token decides there just
 * the same; its conditional write is atomic besides). A taker killed between its insert and its write
 * leaves a token for a state that stays current: after `staleMs` it is
 * passed on through successor tokens (takeClaimToken). Tokens are pruned
 * once they are far older than any lease.
 */

import { retryBusy } from '../db/busy.ts';
import type { Database } from '../db/index.ts';
import { isDuplicateKey } from '../errors.ts';

export const TOKENS_COLLECTION = 'queue_claim_tokens';

interface TokenDoc {
  _id: string;
  at: Date;
}

const tokens = (db: Database) => db.db.collection<TokenDoc>(TOKENS_COLLECTION);

/** True when this caller is the one that took over the state named by `key`. */
export async function takeToken(db: Database, key: string, now: Date): Promise<boolean> {
  try {
    await retryBusy(() => tokens(db).insertOne({ _id: key, at: now }));
    return true;
  } catch (err) {
    if (isDuplicateKey(err)) return false;
    throw err;
  }
}

/**
 * takeToken for a claim that the taker then acts on: a token older than
 * `staleMs` whose state is still current means its taker died before it
 * wrote (a kill between the insert and the write); the state is then
 * claimable through a successor token `<key>#2`, `#3`, ..., decided by
 * unique insert like the first.
 */
export async function takeClaimToken(
  db: Database,
  key: string,
  now: Date,
  staleMs: number,
): Promise<boolean> {
  for (let n = 1; n <= 20; n++) {
    const k = n === 1 ? key : `${key}#${n}`;
    if (await takeToken(db, k, now)) return true;
    const held = await retryBusy(() => tokens(db).findOne({ _id: k }));
    if (held && now.getTime() - held.at.getTime() < staleMs) return false;
  }
  return false;
}

/** Removes tokens older than `olderThanMs` (no claim can still be racing on them). */
export async function pruneTokens(db: Database, olderThanMs: number, now: number): Promise<number> {
  const r = await retryBusy(() => tokens(db).deleteMany({ at: { $lt: new Date(now - olderThanMs) } }));
  return r.deletedCount;
}

/** Milliseconds of a date field for token keys ('-' when unset). */
export function stamp(d: Date | null | undefined): string {
  return d ? String(d.getTime()) : '-';
}
