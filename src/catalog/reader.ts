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
 */
import type { CatalogEntryDoc, Database } from '../db/index.ts';
import { catalogEntryId } from './index.ts';

interface ImporterRevision {
  importer_id: string;
  revision: number;
}

export class CatalogReader {
  private revisions: { at: number; list: Promise<ImporterRevision[]> } | undefined;
  private refreshing = false;

  constructor(
    private readonly db: Database,
    private readonly opts: { ttlMs?: number; clock?: () => number } = {},
  ) {}

  /** Every entry offering `path`, newest revision first. */
  async entries(path: string): Promise<CatalogEntryDoc[]> {
    let hits = await this.byId(path, await this.currentRevisions());
    if (hits.length === 0 && this.revisions && this.revisions.at < (this.opts.clock ?? Date.now)()) {
      // A sync may have moved a revision on since the cache was filled: read them again, once.
      this.invalidate();
      hits = await this.byId(path, await this.currentRevisions());
    }
    this.refreshIfExpired();
    if (hits.length > 0) return hits.sort((a, b) => b.revision - a.revision);
    return this.db.catalog.find({ path }).sort({ revision: -1, _id: -1 }).toArray();
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
    return this.revisions ? this.revisions.list : this.read((this.opts.clock ?? Date.now)());
  }

  /**
   * Past `ttlMs`, reads the revisions again in the background; lookups go on
   * with the ones in hand meanwhile (a miss by `_id` re-reads them at once
   * anyway, see entries()). Called once a lookup's reads are done, not
   * beside them: on FerretDB a concurrent query makes the lookup itself ~1 ms
   * slower, and that is a miss's first byte.
   */
  private refreshIfExpired(): void {
    const now = (this.opts.clock ?? Date.now)();
    if (!this.revisions || now - this.revisions.at <= (this.opts.ttlMs ?? 2000) || this.refreshing) return;
    this.refreshing = true;
    void this.read(now, this.revisions.list).finally(() => {
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
