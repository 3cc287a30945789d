/**
 * Memory shared by every flight for bytes received from upstream but not
 * yet in their temp files. A flight may always queue FLIGHT_MIN bytes (so
 * each one progresses), and up to FLIGHT_MAX while the total stays under
 * the budget; past that its upstream body is paused until writes complete
 * (its own, or another flight's, which wakes the paused ones). It also
 * lets one background fdatasync run at a time (takeSyncSlot).
 */

/** Queued bytes a flight may always hold. */
export const FLIGHT_MIN = 128 * 1024;
/** Queued bytes one flight may hold at most. */
export const FLIGHT_MAX = 8 << 20;
/** Queued bytes all flights together may hold beyond their FLIGHT_MIN. */
export const TOTAL_BUDGET = 8 << 20;

export class WriteBudget {
  private used = 0;
  private readonly paused = new Set<() => void>();

  constructor(private readonly total = TOTAL_BUDGET) {}

  /** Whether a flight holding `queued` bytes should pause its upstream. */
  full(queued: number): boolean {
    if (queued < FLIGHT_MIN) return false;
    return queued >= FLIGHT_MAX || this.used >= this.total;
  }

  add(n: number): void {
    this.used += n;
  }

  /** `n` bytes were written; paused flights get a chance to resume. */
  release(n: number): void {
    this.used -= n;
    if (this.paused.size === 0 || this.used >= this.total) return;
    const waiting = [...this.paused];
    this.paused.clear();
    for (const resume of waiting) resume();
  }

  /** Calls `resume` at the next release() that leaves room (once). */
  onRoom(resume: () => void): void {
    this.paused.add(resume);
  }

  forget(resume: () => void): void {
    this.paused.delete(resume);
  }

  private syncing = false;

  /**
   * Takes the one slot for a background fdatasync (false when another
   * flight's runs): an fdatasync holds a libuv pool thread until the disk is
   * done, and the pool (4 threads) also serves every temp-file read and write.
   */
  takeSyncSlot(): boolean {
    if (this.syncing) return false;
    this.syncing = true;
    return true;
  }

  releaseSyncSlot(): void {
    this.syncing = false;
  }
}
