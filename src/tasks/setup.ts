/**
 * What the download tasks need, built from the config: the worker id, the
 * queue settings, the tasks' working dir and the FileSource chosen by
 * tasks.fetch ("auto": through the proxy when Squid caches, else through the
 * streamer logic in-process).
 */
import path from 'node:path';
import type { Config } from '../config.ts';
import { createStreamer } from '../daemons/streamer.ts';
import type { Database } from '../db/index.ts';
import type { Logger } from '../log.ts';
import { type QueueSettings, queueSettings, workerId } from '../queue/index.ts';
import { loadPrivateKey } from '../signing/index.ts';
import { DiskGuard } from '../storage/free-space.ts';
import { healthSettings, RemoteHealth } from '../upstream/health.ts';
import { fromStreamer } from './explain.ts';
import type { FileSource } from './source.ts';
import { localSource } from './source-local.ts';
import { proxySource } from './source-proxy.ts';

/** The tasks' working dir below paths.working (their temp files go to its tmp/). */
export function tasksWorkingDir(working: string): string {
  return path.join(working, 'tasks');
}

export interface TaskDeps {
  db: Database;
  source: FileSource;
  logger: Logger;
  /** This worker's id in leases (`host:pid:random`). */
  owner: string;
  queue: QueueSettings;
  /** The tasks' working dir (temp files in `<workingDir>/tmp`). */
  workingDir: string;
  /** Files fetched at once (tasks.concurrency). */
  concurrency: number;
  /** Entries claimed per batch (tasks.batch_size). */
  batchSize: number;
  /** The upstream origins' health: units waiting for a blocked one are given back (absent: none). */
  health?: RemoteHealth;
  /** storage.min_free: the sweep claims nothing while it says no (absent: no guard). */
  disk?: DiskGuard;
  clock?: () => number;
}

export type FetchMode = 'proxy' | 'local';

export function fetchMode(config: Config): FetchMode {
  const m = config.tasks.fetch;
  if (m !== 'auto') return m;
  return config.proxy.cache === 'squid' ? 'proxy' : 'local';
}

/** The FileSource for `mode` (throws PL_KEY_* with exit 2 when proxy mode has no signing key). */
export function createFileSource(
  config: Config,
  deps: { db: Database; logger: Logger },
  mode: FetchMode = fetchMode(config),
): FileSource {
  if (mode === 'proxy') return proxySource(config, { privateKey: loadPrivateKey(config.paths.keys) });
  // The in-process streamer keeps its temp files in the tasks' folder, which the tasks clean.
  const local: Config = {
    ...config,
    paths: { ...config.paths, working: tasksWorkingDir(config.paths.working) },
  };
  const streamer = createStreamer(local, { db: deps.db, logger: deps.logger });
  return localSource(streamer.handleStoragePath, {
    close: () => streamer.close({ deadlineMs: 5000 }),
    explain: (storagePath) => {
      const why = streamer.lastFailure(storagePath);
      return why && fromStreamer(why);
    },
  });
}

export function taskDeps(
  config: Config,
  deps: { db: Database; logger: Logger; source: FileSource; owner?: string; clock?: () => number },
): TaskDeps {
  return {
    db: deps.db,
    source: deps.source,
    logger: deps.logger,
    owner: deps.owner ?? workerId(),
    queue: queueSettings(config),
    workingDir: tasksWorkingDir(config.paths.working),
    concurrency: config.tasks.concurrency,
    batchSize: config.tasks.batch_size,
    health: new RemoteHealth(deps.db, healthSettings(config.remotes), { log: deps.logger }),
    disk: new DiskGuard(
      [config.paths.storage, tasksWorkingDir(config.paths.working)],
      config.storage.min_free,
      { log: deps.logger, ...(deps.clock ? { clock: deps.clock } : {}) },
    ),
    ...(deps.clock ? { clock: deps.clock } : {}),
  };
}
