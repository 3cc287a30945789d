/**
 * When a repository's next sync is due, computed from its document alone (interval,
 * sync_state, sync_requested), so every scheduler, `repo list`, `top` and /metrics
 * agree without storing it:
 *
 * - interval slots: time is cut into slots of the repository's interval, shifted by a
 *   jitter derived from its name (≤ 10 % of the interval and ≤ 5 min), so repositories
 *   with the same interval do not all start at once. A repository whose last sync
 *   started in slot S is due at the start of slot S+1 (S+2 when that is less than half
 *   an interval after its start); one never synced is due now.
 * - retries: after N failed syncs in a row the next one is due at the last finish +
 *   min(cap, retry_min × 2^(N-1)); the cap is the interval (sync.retry_max without one).
 * - requests (`sync_requested`): due at once, or when the retry is, if the last failed.
 *
 * Each due sync has a `key` that names it; schedulers claim `schedule:<repo>:<key>`
 * (claimScheduledSync), so two of them never run the same one.
 */
import { createHash } from 'node:crypto';
import type { RepoDoc } from '../db/index.ts';

export interface SyncTiming {
  /** First retry after a failure (config sync.retry_min). */
  retryMinMs: number;
  /** Longest retry wait of a repository without an interval (config sync.retry_max). */
  retryMaxMs: number;
}

export type SyncReason = 'first' | 'interval' | 'retry' | 'request';

export interface NextSync {
  at: Date;
  reason: SyncReason;
  key: string;
}

const MAX_JITTER_MS = 5 * 60_000;

/** The offset of the repository's slots: a stable fraction of min(10 % of the interval, 5 min). */
export function jitterMs(repoId: string, intervalMs: number): number {
  const span = Math.min(Math.floor(intervalMs / 10), MAX_JITTER_MS);
  const h = createHash('sha256').update(repoId).digest().readUInt32BE(0);
  return Math.floor((h / 2 ** 32) * span);
}

/** Start of the slot holding `t`. */
export function slotStart(t: number, intervalMs: number, offsetMs: number): number {
  return Math.floor((t - offsetMs) / intervalMs) * intervalMs + offsetMs;
}

/** When the retry of a failing repository is due (undefined: its last sync did not fail). */
export function retryAt(repo: RepoDoc, timing: SyncTiming): number | undefined {
  const st = repo.sync_state;
  if (!st || st.failures <= 0 || !st.last_finished_at) return undefined;
  const cap = repo.sync_interval_ms || timing.retryMaxMs;
  const wait = Math.min(cap, timing.retryMinMs * 2 ** Math.min(st.failures - 1, 40));
  return st.last_finished_at.getTime() + wait;
}

/** The repository's next sync (null: none; no interval and no request). */
export function nextSync(repo: RepoDoc, now: number, timing: SyncTiming): NextSync | null {
  const interval = repo.sync_interval_ms || 0;
  const retry = retryAt(repo, timing);
  const st = repo.sync_state;
  const candidates: NextSync[] = [];
  if (interval > 0) {
    if (retry !== undefined) {
      candidates.push({ at: new Date(retry), reason: 'retry', key: `retry:${retry}` });
    } else if (!st) {
      candidates.push({ at: new Date(now), reason: 'first', key: 'first' });
    } else {
      const started = st.last_started_at.getTime();
      let at = slotStart(started, interval, jitterMs(repo._id, interval)) + interval;
      // A sync late in its slot (e.g. a manual one) is not followed by another at once.
      if (at - started < interval / 2) at += interval;
      candidates.push({ at: new Date(at), reason: 'interval', key: `slot:${at}` });
    }
  }
  const req = repo.sync_requested;
  if (req) {
    const at = Math.max(req.at.getTime(), retry ?? 0);
    candidates.push({
      at: new Date(at),
      reason: 'request',
      key: `request:${req.at.getTime()}:${st?.failures ?? 0}`,
    });
  }
  candidates.sort((a, b) => a.at.getTime() - b.at.getTime());
  return candidates[0] ?? null;
}

/** The schedule of a repository as `repo list --json`, `top` and /metrics show it. */
export interface SyncView {
  interval_ms: number | null;
  last_started_at: string | null;
  last_finished_at: string | null;
  /** 'running' while a sync that started has not finished (or its process died). */
  last_result: 'ok' | 'failed' | 'running' | null;
  last_error: string | null;
  last_duration_ms: number | null;
  failures: number;
  next_at: string | null;
  next_reason: SyncReason | null;
  requested: { at: string; reason: string } | null;
}

export function syncView(repo: RepoDoc, now: number, timing: SyncTiming): SyncView {
  const st = repo.sync_state;
  const running = st && (!st.last_finished_at || st.last_finished_at < st.last_started_at);
  const next = nextSync(repo, now, timing);
  return {
    interval_ms: repo.sync_interval_ms || null,
    last_started_at: st?.last_started_at.toISOString() ?? null,
    last_finished_at: running ? null : (st?.last_finished_at?.toISOString() ?? null),
    last_result: running ? 'running' : (st?.last_result ?? null),
    last_error: running ? null : (st?.last_error ?? null),
    last_duration_ms: running ? null : (st?.last_duration_ms ?? null),
    failures: st?.failures ?? 0,
    next_at: next?.at.toISOString() ?? null,
    next_reason: next?.reason ?? null,
    requested: repo.sync_requested
      ? { at: repo.sync_requested.at.toISOString(), reason: repo.sync_requested.reason }
      : null,
  };
}

/** The config's defaults (sync.retry_min, sync.retry_max), for callers without a config. */
export const DEFAULT_SYNC_TIMING: SyncTiming = { retryMinMs: 60_000, retryMaxMs: 6 * 3_600_000 };

export const syncTiming = (config: { sync: { retry_min: number; retry_max: number } }): SyncTiming => ({
  retryMinMs: config.sync.retry_min,
  retryMaxMs: config.sync.retry_max,
});
