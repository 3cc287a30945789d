/**
 * Keeps a worker's leases alive while it works: every lease/3 it extends the
 * entries it holds (one updateMany on MongoDB, one write by _id per entry on
 * FerretDB; see renewEntries) and each unit it is downloading. A unit
 * whose lease was lost (the process stalled past the lease and another
 * worker took over) has its download aborted, so two workers never keep
 * fetching one unit.
 */
import type { Database } from '../db/index.ts';
import { PulpLazyError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { renewEntries } from './claim.ts';
import { renewUnit, type UnitLease } from './units.ts';

export class LeaseLost extends PulpLazyError {
  constructor(unitId: string) {
    super('PL_LEASE_LOST', `lost the download lease on unit ${unitId} (another worker took it over)`);
  }
}

export class LeaseHeartbeat {
  private readonly entries = new Set<string>();
  private readonly units = new Map<string, { lease: UnitLease; ac: AbortController }>();
  private timer: NodeJS.Timeout | undefined;
  private beating: Promise<void> | undefined;

  constructor(
    private readonly db: Database,
    private readonly owner: string,
    private readonly leaseMs: number,
    private readonly log: Logger,
    private readonly clock: () => number = Date.now,
  ) {}

  start(): void {
    if (this.timer) return;
    this.timer = setInterval(() => void this.beat(), Math.max(50, Math.floor(this.leaseMs / 3)));
    this.timer.unref();
  }

  async stop(): Promise<void> {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.beating;
  }

  addEntry(id: string): void {
    this.entries.add(id);
  }

  removeEntry(id: string): void {
    this.entries.delete(id);
  }

  /** Watches the unit lease; `ac` is aborted with LeaseLost when the lease is gone. */
  addUnit(lease: UnitLease, ac: AbortController): void {
    this.units.set(`${lease.unitId}#${lease.gen}`, { lease, ac });
  }

  removeUnit(lease: UnitLease): void {
    this.units.delete(`${lease.unitId}#${lease.gen}`);
  }

  /** One renewal round (also called by tests). Overlapping rounds are skipped. */
  beat(): Promise<void> {
    this.beating ??= this.renew().finally(() => {
      this.beating = undefined;
    });
    return this.beating;
  }

  private async renew(): Promise<void> {
    try {
      await renewEntries(this.db, [...this.entries], this.owner, { leaseMs: this.leaseMs }, this.clock);
      for (const { lease, ac } of [...this.units.values()]) {
        if (ac.signal.aborted) continue;
        if (!(await renewUnit(this.db, lease, this.leaseMs, this.clock))) {
          this.log.warn({ unit_id: lease.unitId }, 'unit lease lost; aborting its download');
          ac.abort(new LeaseLost(lease.unitId));
        }
      }
    } catch (err) {
      // A database hiccup: the next round tries again before the leases expire.
      this.log.warn({ err }, 'cannot renew leases');
    }
  }
}
