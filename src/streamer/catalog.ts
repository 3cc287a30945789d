/**
 * What the streamer needs from lazy_content_catalog and repos: the entries
 * offering a storage path (newest revision first), the repository whose
 * importer made an entry, and marking an entry whose bytes failed
 * verification so it is skipped for a while.
 */
import type { CatalogEntryDoc, Database, RepoDoc } from '../db/index.ts';

/** Every catalog entry for `storagePath`, newest revision first (several importers may offer it). */
export async function findEntries(db: Database, storagePath: string): Promise<CatalogEntryDoc[]> {
  return db.catalog.find({ path: storagePath }).sort({ revision: -1, _id: -1 }).toArray();
}

/** Entries not cooling down after a verification failure. */
export function usableEntries(entries: CatalogEntryDoc[], now: number): CatalogEntryDoc[] {
  return entries.filter((e) => !e.failed_until || e.failed_until.getTime() <= now);
}

/** The repository whose importer id is `importerId` (null when it was deleted). */
export async function findRepo(db: Database, importerId: string): Promise<RepoDoc | null> {
  return db.repos.findOne({ importer_id: importerId });
}

/** Skips `entry` until `until` and records why. */
export async function markEntryFailed(
  db: Database,
  entry: CatalogEntryDoc,
  error: string,
  until: Date,
): Promise<void> {
  const filter = entry._id
    ? { _id: entry._id }
    : { path: entry.path, importer_id: entry.importer_id, revision: entry.revision };
  await db.catalog.updateOne(filter, { $set: { failed_until: until, last_error: error } });
}
