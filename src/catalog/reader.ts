/**
 * Catalog lookups by storage path that stay cheap on every server.
 *
 * The entries in force are those of each importer's current revision,
 * which the repository records after a sync (`repos.last_sync.revision`).
 * Entry ids are derived from (importer, revision, path), so a lookup is one
 * read by `_id` per importer: FerretDB answers those from SQLite directly,
 * while a query on `path` makes it decode the whole collection (about a
 * second per 5,000 entries). The revisions are cached for `ttlMs` (then read
 * again in the background, after the lookup that found them expired, while
 * the lookups go on with them); when the
 * reads by `_id` find nothing, the revisions are read again at once (a sync
 * may just have replaced one) and the reads repeated; if they still find
 * nothing (entries written by other means, or the path is simply unknown),
 * the lookup falls back to the query on `path`, which is always right but,
 * on FerretDB, as slow as the catalog is large.
 *
 * On MongoDB itself (strategy 'by_path', chosen from Database.server) that
 * query is answered from the path_importer_revision index, so a lookup is
 * that one query, whatever the number of importers (by `_id` it would be one
 * read per importer: on FerretDB, 1 ms with one repository, 13 ms with 50);
 * the entries of the current revisions are kept from it, with the same
 * re-read of the revisions and the same fallback to every entry found.
 */
import type { CatalogEntryDoc, Database } from '../db/index.ts';
import { catalogEntryId } from './index.ts';

interface ImporterRevision {
  importer_id: string;
  revision: number;
}

/** How a lookup reads the catalog (see the module comment). */
export type LookupStrategy = 'by_id' | 'by_path';

export class CatalogReader {
  private revisions: { at: number; list: Promise<ImporterRevision[]> } | undefined;
  private refreshing = false;
  private readonly strategy: LookupStrategy;

  constructor(
    private readonly db: Database,
    private readonly opts: { ttlMs?: number; clock?: () => number; strategy?: LookupStrategy } = {},
  ) {
    this.strategy = opts.strategy ?? (db.server === 'ferretdb' ? 'by_id' : 'by_path');
  }

  /** Every entry offering `path`, newest revision first. */
  async entries(path: string): Promise<CatalogEntryDoc[]> {
    // by_path: every entry of the path in one query, then those in force; by_id: a read per importer.
    const all = this.strategy === 'by_path' ? await this.byPath(path) : undefined;
    if (all?.length === 0) return all;
    const inForce = async (current: ImporterRevision[]) =>
      all
        ? all.filter((e) => current.some((r) => r.importer_id === e.importer_id && r.revision === e.revision))
        : this.byId(path, current);
    let hits = await inForce(await this.currentRevisions());
    if (hits.length === 0 && this.revisions && this.revisions.at < this.now()) {
      // A sync may have moved a revision on since the cache was filled: read them again, once.
      this.invalidate();
      hits = await inForce(await this.currentRevisions());
    }
    this.refreshIfExpired();
    if (hits.length > 0) return hits.sort((a, b) => b.revision - a.revision);
    return all ?? this.byPath(path);
  }

  /** Every entry of `path`, newest revision first (on FerretDB: a scan of the catalog). */
  private byPath(path: string): Promise<CatalogEntryDoc[]> {
    return this.db.catalog.find({ path }).sort({ revision: -1, _id: -1 }).toArray();
  }

  private now(): number {
    return (this.opts.clock ?? Date.now)();
  }

  private async byId(path: string, current: ImporterRevision[]): Promise<CatalogEntryDoc[]> {
    const found = await Promise.all(
      current.map((r) => this.db.catalog.findOne({ _id: catalogEntryId(r.importer_id, r.revision, path) })),
    );
    return found.filter((e) => e !== null);
  }

  /** Forgets the cached revisions (after a sync in this process). */
  invalidate(): void {
    this.revisions = undefined;
  }

  /** The revisions in hand, read first when there are none. */
  private currentRevisions(): Promise<ImporterRevision[]> {
    return this.revisions ? this.revisions.list : this.read(this.now());
  }

  /**
   * Past `ttlMs`, reads the revisions again in the background; lookups go on
   * with the ones in hand meanwhile (a miss by `_id` re-reads them at once
   * anyway, see entries()). Called once a lookup's reads are done, not
   * beside them: on FerretDB a concurrent query makes the lookup itself ~1 ms
   * slower, and that is a miss's first byte.
   */
  private refreshIfExpired(): void {
    const now = this.now();
    if (!this.revisions || now - this.revisions.at <= (this.opts.ttlMs ?? 2000) || this.refreshing) return;
    this.refreshing = true;
    // A failed read is dropped in read() (the next lookup reads again); it must not reject here,
    // where nobody awaits it: an unhandled rejection ends the daemon.
    void this.read(now, this.revisions.list)
      .catch(() => {})
      .finally(() => {
        this.refreshing = false;
      });
  }

  /**
   * Reads the revisions; they replace the ones in hand once read (at once
   * when `held` is not given). A failed read is not kept.
   */
  private read(now: number, held?: Promise<ImporterRevision[]>): Promise<ImporterRevision[]> {
    const list = this.db.repos
      .find({}, { projection: { importer_id: 1, last_sync: 1 } })
      .toArray()
      .then((repos) =>
        repos.flatMap((r) =>
          r.last_sync ? [{ importer_id: r.importer_id, revision: r.last_sync.revision }] : [],
        ),
      );
    if (!held) this.revisions = { at: now, list };
    list.then(
      () => {
        // Not after invalidate() or a newer read: the list in hand is no longer `held` then.
        if (held && this.revisions?.list === held) this.revisions = { at: now, list };
      },
      () => {
        if (this.revisions?.list === list) this.revisions = undefined;
      },
    );
    return list;
  }
}
