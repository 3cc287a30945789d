/**
 * The lazy content catalog: where each not-yet-downloaded file can be
 * fetched from. Revisions are replaced safely under concurrent syncs:
 * every replacement takes a fresh revision from an atomic counter, inserts
 * its entries, then deletes only older revisions of the same importer, so
 * a slower concurrent sync can never delete a newer one's entries, and
 * lookups always prefer the newest revision.
 */
import type { CatalogEntryDoc, Database } from '../db/index.ts';
import { isDuplicateKey } from '../errors.ts';

export type NewCatalogEntry = Omit<CatalogEntryDoc, '_id' | 'revision' | 'importer_id'>;

/**
 * The `_id` of an importer's entry for `path` in `revision`. Deterministic so
 * that a lookup is a read by `_id`, the one query FerretDB answers without
 * reading the whole collection (see reader.ts).
 */
export function catalogEntryId(importerId: string, revision: number, path: string): string {
  return `${importerId}#${revision}:${path}`;
}

/**
 * A fresh, strictly increasing revision number for an importer. Each revision
 * is claimed by inserting `catalog:<importer>#<n>` under the unique `_id`, so
 * two concurrent syncs never get the same number, on MongoDB and on FerretDB
 * (whose `$inc` is not atomic; docs/ferretdb.md).
 */
export async function nextRevision(db: Database, importerId: string): Promise<number> {
  const prefix = `catalog:${importerId}#`;
  const pattern = `^${prefix.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`;
  for (let attempt = 0; attempt < 100; attempt++) {
    const top = await db.counters
      .find({ _id: { $regex: pattern } })
      .sort({ value: -1 })
      .limit(1)
      .toArray();
    const next = (top[0]?.value ?? 0) + 1;
    try {
      await db.counters.insertOne({ _id: `${prefix}${next}`, value: next });
      return next;
    } catch (err) {
      if (!isDuplicateKey(err)) throw err;
    }
  }
  throw new Error(`could not claim a catalog revision for ${importerId}`);
}

const sameEntry = (a: NewCatalogEntry, b: NewCatalogEntry) =>
  a.path === b.path &&
  a.url === b.url &&
  a.unit_id === b.unit_id &&
  a.unit_type_id === b.unit_type_id &&
  a.checksum === b.checksum &&
  a.checksum_algorithm === b.checksum_algorithm &&
  a.size === b.size;

/**
 * Makes `entries` the importer's catalog. Returns the revision in force and
 * whether anything changed (an identical catalog is left untouched).
 */
export async function replaceCatalog(
  db: Database,
  importerId: string,
  entries: NewCatalogEntry[],
): Promise<{ revision: number; changed: boolean }> {
  const current = await db.catalog.find({ importer_id: importerId }).sort({ revision: -1 }).toArray();
  const newest = current[0]?.revision;
  if (
    newest !== undefined &&
    current.every((e) => e.revision === newest) &&
    current.length === entries.length
  ) {
    const byPath = new Map(current.map((e) => [e.path, e]));
    if (entries.every((e) => byPath.has(e.path) && sameEntry(byPath.get(e.path)!, e))) {
      return { revision: newest, changed: false };
    }
  }
  const revision = await nextRevision(db, importerId);
  const BATCH = 1000;
  for (let i = 0; i < entries.length; i += BATCH) {
    const docs = entries.slice(i, i + BATCH).map((e) => ({
      ...e,
      _id: catalogEntryId(importerId, revision, e.path),
      importer_id: importerId,
      revision,
    }));
    await db.catalog.insertMany(docs, { ordered: false });
  }
  await db.catalog.deleteMany({ importer_id: importerId, revision: { $lt: revision } });
  return { revision, changed: true };
}

/** Removes every entry of an importer (repository deletion). */
export async function purgeImporter(db: Database, importerId: string): Promise<number> {
  const r = await db.catalog.deleteMany({ importer_id: importerId });
  return r.deletedCount;
}
