/**
 * The sync scheduler, beside the sweep in `pulp-lazy run scheduler`: every
 * sync.check_interval it reads the repositories, and runs the syncs that are due
 * (plan.ts: interval slots with jitter, retries with backoff, requested syncs), one
 * at a time, earliest first. Several schedulers may run: each due sync is claimed
 * by a unique insert in `locks` first (claimScheduledSync), so only one of them runs
 * it, and syncRepo's lease keeps any two syncs of one repository apart (a sync the
 * lease refuses gives its claim back and is tried at the next check). Results are
 * recorded by syncRepo itself, in the repository's sync_state.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import type { Config } from '../config.ts';
import type { Database } from '../db/index.ts';
import { SyncInProgress } from '../errors.ts';
import { syncDepsFor } from '../importers/deps.ts';
import { type SyncDeps, syncRepo } from '../importers/sync.ts';
import type { Logger } from '../log.ts';
import { Counter } from '../metrics.ts';
import { claimScheduledSync, listRepos, purgeScheduleClaims, releaseScheduledSync } from '../repos/index.ts';
import type { TaskDeps } from '../tasks/setup.ts';
import { finishedBy } from './index.ts';
import { nextSync, type SyncTiming, syncTiming } from './plan.ts';
import { serveSyncMetrics } from './sync-metrics.ts';

/** How long a claim is kept at least (past it, the state it was made from has moved on). */
const CLAIM_TTL_MS = 3_600_000;

export interface SyncSchedulerOptions {
  db: Database;
  /** What syncRepo needs (pool, paths, logger). */
  syncDeps: SyncDeps;
  checkIntervalMs: number;
  timing: SyncTiming;
  logger: Logger;
}

export interface SyncScheduler {
  /** Syncs this scheduler ran, by result (ok, failed, skipped: another sync held the lease). */
  readonly runs: Counter;
  start(): void;
  /** Starts nothing new; waits for the running sync until `deadlineMs`. */
  stop(opts: { deadlineMs: number }): Promise<'idle' | 'finished' | 'late'>;
}

export function createSyncScheduler(opts: SyncSchedulerOptions): SyncScheduler {
  const { db, logger } = opts;
  const log = logger.child({ module: 'scheduler', job: 'sync' });
  const owner = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
  const runs = new Counter('pulp_lazy_scheduled_syncs_total', 'Syncs run by this scheduler, by result.');
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  let current: Promise<void> | undefined;

  const runOne = async (repoId: string, key: string, reason: string): Promise<void> => {
    const t0 = Date.now();
    const started_at = new Date(t0).toISOString();
    log.info({ event: 'scheduled_sync.started', repo: repoId, reason, key }, 'scheduled sync started');
    try {
      const s = await syncRepo(repoId, { ...opts.syncDeps, logger: log });
      runs.inc({ result: 'ok' });
      log.info(
        {
          event: 'scheduled_sync.finished',
          repo: repoId,
          reason,
          key,
          started_at,
          ms: Date.now() - t0,
          changed: s.changed,
        },
        'scheduled sync finished',
      );
    } catch (err) {
      if (err instanceof SyncInProgress) {
        runs.inc({ result: 'skipped' });
        await releaseScheduledSync(db, repoId, key, owner);
        log.info(
          { event: 'scheduled_sync.busy', repo: repoId, reason, key },
          'repository being synced; next check',
        );
        return;
      }
      runs.inc({ result: 'failed' });
      log.warn(
        { event: 'scheduled_sync.failed', repo: repoId, reason, key, started_at, ms: Date.now() - t0, err },
        'scheduled sync failed',
      );
    }
  };

  const check = async (): Promise<void> => {
    const now = Date.now();
    await purgeScheduleClaims(db, new Date(now));
    const due = (await listRepos(db))
      .map((repo) => ({ repo, next: nextSync(repo, now, opts.timing) }))
      .filter((d) => d.next && d.next.at.getTime() <= now)
      .sort((a, b) => a.next!.at.getTime() - b.next!.at.getTime());
    for (const { repo, next } of due) {
      if (stopped) return;
      const ttl = Math.max(CLAIM_TTL_MS, 2 * (repo.sync_interval_ms || 0));
      if (!(await claimScheduledSync(db, repo._id, next!.key, owner, new Date(Date.now() + ttl)))) {
        log.debug({ event: 'scheduled_sync.claimed_elsewhere', repo: repo._id, key: next!.key }, 'claimed');
        continue;
      }
      await runOne(repo._id, next!.key, next!.reason);
    }
  };

  const loop = () => {
    if (stopped) return;
    current = check()
      .catch((err: unknown) => log.error({ event: 'sync_check.failed', err }, 'sync check failed'))
      .finally(() => {
        current = undefined;
        if (!stopped) timer = setTimeout(loop, opts.checkIntervalMs);
      });
  };

  return {
    runs,
    start() {
      log.info({ check_interval_ms: opts.checkIntervalMs }, 'sync scheduler started');
      loop();
    },
    async stop({ deadlineMs }) {
      stopped = true;
      if (timer) clearTimeout(timer);
      const running = current;
      if (!running) return 'idle';
      const r = await finishedBy(running, deadlineMs);
      if (r === 'late') log.warn({ deadline_ms: deadlineMs }, 'scheduled sync still running at the deadline');
      return r;
    },
  };
}

/**
 * Starts the sync scheduler of `pulp-lazy run scheduler` on the config (and its /metrics
 * on sync.metrics_listen when set); `close` stops both and the upstream connections.
 */
export async function startSyncScheduling(
  cfg: Config,
  db: Database,
  logger: Logger,
  tasks: () => Promise<TaskDeps>,
): Promise<{ close(opts: { deadlineMs: number }): Promise<void> }> {
  const syncDeps = syncDepsFor(cfg, db, logger, tasks);
  const timing = syncTiming(cfg);
  const scheduler = createSyncScheduler({
    db,
    syncDeps,
    checkIntervalMs: cfg.sync.check_interval,
    timing,
    logger,
  });
  const metrics = cfg.sync.metrics_listen
    ? await serveSyncMetrics(cfg.sync.metrics_listen, { db, timing, runs: scheduler.runs, logger })
    : undefined;
  scheduler.start();
  return {
    async close({ deadlineMs }) {
      await scheduler.stop({ deadlineMs });
      await metrics?.close();
      await syncDeps.pool.close();
    },
  };
}
