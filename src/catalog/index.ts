/**
 * The lazy content catalog: where each not-yet-downloaded file can be
 * fetched from. Revisions are replaced safely under concurrent syncs:
 * every replacement takes a fresh revision from an atomic counter, inserts
 * its entries, then deletes only older revisions of the same importer, so
 * a slower concurrent sync can never delete a newer one's entries, and
 * lookups always prefer the newest revision.
 */
import { createHash } from 'node:crypto';
import { retryBusy } from '../db/busy.ts';
import { type CatalogEntryDoc, type CounterDoc, chunked, type Database } from '../db/index.ts';
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
      await retryBusy(() =>
        db.counters.insertOne({ _id: `${revisionPrefix(importerId)}${next}`, value: next }),
      );
      return next;
    } catch (err) {
      if (!isDuplicateKey(err)) throw err;
    }
  }
  throw new Error(`could not claim a catalog revision for ${importerId}`);
}

/** The digest of a catalog's entries, given in path order (see catalogDigest). */
export class CatalogHasher {
  readonly #hash = createHash('sha256');

  add(e: NewCatalogEntry): void {
    const fields = [
      e.path,
      e.url,
      e.unit_id,
      e.unit_type_id,
      e.checksum,
      e.checksum_algorithm,
      e.size ?? null,
    ];
    this.#hash.update(`${JSON.stringify(fields)}\n`);
  }

  digest(): string {
    return this.#hash.digest('hex');
  }
}

const byPath = (a: NewCatalogEntry, b: NewCatalogEntry) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);

/** What identifies a catalog's content: its entries' fields, in path order. */
export function catalogDigest(entries: readonly NewCatalogEntry[]): string {
  const hash = new CatalogHasher();
  for (const e of [...entries].sort(byPath)) hash.add(e);
  return hash.digest();
}

/**
 * Writes the importer's catalog, whose digest (catalogDigest) is `digest`, as
 * a new revision: unless the newest revision was completed with that digest
 * (recorded on its counter by completeCatalog once all its entries were
 * written), in which case nothing is written: on FerretDB any query on the
 * catalog other than by `_id` decodes the whole collection, so it is not read.
 * `entries` is read once, WRITE_CHUNK entries per insert, and must not list a
 * path twice. The new revision is not complete, nor in force, until the
 * caller says so (completeCatalog, the repository's last_sync).
 */
export async function writeCatalog(
  db: Database,
  importerId: string,
  digest: string,
  entries: AsyncIterable<NewCatalogEntry> | Iterable<NewCatalogEntry>,
): Promise<{ revision: number; changed: boolean }> {
  const newest = await newestRevision(db, importerId);
  if (newest?.digest === digest) return { revision: newest.value, changed: false };
  const revision = await nextRevision(db, importerId);
  for await (const chunk of chunked(entries)) {
    const docs = chunk.map((e) => ({
      ...e,
      _id: catalogEntryId(importerId, revision, e.path),
      importer_id: importerId,
      revision,
    }));
    await retryBusy(() => db.catalog.insertMany(docs, { ordered: false }));
  }
  return { revision, changed: true };
}

/** Records that every entry of `revision` is written: an identical catalog is recognised from now on. */
export async function completeCatalog(
  db: Database,
  importerId: string,
  revision: number,
  digest: string,
  entries: number,
): Promise<void> {
  await retryBusy(() =>
    db.counters.updateOne({ _id: `${revisionPrefix(importerId)}${revision}` }, { $set: { digest, entries } }),
  );
}

/**
 * Deletes the entries of the importer's revisions older than `revision` (once
 * that one is in force): at once when `keepMs` is 0; otherwise each older
 * revision is marked superseded (its counter's `superseded_at`, the first
 * time) and its entries are deleted once it has been superseded for
 * `keepMs`, so that the links of the trees kept through a sync
 * (publish.keep_previous, src/publish/keep.ts) to files not downloaded yet
 * are still found by the streamer (CatalogReader finds them by path). A
 * revision's entries deleted, its counter is marked `retired` and is not
 * looked at again.
 */
export async function retireOlderRevisions(
  db: Database,
  importerId: string,
  revision: number,
  opts: { keepMs?: number; now?: Date } = {},
): Promise<void> {
  if (revision <= 1) return;
  const keepMs = opts.keepMs ?? 0;
  if (keepMs <= 0) {
    await retryBusy(() => db.catalog.deleteMany({ importer_id: importerId, revision: { $lt: revision } }));
    return;
  }
  const now = opts.now ?? new Date();
  const older = {
    _id: { $regex: revisionPattern(importerId) },
    value: { $lt: revision },
    retired: { $ne: true },
  };
  const counters = await db.counters.find(older).toArray();
  const fresh = counters.filter((c) => !c.superseded_at).map((c) => c._id);
  if (fresh.length > 0)
    await retryBusy(() => db.counters.updateMany({ _id: { $in: fresh } }, { $set: { superseded_at: now } }));
  const due = counters.filter((c) => c.superseded_at && c.superseded_at.getTime() + keepMs <= now.getTime());
  if (due.length === 0) return;
  const revisions = due.map((c) => c.value);
  await retryBusy(() => db.catalog.deleteMany({ importer_id: importerId, revision: { $in: revisions } }));
  await retryBusy(() =>
    db.counters.updateMany({ _id: { $in: due.map((c) => c._id) } }, { $set: { retired: true } }),
  );
}

/** Deletes the entries of a revision that will never be in force (its sync failed). */
export async function discardRevision(db: Database, importerId: string, revision: number): Promise<void> {
  await retryBusy(() => db.catalog.deleteMany({ importer_id: importerId, revision }));
}

/**
 * Makes `entries` the importer's catalog at once (writeCatalog, then older
 * revisions deleted and the new one completed). Returns the revision in force
 * and whether anything changed.
 */
export async function replaceCatalog(
  db: Database,
  importerId: string,
  entries: NewCatalogEntry[],
): Promise<{ revision: number; changed: boolean }> {
  const digest = catalogDigest(entries);
  const written = await writeCatalog(db, importerId, digest, entries);
  if (!written.changed) return written;
  await retireOlderRevisions(db, importerId, written.revision);
  await completeCatalog(db, importerId, written.revision, digest, entries.length);
  return written;
}

/** Removes every entry of an importer (repository deletion), and the digests that described them. */
export async function purgeImporter(db: Database, importerId: string): Promise<number> {
  const r = await retryBusy(() => db.catalog.deleteMany({ importer_id: importerId }));
  await retryBusy(() =>
    db.counters.updateMany(
      { _id: { $regex: revisionPattern(importerId) } },
      { $unset: { digest: '', entries: '' } },
    ),
  );
  return r.deletedCount;
}

/** Removes every entry of these units (orphans; any importer), WRITE_CHUNK units per delete; how many went. */
export async function deleteUnitEntries(db: Database, unitIds: readonly string[]): Promise<number> {
  let deleted = 0;
  for await (const ids of chunked(unitIds)) {
    deleted += (await retryBusy(() => db.catalog.deleteMany({ unit_id: { $in: ids } }))).deletedCount;
  }
  return deleted;
}
