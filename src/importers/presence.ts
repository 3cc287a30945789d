/**
 * Which of a sync plan's units exist already (sync.ts writeUnits), asked in
 * the plan's `_id` order, by the cheapest means the server offers.
 */
import { type Database, existingById, existingIds } from '../db/index.ts';
import type { Plan } from './plan.ts';

/**
 * Which of the plan's units exist already, asked batch by batch in `_id`
 * order. MongoDB: `$in` queries (existingIds). FerretDB decodes the whole
 * collection for those: when it holds no more than 4 documents per planned
 * unit, one scan of its `_id`s (spooled and sorted, then merged with the
 * plan's order) answers every batch; otherwise the scan is cut short and
 * each `_id` is read (existingById).
 */
export class UnitPresence {
  private constructor(
    private readonly db: Database,
    private readonly scanned: AsyncIterator<string> | undefined,
  ) {}

  #current: IteratorResult<string> | undefined;

  static async open(db: Database, plan: Plan): Promise<UnitPresence> {
    if (db.server === 'mongodb') return new UnitPresence(db, undefined);
    const ids = plan.spool<string>((id) => id);
    let seen = 0;
    for await (const d of db.units.find({}, { projection: { _id: 1 }, batchSize: 1000 })) {
      if (++seen > 4 * plan.units.count) {
        await ids.discard();
        return new UnitPresence(db, undefined);
      }
      await ids.add(d._id);
    }
    return new UnitPresence(db, ids.sorted());
  }

  /** Ends the read of the scanned `_id`s (its files are closed). */
  async close(): Promise<void> {
    await this.scanned?.return?.(undefined);
  }

  /** The ones of `ids` (sorted, each above those of the previous call) that exist. */
  async existing(ids: string[]): Promise<Set<string>> {
    if (!this.scanned) {
      return this.db.server === 'mongodb'
        ? existingIds(this.db.server, this.db.units, ids)
        : existingById(this.db.units, ids);
    }
    const found = new Set<string>();
    for (const id of ids) {
      this.#current ??= await this.scanned.next();
      while (!this.#current.done && this.#current.value < id) this.#current = await this.scanned.next();
      if (!this.#current.done && this.#current.value === id) found.add(id);
    }
    return found;
  }
}
