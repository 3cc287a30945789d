/**
 * Which upstream redirects are followed: the same rules for sync (metadata,
 * manifests) and the streamer (src/upstream/client.ts follows them, not
 * undici's redirect interceptor, which cannot refuse a downgrade or say why
 * it stopped):
 *   - 301, 302, 303, 307 and 308 with a Location, resolved against the URL
 *     that answered (relative Locations included); the request stays a GET;
 *   - to another host, and from http to https, allowed;
 *   - refused (UpstreamRedirect, 502): from https to http, a URL requested
 *     before (a loop), more than MAX_REDIRECTS, a Location that is missing or
 *     not an http(s) URL.
 * Where credentials go (only to the feed's own origin) is the client's part.
 */
import { UpstreamRedirect } from '../errors.ts';
import { redactUrl } from './describe.ts';

export const MAX_REDIRECTS = 5;
export const REDIRECT_STATUSES: ReadonlySet<number> = new Set([301, 302, 303, 307, 308]);

/**
 * The URL a redirect answer of `current` leads to; `seen` holds every URL
 * requested so far, from `start` on (the new one is added). Throws
 * UpstreamRedirect when the redirect is refused.
 */
export function nextUrl(
  start: string,
  current: URL,
  status: number,
  location: string | string[] | undefined,
  seen: Set<string>,
): URL {
  const refuse = (why: string) => new UpstreamRedirect(`${redactUrl(start)}: ${why}`);
  if (typeof location !== 'string' || location === '') {
    throw refuse(`HTTP ${status} redirect without a single Location (from ${redactUrl(current.href)})`);
  }
  let next: URL;
  try {
    next = new URL(location, current);
  } catch {
    throw refuse(`HTTP ${status} redirect to an invalid Location ${JSON.stringify(location.slice(0, 200))}`);
  }
  next.hash = '';
  // Credentials written into a Location are never used.
  next.username = '';
  next.password = '';
  const target = redactUrl(next.href);
  if (next.protocol !== 'http:' && next.protocol !== 'https:') {
    throw refuse(`redirect to ${target} refused: only http and https are followed`);
  }
  if (current.protocol === 'https:' && next.protocol === 'http:') {
    throw refuse(`redirect from https to http refused (${redactUrl(current.href)} to ${target})`);
  }
  if (seen.has(next.href)) throw refuse(`redirect loop refused (${target} was requested before)`);
  if (seen.size > MAX_REDIRECTS) {
    throw refuse(`more than ${MAX_REDIRECTS} redirects refused (the next to ${target})`);
  }
  seen.add(next.href);
  return next;
}
