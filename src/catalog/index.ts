/**
 * The lazy content catalog: where each not-yet-downloaded file can be
 * fetched from. Revisions are replaced safely under concurrent syncs:
 * every replacement takes a fresh revision from an atomic counter, inserts
 * its entries, then deletes only older revisions of the same importer, so
 * a slower concurrent sync can never delete a newer one's entries, and
 * lookups always prefer the newest revision.
 */
import { createHash } from 'node:crypto';
import type { CatalogEntryDoc, CounterDoc, Database } from '../db/index.ts';
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

const revisionPrefix = (importerId: string) => `catalog:${importerId}#`;
const revisionPattern = (importerId: string) =>
  `^${revisionPrefix(importerId).replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`;

/** The importer's newest revision counter (complete or not), or null before its first sync. */
async function newestRevision(db: Database, importerId: string): Promise<CounterDoc | null> {
  const top = await db.counters
    .find({ _id: { $regex: revisionPattern(importerId) } })
    .sort({ value: -1 })
    .limit(1)
    .toArray();
  return top[0] ?? null;
}

/**
 * A fresh, strictly increasing revision number for an importer. Each revision
 * is claimed by inserting `catalog:<importer>#<n>` under the unique `_id`, so
 * two concurrent syncs never get the same number, on MongoDB and on FerretDB
 * (whose `$inc` is not atomic; docs/ferretdb.md).
 */
export async function nextRevision(db: Database, importerId: string): Promise<number> {
  for (let attempt = 0; attempt < 100; attempt++) {
    const next = ((await newestRevision(db, importerId))?.value ?? 0) + 1;
    try {
      await db.counters.insertOne({ _id: `${revisionPrefix(importerId)}${next}`, value: next });
      return next;
    } catch (err) {
      if (!isDuplicateKey(err)) throw err;
    }
  }
  throw new Error(`could not claim a catalog revision for ${importerId}`);
}

/** What identifies a catalog's content: its entries' fields, in path order. */
export function catalogDigest(entries: readonly NewCatalogEntry[]): string {
  const hash = createHash('sha256');
  const sorted = [...entries].sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  for (const e of sorted) {
    const fields = [
      e.path,
      e.url,
      e.unit_id,
      e.unit_type_id,
      e.checksum,
      e.checksum_algorithm,
      e.size ?? null,
    ];
    hash.update(`${JSON.stringify(fields)}\n`);
  }
  return hash.digest('hex');
}

/**
 * Makes `entries` the importer's catalog. Returns the revision in force and
 * whether anything changed. A catalog identical to the newest complete
 * revision (same digest, recorded on its counter once all its entries were
 * written) is left untouched without reading it: on FerretDB any query on
 * the catalog other than by `_id` decodes the whole collection. Older
 * revisions are deleted only when there are some.
 */
export async function replaceCatalog(
  db: Database,
  importerId: string,
  entries: NewCatalogEntry[],
): Promise<{ revision: number; changed: boolean }> {
  const digest = catalogDigest(entries);
  const newest = await newestRevision(db, importerId);
  if (newest?.digest === digest) return { revision: newest.value, changed: false };
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
  if (revision > 1) await db.catalog.deleteMany({ importer_id: importerId, revision: { $lt: revision } });
  await db.counters.updateOne(
    { _id: `${revisionPrefix(importerId)}${revision}` },
    { $set: { digest, entries: entries.length } },
  );
  return { revision, changed: true };
}

/** Removes every entry of an importer (repository deletion), and the digests that described them. */
export async function purgeImporter(db: Database, importerId: string): Promise<number> {
  const r = await db.catalog.deleteMany({ importer_id: importerId });
  await db.counters.updateMany(
    { _id: { $regex: revisionPattern(importerId) } },
    { $unset: { digest: '', entries: '' } },
  );
  return r.deletedCount;
}
