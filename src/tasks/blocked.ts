/**
 * Whether a queued unit waits for a blocked upstream origin
 * (src/upstream/health.ts): some file of it has catalog entries, all on
 * blocked origins. The sweep gives such an entry back without spending an
 * attempt, due again at the origin's next probe. Costs nothing while no
 * origin is blocked; otherwise a read of the unit and of its files' entries
 * (by _id, src/catalog/reader.ts).
 */
import { CatalogReader } from '../catalog/reader.ts';
import { retryBusy } from '../db/busy.ts';
import type { Database } from '../db/index.ts';
import { usableEntries } from '../streamer/catalog.ts';
import type { RemoteHealth } from '../upstream/health.ts';

export interface BlockedCheck {
  /** When the unit may be tried again (the earliest next probe of its blocked origins), or undefined: not blocked. */
  retryAt(unitId: string): Promise<Date | undefined>;
}

export function blockedCheck(
  db: Database,
  health: Pick<RemoteHealth, 'fresh' | 'anyBlocked' | 'blocked' | 'nextProbe'>,
  clock: () => number = Date.now,
): BlockedCheck {
  const reader = new CatalogReader(db, { clock });
  return {
    async retryAt(unitId) {
      await health.fresh();
      if (!health.anyBlocked()) return undefined;
      const unit = await retryBusy(() => db.units.findOne({ _id: unitId }));
      if (!unit || unit.downloaded) return undefined;
      for (const f of unit.files) {
        const entries = usableEntries(await reader.entries(f.storage_path), clock());
        if (entries.length > 0 && entries.every((e) => health.blocked(e.url))) {
          return health.nextProbe(entries.map((e) => e.url));
        }
      }
      return undefined;
    },
  };
}
