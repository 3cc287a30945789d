/**
 * Upstream GETs for the streamer, through the shared per-settings dispatcher
 * pool (src/upstream/dispatcher.ts: one pooled Agent/ProxyAgent per distinct
 * CA/client-cert/TLS-verify/proxy set, with connect, headers and body-idle
 * timeouts and no total timeout), plus redirect following and the mapping
 * of undici failures to our typed errors.
 */
import { type Dispatcher, interceptors, request } from 'undici';
import type { UpstreamSettings } from '../db/models.ts';
import { oneLine, type PulpLazyError, UpstreamError, UpstreamTimeout } from '../errors.ts';
import { DispatcherPool, type Timeouts, upstreamHeaders } from '../upstream/dispatcher.ts';

export const MAX_REDIRECTIONS = 5;
const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

export class UpstreamClient {
  private readonly pool: DispatcherPool;
  private readonly redirecting = new WeakMap<Dispatcher, Dispatcher>();

  constructor(timeouts: Timeouts) {
    this.pool = new DispatcherPool(timeouts);
  }

  /** GET `url` with the repository's settings; resolves once the response headers are in. */
  get(url: string, settings: UpstreamSettings, signal: AbortSignal): Promise<Dispatcher.ResponseData> {
    const base = this.pool.get(settings);
    let dispatcher = this.redirecting.get(base);
    if (!dispatcher) {
      dispatcher = base.compose(interceptors.redirect({ maxRedirections: MAX_REDIRECTIONS }));
      this.redirecting.set(base, dispatcher);
    }
    const headers = { ...upstreamHeaders(settings), 'accept-encoding': 'identity' };
    return request(url, { method: 'GET', headers, signal, dispatcher });
  }

  /** Closes the dispatchers (call after every fetch has ended or been aborted). */
  close(): Promise<void> {
    return this.pool.close();
  }
}

/** Maps an undici/network failure to UpstreamTimeout (504) or UpstreamError (502). */
export function toUpstreamError(err: unknown, url: string): PulpLazyError {
  const e = err as { code?: unknown; cause?: { code?: unknown; message?: unknown } };
  const code =
    typeof e.code === 'string' ? e.code : typeof e.cause?.code === 'string' ? e.cause.code : undefined;
  const detail = typeof e.cause?.message === 'string' ? `: ${oneLine(e.cause.message)}` : '';
  const what = `${redactUrl(url)}: ${oneLine(err)}${detail}${code ? ` (${code})` : ''}`;
  if (code && TIMEOUT_CODES.has(code)) return new UpstreamTimeout(what, err);
  return new UpstreamError(what, err);
}

/** Drops user:password from a URL for logs and messages. */
export function redactUrl(url: string): string {
  return url.replace(/^([a-z][a-z0-9+.-]*:\/\/)[^/@]*@/i, '$1');
}
