/** What one refresh of `pulp-lazy top` shows (collected by src/tui/data.ts). */
import type { DownloadPolicy } from '../db/index.ts';
import type { QueueStats } from '../queue/index.ts';
import type { GoneUpstreamList } from '../storage/gone.ts';
import type { TaskRun } from '../tasks/runs.ts';

export interface DaemonView {
  name: string;
  running: boolean;
  /** null: no health probe (scheduler) or not running. */
  healthy: boolean | null;
  pid: number | null;
  error?: string | undefined;
  /** Restarts by its supervisor since `start` (absent: 0). */
  restarts?: number;
  /** How it last ended while supervised: "SIGKILL", "code 1". */
  lastExit?: string | undefined;
  /** Its supervisor stopped restarting it. */
  givenUp?: boolean;
}

export interface RepoView {
  name: string;
  downloaded: number;
  total: number;
  /** Its download policy (absent: not known, e.g. an older snapshot). */
  policy?: DownloadPolicy;
  /** Its syncs (src/scheduler/plan.ts); absent: never synced and nothing scheduled. */
  sync?: RepoSyncView | undefined;
}

export interface RepoSyncView {
  last: 'ok' | 'failed' | 'running' | null;
  /** Failed syncs in a row. */
  failures: number;
  /** Seconds until the next sync (0: due now); null: none scheduled. */
  nextInS: number | null;
  nextReason: string | null;
}

export interface StreamerView {
  /** Upstream fetches (cache misses that reached the streamer). */
  misses: number;
  /** Requests answered from permanent storage. */
  hits: number;
  joins: number;
  checksumFailures: number;
  activeFlights: number;
}

export interface TopSnapshot {
  at: Date;
  daemons: DaemonView[];
  queue: QueueStats | null;
  repos: RepoView[];
  /** Units gone upstream, the longest gone first (absent or null: not readable; none: not shown). */
  gone?: GoneUpstreamList | null;
  /** The newest recorded task runs, newest first (null: not readable). */
  runs: TaskRun[] | null;
  /** null: the streamer's /metrics did not answer. */
  streamer: StreamerView | null;
  /** Free space under storage.min_free: new files streamed without saving, the sweep paused. */
  diskWarning?: string | undefined;
  /** Upstream origins blocked after connection failures (src/upstream/health.ts), in one line. */
  remotesWarning?: string | undefined;
  /** One line on what went wrong while collecting (database down, ...). */
  error?: string | undefined;
}

/** What the keys do; the App calls these and does no I/O itself. */
export interface TopActions {
  onQuit(): void;
  onSweep(): void;
  onRetry(): void;
}
