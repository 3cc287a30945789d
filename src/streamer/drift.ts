/**
 * Upstream drift: a file every catalog entry of which answered 404 or 410.
 * The client gets 404 (GoneUpstream, PL_UPSTREAM_GONE), the unit is flagged
 * gone upstream (src/storage/units.ts) and a sync of each repository whose
 * entries answered so is requested (src/repos/index.ts requestSync: once per
 * repository, however many clients or streamers met it). A later fetch that
 * succeeds clears the flag (commit.ts, the download tasks).
 */
import type { Database } from '../db/index.ts';
import { PulpLazyError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { requestSync } from '../repos/index.ts';
import { markGoneUpstream } from '../storage/units.ts';

/** One catalog entry that answered 404 or 410: its unit, its repository and the status. */
export interface GoneSource {
  unit_id: string;
  repo: string;
  status: number;
}

/** Every entry tried answered 404 or 410 upstream (a 404 to the client). */
export class GoneUpstream extends PulpLazyError {
  constructor(
    message: string,
    readonly sources: GoneSource[],
  ) {
    super('PL_UPSTREAM_GONE', message);
  }
}

/**
 * Flags the units and requests the syncs of `gone`; logs what it did (on
 * the flight's logger: the path and the request id). A database error is
 * logged, not thrown: the client's answer is 404 either way.
 */
export async function recordGone(db: Database, gone: GoneUpstream, log: Logger, now: Date): Promise<void> {
  const status = new Map(gone.sources.map((s) => [s.unit_id, s.status]));
  const repos = [...new Set(gone.sources.map((s) => s.repo))];
  try {
    const flagged: string[] = [];
    for (const [unitId, st] of status) {
      if (await markGoneUpstream(db, unitId, { at: now, status: st })) flagged.push(unitId);
    }
    const requested: string[] = [];
    for (const repo of repos) {
      const reason = `upstream drift: ${gone.sources.length} catalog entries answered 404/410 (${gone.message})`;
      if (await requestSync(db, repo, reason, { now })) requested.push(repo);
    }
    log.warn(
      { event: 'upstream_gone', units: [...status.keys()], repos, flagged, sync_requested: requested },
      'file gone upstream: unit flagged, re-sync requested',
    );
  } catch (err) {
    log.error({ event: 'upstream_gone', err }, 'cannot record a file gone upstream');
  }
}
