/** A sync in-process: the CLI's code path without the process. */
import type { Database } from '../../src/db/index.ts';
import { type SyncSummary, syncRepo } from '../../src/importers/sync.ts';
import { silentLogger } from '../../src/log.ts';
import { DispatcherPool } from '../../src/upstream/dispatcher.ts';

export interface SyncPaths {
  storage: string;
  published: string;
  working: string;
}

export interface SyncOptions {
  /** A pool to use (left open); otherwise one is made with `timeouts` and closed. */
  pool?: DispatcherPool;
  timeouts?: { connectMs: number; headersMs: number; bodyIdleMs: number };
  spoolChars?: number;
}

/** Syncs repository `name` into `paths` (the config's paths), silently. */
export async function syncIn(
  db: Database,
  paths: SyncPaths,
  name: string,
  opts: SyncOptions = {},
): Promise<SyncSummary> {
  const pool =
    opts.pool ??
    new DispatcherPool(opts.timeouts ?? { connectMs: 5000, headersMs: 30_000, bodyIdleMs: 30_000 });
  try {
    return await syncRepo(name, {
      db,
      pool,
      storageRoot: paths.storage,
      publishedRoot: paths.published,
      workingDir: paths.working,
      logger: silentLogger,
      ...(opts.spoolChars === undefined ? {} : { spoolChars: opts.spoolChars }),
    });
  } finally {
    if (!opts.pool) await pool.close();
  }
}
