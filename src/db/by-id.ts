/**
 * Conditional writes to one document named by `_id` that stay cheap on
 * FerretDB.
 *
 * FerretDB 1.24 (SQLite) hands SQLite only filters that are exactly
 * `{ _id: <string|ObjectId> }`; any other filter, even `{ _id, state }`,
 * reads and decodes the whole collection in Go (measured: ~150 µs per
 * document, so a conditional update on a 10,000-entry queue costs more
 * than a second). There, these helpers read the document by `_id`, check
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
