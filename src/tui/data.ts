/**
 * The data collector behind `pulp-lazy top`: one call = one snapshot of the
 * components' status, the queue, per-repository progress and the streamer's
 * /metrics. All I/O of the TUI lives here (and in actions.ts).
 */
import type { Config } from '../config.ts';
import type { Database, RepoDoc } from '../db/index.ts';
import { oneLine } from '../errors.ts';
import { componentStatus, httpGet, lowDiskWarning, START_ORDER } from '../lifecycle/index.ts';
import { queueStats } from '../queue/index.ts';
import { DEFAULT_SYNC_TIMING, type SyncTiming, syncTiming, syncView } from '../scheduler/plan.ts';
import { goneUpstreamUnits } from '../storage/gone.ts';
import { recentRuns, type TaskRun } from '../tasks/runs.ts';
import { type RemoteView, readRemoteHealth } from '../upstream/health.ts';
import { MAX_ROWS } from './layout.ts';
import { streamerView } from './metrics-text.ts';
import type { RepoSyncView, RepoView, StreamerView, TopSnapshot } from './types.ts';

/** Runs read per refresh: the throughput average and the list come from these. */
export const RECENT_RUNS = 20;

const noDb = {
  queue: null,
  repos: [] as RepoView[],
  runs: null as TaskRun[] | null,
  gone: null,
  remotes: [] as RemoteView[],
};

export async function collectSnapshot(
  config: Config,
  db: Database | null,
  dbError?: string,
): Promise<TopSnapshot> {
  const [daemons, streamer, diskWarning, fromDb] = await Promise.all([
    Promise.all(START_ORDER.map((n) => componentStatus(config, n))),
    streamerMetrics(config),
    lowDiskWarning(config),
    db
      ? Promise.all([
          queueStats(db, { limit: 5 }),
          repoProgress(db, syncTiming(config)),
          recentRuns(db, RECENT_RUNS),
          goneUpstreamUnits(db, { limit: MAX_ROWS.gone }),
          readRemoteHealth(db),
        ]).then(
          ([queue, repos, runs, gone, remotes]) => ({
            queue,
            repos,
            runs,
            gone,
            remotes,
            error: undefined as string | undefined,
          }),
          (err: unknown) => ({ ...noDb, error: `database: ${oneLine(err)}` }),
        )
      : { ...noDb, error: dbError },
  ]);
  return {
    at: new Date(),
    daemons: daemons.map((d) => ({
      name: d.name,
      running: d.running,
      healthy: d.healthy,
      pid: d.pid,
      error: d.error,
      restarts: d.restarts,
      lastExit: d.last_exit ? (d.last_exit.signal ?? `code ${d.last_exit.code}`) : undefined,
      givenUp: d.given_up !== undefined,
    })),
    queue: fromDb.queue,
    repos: fromDb.repos,
    runs: fromDb.runs,
    gone: fromDb.gone,
    streamer,
    diskWarning,
    remotesWarning: blockedLine(fromDb.remotes),
    error: fromDb.error,
  };
}

/** "blocked upstream: ORIGIN (next probe HH:MM:SS), ..." when some origin is blocked. */
export function blockedLine(remotes: readonly RemoteView[]): string | undefined {
  const blocked = remotes.filter((r) => r.state === 'blocked');
  if (blocked.length === 0) return undefined;
  const probe = (r: RemoteView) => (r.next_probe_at ? ` (next probe ${r.next_probe_at.slice(11, 19)})` : '');
  return `blocked upstream: ${blocked.map((r) => `${r.origin}${probe(r)}`).join(', ')}`;
}

async function streamerMetrics(config: Config): Promise<StreamerView | null> {
  try {
    const r = await httpGet(config.streamer.listen, '/metrics', 1000);
    return r.status === 200 ? streamerView(r.body) : null;
  } catch {
    return null;
  }
}

/** Downloaded/total units per repository (names sorted), and its syncs. */
export async function repoProgress(
  db: Database,
  timing: SyncTiming = DEFAULT_SYNC_TIMING,
): Promise<RepoView[]> {
  const now = Date.now();
  const repos = await db.repos
    .find({}, { projection: { _id: 1, policy: 1, sync_interval_ms: 1, sync_state: 1, sync_requested: 1 } })
    .sort({ _id: 1 })
    .toArray();
  const missing = (await db.units.find({ downloaded: false }, { projection: { _id: 1 } }).toArray()).map(
    (u) => u._id,
  );
  return Promise.all(
    repos.map(async (r) => {
      const [total, notDownloaded] = await Promise.all([
        db.repoContentUnits.countDocuments({ repo_id: r._id }),
        missing.length
          ? db.repoContentUnits.countDocuments({ repo_id: r._id, unit_id: { $in: missing } })
          : 0,
      ]);
      return {
        name: r._id,
        total,
        downloaded: total - notDownloaded,
        policy: r.policy ?? 'on_demand',
        sync: repoSync(r as RepoDoc, now, timing),
      };
    }),
  );
}

function repoSync(repo: RepoDoc, now: number, timing: SyncTiming): RepoSyncView | undefined {
  const v = syncView(repo, now, timing);
  if (!v.last_result && !v.next_at) return undefined;
  return {
    last: v.last_result,
    failures: v.failures,
    nextInS: v.next_at ? Math.max(0, Math.ceil((Date.parse(v.next_at) - now) / 1000)) : null,
    nextReason: v.next_reason,
  };
}
