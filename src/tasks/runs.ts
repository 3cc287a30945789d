/**
 * Task run history (collection `task_runs`): one document per finished
 * sweep or download-repo run, written by the command layer (sweep,
 * download-repo, the scheduler) and read by `pulp-lazy top` for the sweep
 * throughput and the last runs.
 *
 * Kept small on purpose: FerretDB 1.24 pushes down only `{_id: value}`
 * filters and evaluates every other filter or sort by scanning the whole
 * collection. So the history holds about KEEP_RUNS documents (pruned after
 * an insert once it has grown by a tenth), and it is read by one sorted,
 * limited find.
 */
import type { ObjectId } from 'mongodb';
import { retryBusy } from '../db/busy.ts';
import type { Database, TaskRunDoc, TaskRunKind } from '../db/index.ts';
import type { Logger } from '../log.ts';
import type { DownloadRepoSummary } from './download-repo.ts';
import type { SweepSummary } from './sweep.ts';

/** Runs kept in the history. */
export const KEEP_RUNS = 200;

/** A run as recorded and read back (the document without its _id). */
export type TaskRun = Omit<TaskRunDoc, '_id'>;
export type { TaskRunKind };

/** Stores one finished run, then prunes the history to the newest `keep` runs when it has grown past keep + keep/10. */
export async function recordRun(db: Database, run: TaskRun, opts: { keep?: number } = {}): Promise<void> {
  const keep = opts.keep ?? KEEP_RUNS;
  const coll = db.taskRuns;
  await retryBusy(() => coll.insertOne({ ...run }));
  const count = await coll.estimatedDocumentCount();
  if (count <= keep + Math.max(1, Math.floor(keep / 10))) return;
  const oldest = await coll
    .find({}, { projection: { _id: 1 } })
    .sort({ finished_at: 1, _id: 1 })
    .limit(count - keep)
    .toArray();
  const ids = oldest.map((d) => d._id).filter((id): id is ObjectId => id !== undefined);
  if (ids.length > 0) await retryBusy(() => coll.deleteMany({ _id: { $in: ids } }));
}

/**
 * Records the run, logging a warning instead of failing when the database
 * refuses it: losing a history line must not turn a good run into a failure.
 */
export async function recordRunOrWarn(db: Database, run: TaskRun, logger: Logger): Promise<boolean> {
  try {
    await recordRun(db, run);
    return true;
  } catch (err) {
    logger.warn({ err, kind: run.kind }, 'could not record the run in task_runs');
    return false;
  }
}

/** The newest `n` runs, newest first. */
export async function recentRuns(db: Database, n = 20): Promise<TaskRun[]> {
  const docs = await db.taskRuns.find({}).sort({ finished_at: -1, _id: -1 }).limit(n).toArray();
  return docs.map(({ _id, ...run }) => run);
}

export function sweepRun(s: SweepSummary, startedAt: Date, finishedAt: Date): TaskRun {
  return {
    kind: 'sweep',
    worker: s.worker,
    started_at: startedAt,
    finished_at: finishedAt,
    claimed: s.claimed,
    stored: s.stored,
    failed: s.failed.length,
    files: s.files_fetched,
    bytes: s.bytes,
    seconds: s.seconds,
  };
}

export function downloadRepoRun(s: DownloadRepoSummary, startedAt: Date, finishedAt: Date): TaskRun {
  return {
    kind: 'download_repo',
    worker: s.worker,
    repo: s.repo,
    started_at: startedAt,
    finished_at: finishedAt,
    claimed: s.units,
    stored: s.stored,
    failed: s.failed.length,
    files: s.files_fetched,
    bytes: s.bytes,
    seconds: s.seconds,
  };
}

export interface Throughput {
  unitsPerSecond: number;
  bytesPerSecond: number;
}

/** Stored units and bytes per second of run time over `list` (null when the runs took no measurable time). */
export function throughput(list: TaskRun[]): Throughput | null {
  const seconds = list.reduce((a, r) => a + r.seconds, 0);
  if (!(seconds > 0)) return null;
  return {
    unitsPerSecond: list.reduce((a, r) => a + r.stored, 0) / seconds,
    bytesPerSecond: list.reduce((a, r) => a + r.bytes, 0) / seconds,
  };
}
