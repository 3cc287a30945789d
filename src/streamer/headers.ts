/**
 * Response headers of the streamer: what is forwarded from upstream
 * (end-to-end headers only) and what we add (Cache-Control so Squid keeps
 * the object, Content-Length, a content type for files served from disk).
 */
import type { OutgoingHttpHeaders } from 'node:http';
import path from 'node:path';

/** Hop-by-hop headers (RFC 9110 §7.6.1, plus `public` and `proxy-connection` as Pulp stripped them). */
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'public',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/**
 * Not hop-by-hop, but never forwarded: our response is stored by a shared
 * cache, so no cookie may ride along, and freshness is ours to decide. Nor
 * Content-Encoding: the bytes are the file as stored (a `.gz` served with
 * `Content-Encoding: gzip` upstream is still a gzip file), as a hit sends
 * them, and a client told "gzip" would decode it.
 */
const REPLACED = new Set(['set-cookie', 'cache-control', 'expires', 'pragma', 'age', 'content-encoding']);

export type UpstreamHeaders = Record<string, string | string[] | undefined>;

/** The end-to-end subset of upstream response headers (names lowercased). */
export function endToEndHeaders(headers: UpstreamHeaders): OutgoingHttpHeaders {
  const named = new Set<string>();
  const connection = headers.connection;
  for (const v of Array.isArray(connection) ? connection : connection ? [connection] : []) {
    for (const token of v.split(',')) {
      const t = token.trim().toLowerCase();
      if (t) named.add(t);
    }
  }
  const out: OutgoingHttpHeaders = {};
  for (const [rawName, value] of Object.entries(headers)) {
    const name = rawName.toLowerCase();
    if (value === undefined || HOP_BY_HOP.has(name) || named.has(name) || REPLACED.has(name)) continue;
    out[name] = value;
  }
  return out;
}

/** `Cache-Control: public, max-age=N, s-maxage=N` with N in seconds (config holds ms). */
export function cacheControl(cacheTimeoutMs: number): string {
  const s = Math.floor(cacheTimeoutMs / 1000);
  return `public, max-age=${s}, s-maxage=${s}`;
}

/**
 * The Cache-Control a response should carry instead of the streamer's own:
 * `undefined` keeps ours (a signed streamer URL names one stored file, which
 * never changes), a string replaces it, `null` drops it. `serve` streams a
 * miss under the content URL, which gets the hit's value for that path
 * (src/http/cache-control.ts).
 */
export type CacheControlOverride = string | null | undefined;

/** `headers` with their Cache-Control replaced as `override` says (a copy; the input is shared). */
export function withCacheControl<H extends OutgoingHttpHeaders>(
  headers: H | undefined,
  override: CacheControlOverride,
): H | undefined {
  if (override === undefined || headers === undefined) return headers;
  const { 'cache-control': _, ...rest } = headers;
  return (override === null ? rest : { ...rest, 'cache-control': override }) as H;
}

/** Headers for the clients of a flight: upstream's end-to-end ones, the expected size, our Cache-Control. */
export function flightHeaders(
  upstream: UpstreamHeaders,
  size: number | undefined,
  cacheTimeoutMs: number,
): OutgoingHttpHeaders {
  const headers = endToEndHeaders(upstream);
  if (size !== undefined) headers['content-length'] = String(size);
  headers['cache-control'] = cacheControl(cacheTimeoutMs);
  return headers;
}

/** Error responses must never be stored by Squid. */
export const NO_STORE = 'no-store';

const TYPES: Record<string, string> = {
  '.rpm': 'application/x-rpm',
  '.drpm': 'application/x-rpm',
  '.deb': 'application/vnd.debian.binary-package',
  '.udeb': 'application/vnd.debian.binary-package',
  '.iso': 'application/x-iso9660-image',
  '.img': 'application/octet-stream',
  '.gz': 'application/gzip',
  '.tgz': 'application/gzip',
  '.bz2': 'application/x-bzip2',
  '.xz': 'application/x-xz',
  '.zst': 'application/zstd',
  '.zip': 'application/zip',
  '.tar': 'application/x-tar',
  '.xml': 'application/xml',
  '.json': 'application/json',
  '.txt': 'text/plain; charset=utf-8',
  '.asc': 'text/plain; charset=utf-8',
  '.gpg': 'application/pgp-keys',
  '.html': 'text/html; charset=utf-8',
};

/**
 * Content type of a stored file, from its name only (`.gz` is a gzip file,
 * never `Content-Encoding: gzip`: clients must get the bytes as stored).
 */
export function contentTypeFor(file: string): string {
  return TYPES[path.extname(file).toLowerCase()] ?? 'application/octet-stream';
}
