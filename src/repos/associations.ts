/**
 * Content associations (repo_content_units): which unit a repository
 * publishes at each relative path. The sync works out the changes
 * (src/importers/sync.ts) and writes them through here; src/repos/ is the
 * only writer of repositories and their associations
 * (test/collection-owners.test.ts).
 */
import { ObjectId } from 'mongodb';
import { retryBusy } from '../db/busy.ts';
import type { Database, RepoContentUnitDoc } from '../db/index.ts';
import { markUnassociated } from '../storage/units.ts';

/**
 * Deletes associations by `_id` (hex strings), in one unordered bulk write;
 * `unitIds` are their units, whose orphan protection starts again first.
 */
export async function deleteAssociations(
  db: Database,
  ids: readonly string[],
  unitIds: readonly string[],
): Promise<void> {
  if (ids.length === 0) return;
  await markUnassociated(db, unitIds);
  const ops = ids.map((id) => ({ deleteOne: { filter: { _id: new ObjectId(id) } } }));
  await retryBusy(() => db.repoContentUnits.bulkWrite(ops, { ordered: false }));
}

/** Inserts associations (repo_id + relative_path is unique: a path's old one must be gone). */
export async function insertAssociations(db: Database, docs: RepoContentUnitDoc[]): Promise<void> {
  if (docs.length === 0) return;
  await retryBusy(() => db.repoContentUnits.insertMany(docs, { ordered: false }));
}

/** Deletes every association of a repository (its deletion), once its units are marked unassociated. */
export async function deleteRepoAssociations(db: Database, repoId: string): Promise<void> {
  const unitIds = await retryBusy(() => db.repoContentUnits.distinct('unit_id', { repo_id: repoId }));
  await markUnassociated(db, unitIds);
  await retryBusy(() => db.repoContentUnits.deleteMany({ repo_id: repoId }));
}
