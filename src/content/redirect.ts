/**
 * Where a miss is redirected: the client's address (for the remote_ip
 * extension) and the scheme/host/port of the redirect URL, with Pulp's
 * redirect_host/redirect_port semantics: configured values win, otherwise
 * the request's own. X-Forwarded-* headers are believed only from a trusted
 * proxy peer, and then only their last hop (the one our Apache added).
 */
import type { IncomingHttpHeaders } from 'node:http';
import { encodeSegment } from './path.ts';

export interface RedirectSettings {
  /** '' = the request's scheme. */
  scheme: '' | 'http' | 'https';
  /** '' = the request's host. */
  host: string;
  /** 0 = the request's port (the content daemon passes apache.streamer_port instead). */
  port: number;
  /** Starts and ends with '/'. */
  path: string;
}

export interface RequestView {
  /** Socket peer address. */
  peer: string | undefined;
  headers: IncomingHttpHeaders;
  /** The connection to us is TLS. */
  encrypted: boolean;
}

/** `::ffff:1.2.3.4` → `1.2.3.4`; other addresses unchanged. */
export function normalizeIp(addr: string): string {
  return addr.startsWith('::ffff:') && addr.includes('.') ? addr.slice(7) : addr;
}

export function trustedSet(addrs: readonly string[]): ReadonlySet<string> {
  return new Set(addrs.map(normalizeIp));
}

export function fromTrustedProxy(req: RequestView, trusted: ReadonlySet<string>): boolean {
  return req.peer !== undefined && trusted.has(normalizeIp(req.peer));
}

/** Last element of a comma-separated header (possibly repeated), trimmed; undefined when empty. */
export function lastHop(value: string | string[] | undefined): string | undefined {
  if (value === undefined) return undefined;
  const joined = Array.isArray(value) ? value.join(',') : value;
  const last = joined.slice(joined.lastIndexOf(',') + 1).trim();
  return last === '' ? undefined : last;
}

/** The client's address: X-Forwarded-For's last hop from a trusted proxy, else the socket peer. */
export function clientAddress(req: RequestView, trusted: ReadonlySet<string>): string {
  if (fromTrustedProxy(req, trusted)) {
    const fwd = lastHop(req.headers['x-forwarded-for']);
    if (fwd) return normalizeIp(fwd.replace(/^\[(.*)\]$/, '$1'));
  }
  return normalizeIp(req.peer ?? '');
}

const HOSTNAME = /^(?:[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?|\[[0-9A-Fa-f:.]+\])$/;

/** `name`, `name:port`, `[v6]`, `[v6]:port` → parts; undefined when malformed. */
export function parseHostHeader(value: string): { host: string; port: number | undefined } | undefined {
  const m = /^(\[[^\]]*\]|[^:]*)(?::(\d{1,5}))?$/.exec(value.trim());
  if (!m || !HOSTNAME.test(m[1]!)) return undefined;
  const port = m[2] === undefined ? undefined : Number(m[2]);
  if (port !== undefined && (port < 1 || port > 65535)) return undefined;
  return { host: m[1]!, port };
}

/** `scheme://host:port` for the redirect; undefined when the request names no usable host. */
export function redirectOrigin(
  req: RequestView,
  settings: RedirectSettings,
  trusted: ReadonlySet<string>,
): string | undefined {
  const viaProxy = fromTrustedProxy(req, trusted);
  const fwdProto = viaProxy ? lastHop(req.headers['x-forwarded-proto'])?.toLowerCase() : undefined;
  const scheme =
    settings.scheme ||
    (fwdProto === 'https' || fwdProto === 'http' ? fwdProto : req.encrypted ? 'https' : 'http');
  const hostHeader = (viaProxy ? lastHop(req.headers['x-forwarded-host']) : undefined) ?? req.headers.host;
  const parsed = hostHeader === undefined ? undefined : parseHostHeader(hostHeader);
  let host: string;
  if (settings.host)
    host =
      settings.host.includes(':') && !settings.host.startsWith('[') ? `[${settings.host}]` : settings.host;
  else if (parsed) host = parsed.host;
  else return undefined;
  const port = settings.port || parsed?.port || (scheme === 'https' ? 443 : 80);
  return `${scheme}://${host}:${port}`;
}

/** `<redirect path><storage path without its leading '/'>`, each segment percent-encoded. */
export function redirectPath(redirectBase: string, storagePath: string): string {
  return redirectBase + storagePath.split('/').filter(Boolean).map(encodeSegment).join('/');
}
