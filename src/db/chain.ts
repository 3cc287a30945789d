/**
 * Lease chains: mutual exclusion between processes that share one database,
 * decided by unique inserts only (the one write FerretDB 1.24 applies
 * atomically; see docs/ferretdb.md).
 *
 * A chain is a sequence of lease documents per key, `<prefix><key>#1`,
 * `#2`, ... A claim reads the chain from the start and inserts the first
 * generation that does not exist yet, provided every earlier one is
 * released (a `<id>:released` marker exists) or expired. Two claimers that
 * race insert the same _id, and exactly one insert succeeds; a loser writes
 * nothing. The holder renews its expiry (only it writes its document) and
 * releases by inserting the marker. A holder whose lease expired and was
 * taken over sees the next generation and knows it lost.
 *
 * Used for unit downloads (src/queue/units.ts) and for the streamers'
 * shared single-flight (src/streamer/shared-flight.ts). The collection
 * belongs to the module that names it here: `new LeaseChain(db, NAME, ...)`
 * is its write (test/collection-owners.test.ts).
 */
import type { Collection } from 'mongodb';
import { isDuplicateKey } from '../errors.ts';
import { retryBusy } from './busy.ts';
import { updateOneById } from './by-id.ts';
import type { Database } from './index.ts';

/** A held lease of one chain. */
export interface ChainLease {
  key: string;
  gen: number;
  owner: string;
}

/** A lease document: the key under the chain's own field name, plus what the holder attached. */
export interface ChainDoc {
  _id: string;
  gen: number;
  owner: string;
  expires_at: Date;
  [field: string]: unknown;
}

export type Acquired =
  | { kind: 'won'; gen: number }
  | { kind: 'busy'; owner: string; expiresAt: Date; doc: ChainDoc };

export class LeaseChain {
  private readonly coll: Collection<ChainDoc>;

  /**
   * `prefix` starts every _id (`u:` for units); `keyField` names the field
   * that holds the key in each document (`unit_id` for units).
   */
  constructor(
    private readonly db: Database,
    collection: string,
    private readonly prefix: string,
    private readonly keyField: string,
  ) {
    this.coll = db.db.collection<ChainDoc>(collection);
  }

  id(key: string, gen: number): string {
    return `${this.prefix}${key}#${gen}`;
  }

  private releasedId(key: string, gen: number): string {
    return `${this.id(key, gen)}:released`;
  }

  /** Walks the chain of `key` and inserts the first free generation, unless one is live. */
  async acquire(
    key: string,
    owner: string,
    leaseMs: number,
    clock: () => number,
    extra: Record<string, unknown> = {},
  ): Promise<Acquired> {
    for (let gen = 1; ; gen++) {
      let doc = await this.read(key, gen);
      if (!doc) {
        try {
          await retryBusy(() =>
            this.coll.insertOne({
              ...extra,
              _id: this.id(key, gen),
              [this.keyField]: key,
              gen,
              owner,
              expires_at: new Date(clock() + leaseMs),
            }),
          );
          return { kind: 'won', gen };
        } catch (err) {
          if (!isDuplicateKey(err)) throw err;
          doc = await this.read(key, gen);
          if (!doc) throw err;
        }
      }
      if (doc.expires_at.getTime() > clock() && !(await this.isReleased(key, gen))) {
        return { kind: 'busy', owner: doc.owner, expiresAt: doc.expires_at, doc };
      }
    }
  }

  private read(key: string, gen: number): Promise<ChainDoc | null> {
    return retryBusy(() => this.coll.findOne({ _id: this.id(key, gen) }));
  }

  async isReleased(key: string, gen: number): Promise<boolean> {
    const id = this.releasedId(key, gen);
    return (await retryBusy(() => this.coll.findOne({ _id: id }, { projection: { _id: 1 } }))) !== null;
  }

  /** A later generation exists: the lease expired and someone took the key over. */
  async takenOver(lease: ChainLease): Promise<boolean> {
    const id = this.id(lease.key, lease.gen + 1);
    return (await retryBusy(() => this.coll.findOne({ _id: id }, { projection: { _id: 1 } }))) !== null;
  }

  /** Ends the lease (idempotent). */
  async release(lease: ChainLease, clock: () => number): Promise<void> {
    try {
      await retryBusy(() =>
        this.coll.insertOne({
          _id: this.releasedId(lease.key, lease.gen),
          [this.keyField]: lease.key,
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
   * Extends the lease (the holder's own write of its document, by _id and
   * owner); false when it is lost (released, or taken over after it expired).
   */
  async renew(lease: ChainLease, leaseMs: number, clock: () => number): Promise<boolean> {
    const expires = new Date(clock() + leaseMs);
    const id = this.id(lease.key, lease.gen);
    const written = await retryBusy(() =>
      updateOneById(this.db.server, this.coll, id, { owner: lease.owner }, { $set: { expires_at: expires } }),
    );
    if (!written) return false;
    if (await this.takenOver(lease)) return false;
    return !(await this.isReleased(lease.key, lease.gen));
  }
}
