/** Small whole-body fetches from a feed (metadata, manifests), with clear errors. */
import { FeedUnreachable, PulpLazyError, UpstreamRedirect } from '../errors.ts';
import { type FeedSettings, type UpstreamResponse, upstreamGet } from './client.ts';
import { describeError, redactUrl } from './describe.ts';
import type { DispatcherPool } from './dispatcher.ts';

/**
 * GETs `url` of the feed (following redirects, see client.ts); 'missing' on
 * HTTP 404 or 410 when `missingOk`. Throws feedError's errors on any
 * transport error, a refused redirect or another non-2xx status.
 */
export async function openFeedFile(
  url: string,
  repo: FeedSettings,
  pool: DispatcherPool,
): Promise<UpstreamResponse>;
export async function openFeedFile(
  url: string,
  repo: FeedSettings,
  pool: DispatcherPool,
  opts: { missingOk: true },
): Promise<UpstreamResponse | 'missing'>;
export async function openFeedFile(
  url: string,
  repo: FeedSettings,
  pool: DispatcherPool,
  opts: { missingOk?: boolean } = {},
): Promise<UpstreamResponse | 'missing'> {
  let res: UpstreamResponse;
  try {
    res = await upstreamGet(pool, url, repo);
  } catch (err) {
    throw feedError(err, url);
  }
  if (res.statusCode >= 200 && res.statusCode < 300) return res;
  await res.body.dump().catch(() => {});
  if (opts.missingOk && (res.statusCode === 404 || res.statusCode === 410)) return 'missing';
  throw new FeedUnreachable(`cannot fetch ${redactUrl(url)}: HTTP ${res.statusCode}`);
}

/** GETs `url` and returns the body (at most `maxBytes`); throws as openFeedFile. */
export async function fetchBuffer(
  url: string,
  repo: FeedSettings,
  pool: DispatcherPool,
  opts: { maxBytes?: number } = {},
): Promise<Buffer> {
  const max = opts.maxBytes ?? 512 * 1024 * 1024;
  const res = await openFeedFile(url, repo, pool);
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of res.body) {
      size += (chunk as Buffer).length;
      if (size > max) {
        res.body.destroy();
        throw new FeedUnreachable(`${redactUrl(url)} is larger than ${max} bytes`);
      }
      chunks.push(chunk as Buffer);
    }
  } catch (err) {
    throw feedError(err, url);
  }
  return Buffer.concat(chunks);
}

/**
 * A failed fetch from the feed during a sync, "cannot fetch URL: why": a
 * refused redirect keeps its code (PL_UPSTREAM_REDIRECT), anything else is
 * FeedUnreachable (a FeedUnreachable as it is).
 */
export function feedError(err: unknown, url: string): PulpLazyError {
  if (err instanceof FeedUnreachable) return err;
  if (err instanceof UpstreamRedirect) return new UpstreamRedirect(`cannot fetch ${err.message}`);
  if (err instanceof PulpLazyError) return new FeedUnreachable(`cannot fetch ${err.message}`, err);
  return new FeedUnreachable(`cannot fetch ${redactUrl(url)}: ${describeError(err)}`, err);
}
