/**
 * One id per request, through content daemon, streamer and the upstream
 * fetch it starts. A daemon takes the incoming `X-Request-Id` (or, for a
 * signed streamer URL, its `rid` parameter) when it is a safe token, else
 * makes one; logs it as `reqId` and echoes it in the response.
 *
 * Apache's content vhost gives each request an id (mod_unique_id) unless
 * the client sent one; the content daemon's redirect carries that id as
 * `rid`, next to the signature: it is not signed (verifyUrl and stripSignature skip it), and
 * Apache's streamer vhost turns it into an `X-Request-Id` header before its
 * [QSD] proxy to Squid, so Squid's cache key never sees it.
 */
import { randomUUID } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';

export const REQUEST_ID_HEADER = 'x-request-id';
/** The query parameter of a redirect URL that carries the id (unsigned). */
export const REQUEST_ID_PARAM = 'rid';

/** Letters, digits, `.`, `_`, `-`, and `@` (Apache's mod_unique_id uses it). */
const SAFE = /^[A-Za-z0-9._@-]{1,64}$/;

/** `value` when it is a safe token (SAFE, 1 to 64 characters), else undefined. */
export function safeRequestId(value: unknown): string | undefined {
  return typeof value === 'string' && SAFE.test(value) ? value : undefined;
}

/** The `rid` parameter of a request target's query, when there is exactly one. */
export function requestIdParam(target: string): string | undefined {
  const q = target.indexOf('?');
  if (q < 0) return undefined;
  const values = target
    .slice(q + 1)
    .split('#', 1)[0]!
    .split('&')
    .filter((p) => p.startsWith(`${REQUEST_ID_PARAM}=`))
    .map((p) => p.slice(REQUEST_ID_PARAM.length + 1));
  return values.length === 1 ? values[0] : undefined;
}

/**
 * The request's id: its `X-Request-Id` header, else its `rid` parameter,
 * when safe; else a new one. Stored back on the request's headers (so the
 * all-in-one server's content and streamer parts agree) and set on the
 * response.
 */
export function requestId(req: IncomingMessage, res?: ServerResponse): string {
  const id =
    safeRequestId(req.headers[REQUEST_ID_HEADER]) ??
    safeRequestId(requestIdParam(req.url ?? '')) ??
    randomUUID();
  req.headers[REQUEST_ID_HEADER] = id;
  if (res && !res.headersSent) res.setHeader('X-Request-Id', id);
  return id;
}

/**
 * `url` with `rid=<id>` added. In a signed URL it goes just before the
 * signature, which stays the last parameter as before; it is not signed
 * either way (verifyUrl skips it).
 */
export function withRequestId(url: string, id: string): string {
  const param = `${REQUEST_ID_PARAM}=${id}`;
  const sig = url.lastIndexOf('&signature=');
  if (sig >= 0) return `${url.slice(0, sig)}&${param}${url.slice(sig)}`;
  const hash = url.indexOf('#');
  const base = hash < 0 ? url : url.slice(0, hash);
  return `${base}${base.includes('?') ? '&' : '?'}${param}${hash < 0 ? '' : url.slice(hash)}`;
}
