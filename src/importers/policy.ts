/**
 * The sync's part of a repository's download policy (issue #22; the
 * streamer's part, `streamed`, is in src/streamer/flight.ts):
 *   - on_demand, streamed: nothing here; files are fetched when asked for;
 *   - background (Pulp 2): once the tree is published, every unit of the
 *     plan not stored yet is queued, and the sweep brings them in while
 *     clients are already served;
 *   - immediate: before the tree is published, every unit of the plan not
 *     stored yet is downloaded through the task path (unit leases, the
 *     concurrency limit, verification; src/tasks/download-repo.ts). One
 *     failed unit fails the sync: the caller then discards the new catalog
 *     revision and the previous tree stays published.
 * Both look at every unit of the plan, not only new ones: switching a
 * repository's policy takes effect at its next sync.
 */
import { chunked, type Database, type DownloadPolicy, type RepoDoc, type UnitDoc } from '../db/index.ts';
import { PulpLazyError } from '../errors.ts';
import { enqueueMany } from '../queue/entries.ts';
import { downloadUnits } from '../tasks/download-repo.ts';
import type { TaskDeps } from '../tasks/setup.ts';
import type { Plan } from './plan.ts';

export function policyOf(repo: Pick<RepoDoc, 'policy'>): DownloadPolicy {
  return repo.policy ?? 'on_demand';
}

/** The plan's units that are not downloaded, WRITE_CHUNK at a time. */
async function* missingUnits(db: Database, plan: Plan): AsyncGenerator<UnitDoc> {
  for await (const batch of chunked(plan.distinctUnits())) {
    const ids = batch.map((p) => p.unit._id);
    if (db.server === 'mongodb') {
      yield* await db.units.find({ _id: { $in: ids }, downloaded: false }).toArray();
      continue;
    }
    // FerretDB decodes the whole collection for an `$in`; a read by `_id` is cheap (docs/ferretdb.md).
    const docs = await Promise.all(ids.map((_id) => db.units.findOne({ _id })));
    for (const d of docs) if (d && !d.downloaded) yield d;
  }
}

/**
 * `immediate`: downloads every unit of the plan not stored yet; returns how
 * many were stored. Throws PL_SYNC_DOWNLOAD_FAILED when any could not be.
 */
export async function downloadBeforePublish(
  repo: RepoDoc,
  plan: Plan,
  deps: { db: Database; tasks?: (() => Promise<TaskDeps>) | undefined },
): Promise<number> {
  if (policyOf(repo) !== 'immediate') return 0;
  const units: UnitDoc[] = [];
  for await (const u of missingUnits(deps.db, plan)) units.push(u);
  if (units.length === 0) return 0;
  if (!deps.tasks) throw new Error('the immediate policy needs the download tasks (SyncDeps.tasks)');
  const s = await downloadUnits(await deps.tasks(), repo._id, units, {
    queueFailures: false,
    task: 'sync_immediate',
  });
  if (s.low_disk > 0) {
    throw new PulpLazyError(
      'PL_LOW_DISK',
      `sync of "${repo._id}" (policy immediate): ${s.low_disk} of ${units.length} units not downloaded, free ` +
        'space is below storage.min_free; the previous tree stays published',
    );
  }
  const first = s.failed[0];
  if (first) {
    throw new PulpLazyError(
      'PL_SYNC_DOWNLOAD_FAILED',
      `sync of "${repo._id}" (policy immediate): ${s.failed.length} of ${units.length} units could not be ` +
        `downloaded, the previous tree stays published; ${first.unit_id}: ${first.error}`,
    );
  }
  return s.stored;
}

/** `background`: queues every unit of the plan not stored yet; returns how many were queued now. */
export async function queueAfterPublish(repo: RepoDoc, plan: Plan, db: Database): Promise<number> {
  if (policyOf(repo) !== 'background') return 0;
  async function* refs() {
    for await (const u of missingUnits(db, plan)) yield { unit_id: u._id, unit_type_id: u.unit_type_id };
  }
  return enqueueMany(db, refs());
}
