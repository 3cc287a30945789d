/** What `pulp-lazy queue` shows: counts by state, the oldest entry, failing units. */
import type { Database } from '../db/index.ts';

export interface FailingUnit {
  unit_id: string;
  unit_type_id: string;
  state: 'pending' | 'failed';
  attempts: number;
  last_error: string;
  /** When the next attempt may start (ISO 8601); absent for hand-made values. */
  next_attempt_at?: string;
}

export interface QueueStats {
  total: number;
  /** Pending, due now, not leased: the next sweep takes them. */
  ready: number;
  /** Pending but waiting out a backoff (not leased). */
  waiting: number;
  /** Held by a worker whose lease has not expired. */
  leased: number;
  /** Parked after max_attempts: only `queue retry` brings them back. */
  failed: number;
  /** Age of the oldest entry in seconds (null when empty). */
  oldest_age_s: number | null;
  oldest_unit_id: string | null;
  /** Entries with an error recorded, most attempts first (at most `limit`). */
  failing: FailingUnit[];
  /** How many entries have an error recorded in total. */
  failing_total: number;
}

export async function queueStats(
  db: Database,
  opts: { clock?: () => number; limit?: number } = {},
): Promise<QueueStats> {
  const now = new Date((opts.clock ?? Date.now)());
  const free = { $or: [{ lease_expires_at: null }, { lease_expires_at: { $lte: now } }] };
  const [total, leased, failed, ready, failingTotal, oldest, failing] = await Promise.all([
    db.deferred.countDocuments({}),
    db.deferred.countDocuments({ lease_expires_at: { $gt: now } }),
    db.deferred.countDocuments({ state: 'failed', ...free }),
    db.deferred.countDocuments({ state: 'pending', next_attempt_at: { $lte: now }, ...free }),
    db.deferred.countDocuments({ last_error: { $nin: [null, ''] } }),
    db.deferred.find({}).sort({ created_at: 1 }).limit(1).toArray(),
    db.deferred
      .find({ last_error: { $nin: [null, ''] } })
      .sort({ attempts: -1, unit_id: 1 })
      .limit(opts.limit ?? 20)
      .toArray(),
  ]);
  const first = oldest[0];
  return {
    total,
    ready,
    waiting: Math.max(0, total - leased - failed - ready),
    leased,
    failed,
    oldest_age_s: first ? Math.max(0, Math.round((now.getTime() - first.created_at.getTime()) / 1000)) : null,
    oldest_unit_id: first?.unit_id ?? null,
    failing: failing.map((e) => ({
      unit_id: e.unit_id,
      unit_type_id: e.unit_type_id,
      state: e.state,
      attempts: e.attempts,
      last_error: e.last_error ?? '',
      next_attempt_at: e.next_attempt_at.toISOString(),
    })),
    failing_total: failingTotal,
  };
}
