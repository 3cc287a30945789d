/**
 * The SyncDeps of a sync started from the config: `pulp-lazy sync` and the
 * scheduler daemon's scheduled syncs build them here, so both sync alike
 * (timeouts, paths, publish.keep_previous, the task path for `immediate`).
 */
import type { Config } from '../config.ts';
import type { Database } from '../db/index.ts';
import type { Logger } from '../log.ts';
import type { TaskDeps } from '../tasks/setup.ts';
import { DispatcherPool } from '../upstream/dispatcher.ts';
import type { SyncDeps } from './sync.ts';

/** Sync deps on a new connection pool; the caller closes `pool` when done. */
export function syncDepsFor(
  cfg: Config,
  db: Database,
  logger: Logger,
  tasks: () => Promise<TaskDeps>,
): SyncDeps & { pool: DispatcherPool } {
  return {
    db,
    pool: new DispatcherPool({
      connectMs: cfg.streamer.connect_timeout,
      headersMs: cfg.streamer.headers_timeout,
      bodyIdleMs: cfg.streamer.body_idle_timeout,
    }),
    storageRoot: cfg.paths.storage,
    publishedRoot: cfg.paths.published,
    workingDir: cfg.paths.working,
    logger,
    tasks,
    keepPreviousMs: cfg.publish.keep_previous,
  };
}
