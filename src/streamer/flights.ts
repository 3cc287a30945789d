/**
 * The flights a streamer runs: at most one taking clients per storage path
 * (single-flight), every one until it settled (a retired flight may still
 * be saving), the claims of paths among the streamers under way
 * (share_fetches: concurrent local requests wait for the one claim), and
 * why the last fetch of a path failed.
 */
import type { CatalogEntryDoc } from '../db/index.ts';
import { oneLine, type PulpLazyError } from '../errors.ts';
import type { Flight } from './flight.ts';
import type { MemoryGuard } from './memory-guard.ts';
import type { SharedFlights } from './shared-flight.ts';

/** Paths whose last fetch failure is remembered (lastFailure), oldest forgotten first. */
export const FAILURES_KEPT = 1000;

/** What the registry needs of a flight (flight.ts's Flight). */
export type TrackedFlight = Pick<Flight, 'path' | 'error' | 'settled' | 'abort'>;

/**
 * Starts a flight; it calls `onRetire` once, when it stops taking clients.
 * `reqId` is the id of the request that starts it (its log lines and upstream request carry it).
 */
export type NewFlight<F> = (
  path: string,
  entries: CatalogEntryDoc[],
  onRetire: (flight: F) => void,
  reqId?: string,
) => F;

/** A path claimed among the streamers: a flight here, or the URL of the streamer that holds it. */
export type Started<F> = { kind: 'flight'; flight: F } | { kind: 'held'; url: string };

export class FlightRegistry<F extends TrackedFlight = Flight> {
  /** Flights taking clients now, by storage path. */
  readonly byPath = new Map<string, F>();
  /** Every flight not yet settled. */
  private readonly running = new Set<F>();
  /** Paths being claimed among the streamers. */
  private readonly claiming = new Map<string, Promise<Started<F>>>();
  /** The failure of the last fetch per path (removed when a fetch succeeds), at most FAILURES_KEPT. */
  private readonly failures = new Map<string, string>();

  constructor(
    private readonly newFlight: NewFlight<F>,
    /** Told how many flights run (memory-guard.ts); absent: none. */
    private readonly memory?: Pick<MemoryGuard, 'streams'>,
  ) {}

  /** Flights not yet settled. */
  get size(): number {
    return this.running.size;
  }

  /** The flight taking clients for `path`, if any. */
  get(path: string): F | undefined {
    return this.byPath.get(path);
  }

  /** Starts a flight for `path` (none may be taking clients for it). */
  start(path: string, entries: CatalogEntryDoc[], reqId?: string): F {
    const flight = this.newFlight(path, entries, (f) => this.retired(f), reqId);
    this.byPath.set(path, flight);
    this.running.add(flight);
    this.memory?.streams(this.running.size);
    void flight.settled.finally(() => {
      this.running.delete(flight);
      this.memory?.streams(this.running.size);
    });
    return flight;
  }

  /** Claims `path` among the streamers, then starts (or joins) the flight here, or names the holder. */
  startShared(
    shared: Pick<SharedFlights, 'claim'>,
    path: string,
    entries: CatalogEntryDoc[],
    reqId?: string,
  ): Promise<Started<F>> {
    let p = this.claiming.get(path);
    if (!p) {
      p = (async (): Promise<Started<F>> => {
        const c = await shared.claim(path);
        if (c.kind === 'held') return { kind: 'held', url: c.url };
        const flight = this.byPath.get(path) ?? this.start(path, entries, reqId);
        void flight.settled.finally(c.release);
        return { kind: 'flight', flight };
      })().finally(() => this.claiming.delete(path));
      this.claiming.set(path, p);
    }
    return p;
  }

  /** Why the last fetch of `path` failed, if it failed. */
  lastFailure(path: string): string | undefined {
    return this.failures.get(path);
  }

  /** Resolves once every flight running now settled. */
  async settled(): Promise<void> {
    await Promise.all([...this.running].map((f) => f.settled));
  }

  /** Aborts every running flight (shutdown). */
  abortAll(reason: PulpLazyError): void {
    for (const f of this.running) f.abort(reason);
  }

  private retired(f: F): void {
    if (this.byPath.get(f.path) === f) this.byPath.delete(f.path);
    this.failures.delete(f.path);
    if (f.error) this.failures.set(f.path, oneLine(f.error));
    if (this.failures.size > FAILURES_KEPT) this.failures.delete(this.failures.keys().next().value!);
  }
}
