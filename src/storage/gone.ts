/**
 * Units gone upstream (upstream drift, flagged by the streamer through
 * units.ts markGoneUpstream): how many, and the first ones with where they
 * are published and since when. What `queue` and `top` show.
 */
import type { Database } from '../db/index.ts';

export interface GoneUnit {
  unit_id: string;
  unit_type_id: string;
  /** Where the unit is published: repository and relative path (none once no repository holds it). */
  where: Array<{ repo: string; path: string }>;
  /** When it was first found gone (ISO 8601). */
  since: string;
  /** The upstream status that said so (404 or 410). */
  status: number;
}

export interface GoneUpstreamList {
  total: number;
  /** The longest gone first, at most `limit`. */
  units: GoneUnit[];
}

/** Where a gone unit is published: "repo/path" (+ how many more), or its id when no repository holds it. */
export function goneWhere(u: Pick<GoneUnit, 'unit_id' | 'where'>): string {
  const [first, ...more] = u.where;
  return first ? `${first.repo}/${first.path}${more.length ? ` (+${more.length} more)` : ''}` : u.unit_id;
}

/** Units flagged gone upstream: their count and the first `limit` (default 20). */
export async function goneUpstreamUnits(
  db: Database,
  opts: { limit?: number } = {},
): Promise<GoneUpstreamList> {
  const filter = { 'gone_upstream.at': { $ne: null } };
  const [total, units] = await Promise.all([
    db.units.countDocuments(filter),
    db.units
      .find(filter, { projection: { _id: 1, unit_type_id: 1, gone_upstream: 1 } })
      .sort({ 'gone_upstream.at': 1, _id: 1 })
      .limit(opts.limit ?? 20)
      .toArray(),
  ]);
  const assocs = units.length
    ? await db.repoContentUnits
        .find(
          { unit_id: { $in: units.map((u) => u._id) } },
          { projection: { repo_id: 1, unit_id: 1, relative_path: 1 } },
        )
        .toArray()
    : [];
  return {
    total,
    units: units.map((u) => ({
      unit_id: u._id,
      unit_type_id: u.unit_type_id,
      where: assocs
        .filter((a) => a.unit_id === u._id)
        .map((a) => ({ repo: a.repo_id, path: a.relative_path }))
        .sort((a, b) => a.repo.localeCompare(b.repo) || a.path.localeCompare(b.path)),
      since: u.gone_upstream!.at.toISOString(),
      status: u.gone_upstream!.status,
    })),
  };
}
