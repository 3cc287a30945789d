/**
 * What the streamer needs from lazy_content_catalog and repos: the entries
 * offering a storage path (newest revision first), the repository whose
 * importer made an entry, and marking an entry whose bytes failed
 * verification so it is skipped for a while (written by
 * src/catalog/failures.ts, the catalog's owner).
 *
 * Lookups go through a small cache (createCatalogLookup): on the dev
 * database (FerretDB/SQLite) a filter on `path` scans and decodes the whole
 * collection, so concurrent lookups of one path share one query
 * (single-flight) and found entries are kept for a few seconds. Misses are
 * never cached (a path synced a moment later is found at once); marking an
 * entry failed drops its path from the cache.
 */
import { markEntryFailed } from '../catalog/failures.ts';
import { CatalogReader } from '../catalog/reader.ts';
import type { CatalogEntryDoc, Database, RepoDoc } from '../db/index.ts';
import { policyInForce } from '../repos/index.ts';

/** Entries not cooling down after a verification failure. */
export function usableEntries(entries: CatalogEntryDoc[], now: number): CatalogEntryDoc[] {
  return entries.filter((e) => !e.failed_until || e.failed_until.getTime() <= now);
}

/** The repository whose importer id is `importerId` (null when it was deleted). */
export async function findRepo(db: Database, importerId: string): Promise<RepoDoc | null> {
  return db.repos.findOne({ importer_id: importerId });
}

/**
 * Whether the entry's repository has the `streamed` download policy (Pulp 3):
 * its misses are streamed but neither saved nor queued. The policy in force
 * is the one of the last sync (a `repo update --policy` waits for the next one).
 */
export async function isStreamed(
  catalog: Pick<CatalogLookup, 'repo'>,
  entry: CatalogEntryDoc,
): Promise<boolean> {
  const repo = await catalog.repo(entry.importer_id);
  return repo !== null && policyInForce(repo) === 'streamed';
}

/** How long found entries and repositories are reused. */
export const CATALOG_CACHE_MS = 3000;
/** Cached paths kept at most (oldest dropped first). */
const MAX_CACHED = 10_000;

export interface CatalogLookup {
  /** Every catalog entry for a storage path, newest revision first (CatalogReader), through the cache. */
  entries(storagePath: string): Promise<CatalogEntryDoc[]>;
  /** findRepo() through the cache. */
  repo(importerId: string): Promise<RepoDoc | null>;
  /** markEntryFailed(), then forgets the entry's path. */
  markFailed(entry: CatalogEntryDoc, error: string, until: Date): Promise<void>;
  /** Forgets what is cached for `storagePath`. */
  forget(storagePath: string): void;
}

export function createCatalogLookup(
  db: Database,
  opts: { clock: () => number; ttlMs?: number },
): CatalogLookup {
  const ttl = opts.ttlMs ?? CATALOG_CACHE_MS;
  const reader = new CatalogReader(db, { clock: opts.clock });
  const entries = new SingleFlightCache<CatalogEntryDoc[]>(ttl, opts.clock, (v) => v.length > 0);
  // Repositories change rarely: just past the ttl the one in hand still serves while it is read
  // again; older than twice the ttl it is read first, so a `repo update` (a rotated certificate, a
  // new header) is used by every request from 2 × ttl after it on, however idle the streamer was.
  const repos = new SingleFlightCache<RepoDoc | null>(ttl, opts.clock, (v) => v !== null, ttl);
  return {
    entries: (p) => entries.get(p, () => reader.entries(p)),
    repo: (id) => repos.get(id, () => findRepo(db, id)),
    async markFailed(entry, error, until) {
      try {
        await markEntryFailed(db, entry, error, until);
      } finally {
        entries.forget(entry.path);
      }
    },
    forget: (p) => entries.forget(p),
  };
}

/**
 * Concurrent get()s of one key share one load; loaded values worth keeping
 * live `ttl` ms. For `staleMs` past that, an expired value is still returned
 * while it is loaded again in the background (the next get()s see the new
 * value, or none if it is no longer worth keeping); older ones are loaded
 * before they are returned.
 */
class SingleFlightCache<V> {
  private readonly loading = new Map<string, Promise<V>>();
  private readonly values = new Map<string, { value: V; until: number }>();
  /** Bumped by forget(): a load started before it must not fill the cache. */
  private generation = 0;

  constructor(
    private readonly ttl: number,
    private readonly clock: () => number,
    private readonly keep: (v: V) => boolean,
    private readonly staleMs = 0,
  ) {}

  get(key: string, load: () => Promise<V>): Promise<V> {
    const hit = this.values.get(key);
    if (hit) {
      const now = this.clock();
      if (hit.until > now) return Promise.resolve(hit.value);
      if (hit.until + this.staleMs > now) {
        if (!this.loading.has(key)) this.load(key, load).catch(() => {});
        return Promise.resolve(hit.value);
      }
      this.values.delete(key);
    }
    return this.loading.get(key) ?? this.load(key, load);
  }

  private load(key: string, load: () => Promise<V>): Promise<V> {
    const generation = this.generation;
    const p = load().then(
      (value) => {
        if (this.loading.get(key) === p) this.loading.delete(key);
        if (generation === this.generation && this.ttl > 0 && this.keep(value)) {
          const now = this.clock();
          // Oldest first (insertion order): drop the expired ones and, past MAX_CACHED, the oldest.
          for (const [k, v] of this.values) {
            if (v.until > now && this.values.size < MAX_CACHED) break;
            this.values.delete(k);
          }
          this.values.delete(key);
          this.values.set(key, { value, until: now + this.ttl });
        } else if (generation === this.generation) {
          this.values.delete(key);
        }
        return value;
      },
      (err: unknown) => {
        if (this.loading.get(key) === p) this.loading.delete(key);
        throw err;
      },
    );
    this.loading.set(key, p);
    return p;
  }

  forget(key: string): void {
    this.generation++;
    this.values.delete(key);
    this.loading.delete(key);
  }
}
