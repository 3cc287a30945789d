/**
 * Conditional writes to one document named by `_id` that stay cheap on
 * FerretDB.
 *
 * FerretDB 1.24 (SQLite) hands SQLite only filters that are exactly
 * `{ _id: <string|ObjectId> }`; any other filter, even `{ _id, state }`,
 * reads and decodes the whole collection in Go, so a conditional update
 * costs time in proportion to the collection (on a queue of ten thousand
 * entries, more than a second). There, these helpers read the document by `_id`, check
 * the condition here, and write by `_id` alone. That is what FerretDB does
 * internally anyway (its conditional updates are not atomic either, see
 * docs/ferretdb.md), so nothing is lost: races on it are decided by unique
 * inserts elsewhere. On MongoDB the condition goes into the filter as usual
 * and the write stays atomic.
 */
import type { Collection, Document, Filter, UpdateFilter, WithId } from 'mongodb';
import { matches } from './match.ts';

/** Which server we talk to; decides how conditional writes are sent. */
export type ServerKind = 'mongodb' | 'ferretdb';

/** updateOne({ _id: id, ...cond }, update); true when the document matched. */
export async function updateOneById<T extends Document>(
  server: ServerKind,
  coll: Collection<T>,
  id: WithId<T>['_id'],
  cond: Filter<T>,
  update: UpdateFilter<T>,
): Promise<boolean> {
  const byId = { _id: id } as Filter<T>;
  if (server === 'mongodb') return (await coll.updateOne({ ...byId, ...cond }, update)).matchedCount > 0;
  const current = await coll.findOne(byId);
  if (!current || !matches(current, cond as Record<string, unknown>)) return false;
  return (await coll.updateOne(byId, update)).matchedCount > 0;
}

/**
 * Which of `ids` name a document in `coll`. MongoDB: `$in` queries of 1,000
 * ids. FerretDB decodes the whole collection for an `$in` query, and takes
 * about half a millisecond per read by `_id`: when the collection holds no
 * more than 4 documents per id asked, one scan of it is cheaper (a first sync
 * into an empty collection costs nothing); otherwise the scan is cut short
 * and each id is read by `_id`, 32 at a time.
 */
export async function existingIds<T extends Document & { _id: string }>(
  server: ServerKind,
  coll: Collection<T>,
  ids: readonly string[],
): Promise<Set<string>> {
  const found = new Set<string>();
  if (server === 'mongodb') {
    for (let i = 0; i < ids.length; i += 1000) {
      const filter = { _id: { $in: ids.slice(i, i + 1000) } } as Filter<T>;
      for (const d of await coll.find(filter, { projection: { _id: 1 } }).toArray())
        found.add(d._id as string);
    }
    return found;
  }
  // The scan stops as soon as it has read more than 4 documents per id (counting is a scan too).
  const wanted = new Set(ids);
  let seen = 0;
  let complete = true;
  for await (const d of coll.find({}, { projection: { _id: 1 }, batchSize: 1000 })) {
    if (++seen > 4 * ids.length) {
      complete = false;
      break;
    }
    if (wanted.has(d._id)) found.add(d._id);
  }
  if (complete) return found;
  return existingById(coll, ids);
}

/** Which of `ids` name a document in `coll`, by one read by `_id` each, 32 at a time. */
export async function existingById<T extends Document & { _id: string }>(
  coll: Collection<T>,
  ids: readonly string[],
): Promise<Set<string>> {
  const found = new Set<string>();
  let next = 0;
  const worker = async () => {
    while (next < ids.length) {
      const id = ids[next++]!;
      if (await coll.findOne({ _id: id } as Filter<T>, { projection: { _id: 1 } })) found.add(id);
    }
  };
  await Promise.all(Array.from({ length: Math.min(32, ids.length) }, worker));
  return found;
}
