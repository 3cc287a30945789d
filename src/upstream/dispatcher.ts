/**
 * One pooled undici dispatcher per distinct set of upstream settings (CA,
 * client certificate, TLS verification, proxy, most connections per origin),
 * for client.ts (every upstream request) and the tasks' requests to our own
 * proxy chain. Basic auth and `upstream.headers` are request headers
 * (client.ts), not dispatcher settings.
 *
 * Settings change while daemons run (`repo update`): the next request with
 * the new settings gets a new dispatcher, and one not asked for during
 * IDLE_CLOSE_MS is closed (gracefully: requests still running on it finish)
 * so rotated certificates do not pile up connections. The pool also holds
 * the process's rate limits (rate.ts), since every upstream request passes
 * through it.
 */
import { createHash } from 'node:crypto';
import { Agent, type Dispatcher, ProxyAgent } from 'undici';
import type { UpstreamSettings } from '../db/models.ts';
import { RateLimits } from './rate.ts';

/** A dispatcher not asked for during this long is closed. */
export const IDLE_CLOSE_MS = 5 * 60_000;
/** Connections per origin when the repository sets no `max_connections`. */
export const DEFAULT_CONNECTIONS = 64;

export interface Timeouts {
  connectMs: number;
  headersMs: number;
  /** Longest pause between two body chunks (no total timeout). */
  bodyIdleMs: number;
}

/** What the pool tells of each request's end before its body (src/upstream/health.ts's RemoteHealth). */
export interface HealthObserver {
  /** `origin` answered (any HTTP status). */
  answered(origin: string): void;
  /** No answer from `origin` (isConnectionFailure); `feed`: the repository's, whose settings a probe uses. */
  failed(origin: string, err: unknown, feed: string): void;
}

export class DispatcherPool {
  readonly #pool = new Map<string, { d: Dispatcher; used: number }>();
  readonly #timeouts: Timeouts;
  readonly #clock: () => number;
  readonly #idleCloseMs: number;
  #lastPrune: number;
  /** Request starts per second to each feed origin (upstream.rate_limit). */
  readonly rates: RateLimits;
  /** Told of every answer and connection failure, by origin (health.ts); absent: nobody. */
  readonly health: HealthObserver | undefined;

  constructor(
    timeouts: Timeouts,
    opts: { clock?: () => number; idleCloseMs?: number; health?: HealthObserver } = {},
  ) {
    this.#timeouts = timeouts;
    this.#clock = opts.clock ?? Date.now;
    this.#idleCloseMs = opts.idleCloseMs ?? IDLE_CLOSE_MS;
    this.#lastPrune = this.#clock();
    this.rates = new RateLimits(this.#clock);
    this.health = opts.health;
  }

  /** Dispatchers open now. */
  get size(): number {
    return this.#pool.size;
  }

  /** The dispatcher for these settings, created on first use. */
  get(settings: UpstreamSettings): Dispatcher {
    const key = createHash('sha256')
      .update(
        JSON.stringify([
          settings.ca_cert ?? '',
          settings.client_cert ?? '',
          settings.client_key ?? '',
          settings.tls_verify,
          settings.proxy_url ?? '',
          settings.max_connections ?? DEFAULT_CONNECTIONS,
        ]),
      )
      .digest('hex');
    const now = this.#clock();
    this.#prune(now);
    let entry = this.#pool.get(key);
    if (!entry) {
      entry = { d: createDispatcher(settings, this.#timeouts), used: now };
      this.#pool.set(key, entry);
    }
    entry.used = now;
    return entry.d;
  }

  async close(): Promise<void> {
    const all = [...this.#pool.values()];
    this.#pool.clear();
    await Promise.all(all.map((e) => e.d.close().catch(() => {})));
  }

  /** Closes the dispatchers not asked for during idleCloseMs (looked at once per idleCloseMs / 4). */
  #prune(now: number): void {
    if (now - this.#lastPrune < this.#idleCloseMs / 4) return;
    this.#lastPrune = now;
    for (const [key, e] of this.#pool) {
      if (now - e.used < this.#idleCloseMs) continue;
      this.#pool.delete(key);
      // close() lets running requests finish; only new ones would be refused, and none get it now.
      e.d.close().catch(() => {});
    }
  }
}

function createDispatcher(s: UpstreamSettings, t: Timeouts): Dispatcher {
  const connect = {
    timeout: t.connectMs,
    rejectUnauthorized: s.tls_verify,
    ...(s.ca_cert ? { ca: s.ca_cert } : {}),
    ...(s.client_cert ? { cert: s.client_cert } : {}),
    ...(s.client_key ? { key: s.client_key } : {}),
  };
  const common = {
    headersTimeout: t.headersMs,
    bodyTimeout: t.bodyIdleMs,
    keepAliveTimeout: 30_000,
    connections: s.max_connections ?? DEFAULT_CONNECTIONS,
  };
  if (s.proxy_url) {
    return new ProxyAgent({ uri: s.proxy_url, requestTls: connect, proxyTls: connect, ...common });
  }
  return new Agent({ connect, ...common });
}
