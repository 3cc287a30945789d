/**
 * When each stored unit file was last served (`unit_access`, one document
 * per storage path: `{_id: <storage path>, last_served_at}`), for
 * `pulp-lazy reclaim`. The collection's one writer
 * (test/collection-owners.test.ts).
 *
 * Not a field of `units`: FerretDB 1.24 rewrites whole documents, so an
 * access write racing the streamer's `downloaded: true` or reclaim's
 * `downloaded: false` could undo it.
 *
 * Cheap on the hit path: `served()` is a map lookup. A path written within
 * the granularity (12 h) is ignored; the others are flushed every few
 * seconds (and at close) in chunks of WRITE_CHUNK upserts with `$max`, so a
 * late flush of an older time never moves a path back. Counted: complete
 * 200/206 GET responses and 304 revalidations (a client that revalidates
 * still uses the file, as Nexus counts it); HEAD is not.
 */
import path from 'node:path';
import type { AnyBulkWriteOperation } from 'mongodb';
import { retryBusy } from '../db/busy.ts';
import { chunked, type Database, type UnitAccessDoc } from '../db/index.ts';
import type { Logger } from '../log.ts';

export const ACCESS_GRANULARITY_MS = 12 * 3_600_000;
export const ACCESS_FLUSH_MS = 5000;
/** Paths remembered as written before the memo starts again (a few MB at most). */
const MEMO_LIMIT = 100_000;

export interface AccessRecorder {
  /** A unit file was served (only paths below `<storage>/units/` count; others are ignored). */
  served(storagePath: string): void;
  /** Writes what is pending now. */
  flush(): Promise<void>;
  /** Stops the timer and writes what is pending. */
  close(): Promise<void>;
  /** Database writes sent so far (bulk writes), for tests and logs. */
  readonly writes: number;
}

export interface AccessRecorderOptions {
  /** paths.storage: only files below its `units/` are units. */
  storageRoot: string;
  granularityMs?: number;
  flushMs?: number;
  clock?: () => number;
  logger?: Logger;
}

/** `file` is a unit file: below `<storageRoot>/units/` (both absolute and normalised). */
export function isUnitFile(storageRoot: string, file: string): boolean {
  return file.startsWith(`${storageRoot}/units/`);
}

export function createAccessRecorder(db: Database, o: AccessRecorderOptions): AccessRecorder {
  const granularity = o.granularityMs ?? ACCESS_GRANULARITY_MS;
  const clock = o.clock ?? Date.now;
  const root = path.resolve(o.storageRoot);
  /** Path → when it was last queued for writing (written or pending). */
  const written = new Map<string, number>();
  let pending = new Map<string, number>();
  let writes = 0;
  let flushing: Promise<void> = Promise.resolve();
  const timer = setInterval(() => void flush(), o.flushMs ?? ACCESS_FLUSH_MS);
  timer.unref();

  const write = async (batch: Map<string, number>) => {
    for await (const chunk of chunked(batch)) {
      const ops: AnyBulkWriteOperation<UnitAccessDoc>[] = chunk.map(([p, at]) => ({
        updateOne: { filter: { _id: p }, update: { $max: { last_served_at: new Date(at) } }, upsert: true },
      }));
      writes++;
      await retryBusy(() => db.unitAccess.bulkWrite(ops, { ordered: false }));
    }
  };
  const flush = (): Promise<void> => {
    flushing = flushing.then(async () => {
      if (pending.size === 0) return;
      const batch = pending;
      pending = new Map();
      try {
        await write(batch);
      } catch (err) {
        // Lost now, written again after the next hit: a later hit is not ignored (forgotten below).
        for (const p of batch.keys()) written.delete(p);
        o.logger?.warn({ err, paths: batch.size }, 'cannot record unit accesses');
      }
    });
    return flushing;
  };

  return {
    served(file) {
      if (!isUnitFile(root, file)) return;
      const now = clock();
      const last = written.get(file);
      if (last !== undefined && now - last < granularity) return;
      if (written.size >= MEMO_LIMIT) written.clear();
      written.set(file, now);
      pending.set(file, now);
    },
    flush,
    async close() {
      clearInterval(timer);
      await flush();
    },
    get writes() {
      return writes;
    },
  };
}

/** Of `files`, when each was last served (absent: never, as far as unit_access knows). */
export async function lastServed(db: Database, files: readonly string[]): Promise<Map<string, Date>> {
  const out = new Map<string, Date>();
  for await (const ids of chunked(files, 500)) {
    for await (const d of db.unitAccess.find({ _id: { $in: ids } })) out.set(d._id, d.last_served_at);
  }
  return out;
}

/** Forgets the accesses of these files (their bytes left storage). */
export async function forgetAccess(db: Database, files: readonly string[]): Promise<void> {
  for await (const ids of chunked(files)) {
    await retryBusy(() => db.unitAccess.deleteMany({ _id: { $in: ids } }));
  }
}
