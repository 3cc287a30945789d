/**
 * Every upstream GET (sync metadata and manifests, streamer misses) goes
 * through upstreamGet: the repository's TLS/CA/client-certificate/proxy
 * settings (one pooled dispatcher per set, dispatcher.ts: connect, headers
 * and body-idle timeouts, no total timeout), `Accept-Encoding: identity`
 * (undici's request never decodes a body, so a server that still sends
 * `Content-Encoding: gzip` gives us the bytes as sent, verified against the
 * checksum like any others), our redirect rules (redirect.ts) and our typed
 * errors (describe.ts).
 *
 * Credentials (basic auth, the client certificate) and the repository's
 * extra headers (`upstream.headers`) go only to the feed's own origin
 * (scheme, host and port): a request to another origin, first or after a
 * redirect, has none of them and uses a dispatcher without the client
 * certificate and key (same CA, TLS verification and proxy). Requests to the
 * feed's origin wait for its rate limit (`upstream.rate_limit`, rate.ts).
 *
 * The settings come with each call (the caller's current RepoDoc), so a
 * `repo update` applies to the next request of any running process.
 */
import { type Dispatcher, request } from 'undici';
import type { RepoDoc, UpstreamSettings } from '../db/models.ts';
import { isConnectionFailure, toUpstreamError } from './describe.ts';
import { DispatcherPool, type HealthObserver, type Timeouts } from './dispatcher.ts';
import { nextUrl, REDIRECT_STATUSES } from './redirect.ts';

/** What a request needs of its repository: the feed (whose origin gets the credentials) and the settings. */
export type FeedSettings = Pick<RepoDoc, 'feed' | 'upstream'>;

export type UpstreamResponse = Dispatcher.ResponseData & {
  /** The URL that answered (after redirects). */
  url: string;
  redirects: number;
};

/**
 * GETs `url` (with `X-Request-Id: reqId` when given), following redirects; resolves once the final response's
 * headers are in (any status but a followed redirect). Throws
 * UpstreamRedirect (a refused redirect), UpstreamTimeout or UpstreamError.
 */
export async function upstreamGet(
  pool: DispatcherPool,
  url: string,
  repo: FeedSettings,
  signal?: AbortSignal,
  reqId?: string,
): Promise<UpstreamResponse> {
  const home = new URL(repo.feed).origin;
  const first = new URL(url);
  let current = first;
  const seen = new Set([first.href]);
  for (;;) {
    const own = current.origin === home;
    const settings = own ? repo.upstream : withoutCredentials(repo.upstream);
    let res: Dispatcher.ResponseData;
    try {
      if (own) await pool.rates.wait(home, settings.rate_limit, signal);
      res = await request(current, {
        method: 'GET',
        headers: reqId ? { ...requestHeaders(settings), 'x-request-id': reqId } : requestHeaders(settings),
        dispatcher: pool.get(settings),
        ...(signal ? { signal } : {}),
      });
    } catch (err) {
      if (!signal?.aborted && isConnectionFailure(err)) pool.health?.failed(current.origin, err, repo.feed);
      throw toUpstreamError(err, current === first ? url : `${url} (redirected to ${current.href})`);
    }
    pool.health?.answered(current.origin);
    if (!REDIRECT_STATUSES.has(res.statusCode)) {
      return Object.assign(res, { url: current.href, redirects: seen.size - 1 });
    }
    await res.body.dump().catch(() => {});
    current = nextUrl(url, current, res.statusCode, res.headers.location, seen);
  }
}

/** The streamer's client: owns its dispatcher pool. */
export class UpstreamClient {
  readonly #pool: DispatcherPool;

  constructor(timeouts: Timeouts, opts: { health?: HealthObserver } = {}) {
    this.#pool = new DispatcherPool(timeouts, opts);
  }

  /** GET `url` of this repository (see upstreamGet). */
  get(url: string, repo: FeedSettings, signal: AbortSignal, reqId?: string): Promise<UpstreamResponse> {
    return upstreamGet(this.#pool, url, repo, signal, reqId);
  }

  /** Closes the dispatchers (call after every fetch has ended or been aborted). */
  close(): Promise<void> {
    return this.#pool.close();
  }
}

/** The settings for another origin: no client certificate, no basic auth, no extra headers (same connection limit per origin). */
function withoutCredentials(s: UpstreamSettings): UpstreamSettings {
  return {
    tls_verify: s.tls_verify,
    ca_cert: s.ca_cert,
    proxy_url: s.proxy_url,
    max_connections: s.max_connections,
  };
}

/** The repository's headers (a User-Agent of its own replaces ours), then the ones we need: identity encoding, auth. */
export function requestHeaders(s: UpstreamSettings): Record<string, string> {
  const h: Record<string, string> = { 'user-agent': 'pulp-lazy' };
  for (const { name, value } of s.headers ?? []) h[name.toLowerCase()] = value;
  h['accept-encoding'] = 'identity';
  if (s.basic_auth) {
    h.authorization = `Basic ${Buffer.from(`${s.basic_auth.username}:${s.basic_auth.password}`).toString('base64')}`;
  }
  return h;
}
