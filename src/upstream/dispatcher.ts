/**
 * One pooled undici dispatcher per distinct set of upstream settings (CA,
 * client certificate, TLS verification, proxy), for client.ts (every upstream
 * request) and the tasks' requests to our own proxy chain. Basic auth is a
 * request header (client.ts), not a dispatcher setting.
 */
import { createHash } from 'node:crypto';
import { Agent, type Dispatcher, ProxyAgent } from 'undici';
import type { UpstreamSettings } from '../db/models.ts';

export interface Timeouts {
  connectMs: number;
  headersMs: number;
  /** Longest pause between two body chunks (no total timeout). */
  bodyIdleMs: number;
}

export class DispatcherPool {
  readonly #pool = new Map<string, Dispatcher>();
  readonly #timeouts: Timeouts;

  constructor(timeouts: Timeouts) {
    this.#timeouts = timeouts;
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
        ]),
      )
      .digest('hex');
    let d = this.#pool.get(key);
    if (!d) {
      d = createDispatcher(settings, this.#timeouts);
      this.#pool.set(key, d);
    }
    return d;
  }

  async close(): Promise<void> {
    const all = [...this.#pool.values()];
    this.#pool.clear();
    await Promise.all(all.map((d) => d.close().catch(() => {})));
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
    connections: 64,
  };
  if (s.proxy_url) {
    return new ProxyAgent({ uri: s.proxy_url, requestTls: connect, proxyTls: connect, ...common });
  }
  return new Agent({ connect, ...common });
}
