/**
 * `upstream.rate_limit` (`repo update --rate-limit N`): at most N request
 * starts per second to a feed's origin, per process. client.ts asks
 * RateLimits.wait() before every request to the feed's own origin (sync
 * metadata, streamer misses, the tasks' in-process fetches all start there).
 *
 * Each origin has a token bucket of one token refilled every 1/N s (virtual
 * scheduling: a request reserves the next free start time), so starts are
 * spaced 1/N s apart and any one-second window holds at most ceil(N) of them.
 * The rate is read at each reservation: a changed limit applies to the next
 * request, with no restart.
 */
import { UpstreamError } from '../errors.ts';

/** One origin's bucket: when the next request may start. Pure; the caller sleeps. */
export class TokenBucket {
  /** Earliest start time (clock ms) of the next request. */
  #next = Number.NEGATIVE_INFINITY;

  /**
   * Reserves a start for a request made at `now` at `rate` requests per
   * second; returns how many ms it must wait (0: start now).
   */
  reserve(now: number, rate: number): number {
    const start = Math.max(now, this.#next);
    this.#next = start + 1000 / rate;
    return start - now;
  }

  /** True when no reservation reaches past `now` (an aborted wait keeps its slot: the limit errs on the safe side). */
  idleSince(now: number): boolean {
    return this.#next <= now;
  }
}

/** The buckets of one process, by feed origin. */
export class RateLimits {
  readonly #buckets = new Map<string, TokenBucket>();
  readonly #clock: () => number;

  constructor(clock: () => number = Date.now) {
    this.#clock = clock;
  }

  /** Waits for a start slot to `origin` at `rate` per second (no wait without a rate); rejects when `signal` aborts. */
  async wait(origin: string, rate: number | undefined, signal?: AbortSignal): Promise<void> {
    if (rate === undefined || !(rate > 0)) return;
    const now = this.#clock();
    this.#prune(now);
    let bucket = this.#buckets.get(origin);
    if (!bucket) {
      bucket = new TokenBucket();
      this.#buckets.set(origin, bucket);
    }
    const ms = bucket.reserve(now, rate);
    if (ms > 0) await sleep(ms, signal, origin);
  }

  /** Origins with a bucket (tests). */
  get size(): number {
    return this.#buckets.size;
  }

  /** Drops buckets with no reservation ahead (they would start a request at once anyway). */
  #prune(now: number): void {
    if (this.#buckets.size < 64) return;
    for (const [k, b] of this.#buckets) if (b.idleSince(now)) this.#buckets.delete(k);
  }
}

function sleep(ms: number, signal: AbortSignal | undefined, origin: string): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(signal.reason ?? new UpstreamError(`request to ${origin} aborted`));
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal?.reason ?? new UpstreamError(`request to ${origin} aborted`));
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}
