/**
 * The content daemon, behind Apache at /pulp/content/ (Pulp 2's content
 * WSGI app). Per GET/HEAD:
 *   unsafe path → 403; protected repository without an acceptable client
 *   certificate → 403; no published link → 404; directory → HTML index;
 *   stored file → 200, empty body, X-Sendfile (mod_xsendfile sends the
 *   bytes); dangling link → 302 to a signed, expiring URL for the storage
 *   path on the streamer.
 * The hit path does one open + fstat + readlink (src/content/resolve.ts) and
 * no database query: the protection map is refreshed in the background
 * (src/content/entitlement.ts).
 */
import type { KeyObject } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { TLSSocket } from 'node:tls';
import type { Config } from '../config.ts';
import { createEntitlement, type Entitlement } from '../content/entitlement.ts';
import { renderIndex } from '../content/listing.ts';
import { parseContentPath } from '../content/path.ts';
import {
  clientAddress,
  fromTrustedProxy,
  type RequestView,
  redirectOrigin,
  redirectPath,
  trustedSet,
} from '../content/redirect.ts';
import { createContentResolver, type Resolution } from '../content/resolve.ts';
import type { Database } from '../db/index.ts';
import { DatabaseError, oneLine } from '../errors.ts';
import { REQUEST_ID_HEADER, requestId, safeRequestId, withRequestId } from '../http/request-id.ts';
import type { Logger } from '../log.ts';
import { METRICS_CONTENT_TYPE, MetricsRegistry } from '../metrics.ts';
import { loadPrivateKey, signUrl } from '../signing/index.ts';
import { type AccessRecorder, createAccessRecorder } from '../storage/access.ts';
import { formatAddress, listenOn } from '../util/listen.ts';

export const CONTENT_MOUNT = '/pulp/content/';
/** How often the published_path → protection map is reloaded. */
export const PROTECTION_REFRESH_MS = 5000;
const DEFAULT_CLOSE_DEADLINE_MS = 10_000;

export type Outcome =
  | 'hit'
  | 'miss'
  | 'notfound'
  | 'forbidden'
  | 'directory'
  | 'bad_request'
  | 'method_not_allowed'
  | 'unavailable'
  | 'error';

export interface ContentDaemonDeps {
  db: Database;
  logger: Logger;
  /** Epoch milliseconds; used for signing and certificate validity (tests move it). */
  clock?: () => number;
  /** Signing key; defaults to the one in config paths.keys. */
  privateKey?: KeyObject;
  /** Protection map refresh interval (default PROTECTION_REFRESH_MS). */
  protectionRefreshMs?: number;
  /**
   * How hits and misses are answered. Default: X-Sendfile for hits and a
   * signed redirect for misses (behind Apache). The all-in-one server sends
   * the bytes itself instead (src/daemons/serve.ts).
   */
  delivery?: Delivery;
  /** Address to bind (default config content.listen). */
  listen?: string;
  /** Requests outside /pulp/content/ (default: 404). Returns false when it did not take the request. */
  otherRoutes?: (req: http.IncomingMessage, res: http.ServerResponse, pathname: string) => Promise<boolean>;
  /** Extra metrics text appended to /metrics. */
  extraMetrics?: () => string;
  /** Where GET hits of unit files are recorded (default: a recorder of its own, closed with the daemon). */
  access?: AccessRecorder;
}

export type FileResolution = Extract<Resolution, { kind: 'file' }>;
export type MissingResolution = Extract<Resolution, { kind: 'missing' }>;

/** Answers hits and misses; each returns the outcome it produced. */
export interface Delivery {
  file(req: http.IncomingMessage, res: http.ServerResponse, r: FileResolution): Promise<Outcome>;
  missing(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    r: MissingResolution,
    view: RequestView,
  ): Promise<Outcome>;
}

export interface ContentDaemon {
  server: http.Server;
  /** Loads the protection map, then binds config content.listen; resolves with the bound address. */
  listen(): Promise<AddressInfo | string>;
  /** Stops accepting, lets in-flight requests finish, closes every connection after the deadline. */
  close(opts?: { deadlineMs?: number }): Promise<void>;
  /** Reloads the protection map now (tests; the daemon also does it every few seconds). */
  refreshProtection(): Promise<void>;
  metrics: MetricsRegistry;
}

/**
 * The X-Sendfile header value: mod_xsendfile URL-decodes it (XSendFileUnescape
 * defaults to On), so '%' and anything outside printable ASCII is encoded.
 */
export function xsendfileValue(file: string): string {
  return file.replace(/[^\x21-\x24\x26-\x7e]/gu, (c) => encodeURIComponent(c));
}

export function createContentDaemon(config: Config, deps: ContentDaemonDeps): ContentDaemon {
  const log = deps.logger.child({ module: 'content' });
  const clock = deps.clock ?? Date.now;
  const privateKey = deps.delivery ? undefined : (deps.privateKey ?? loadPrivateKey(config.paths.keys));
  const resolver = createContentResolver(config.paths);
  const entitlement: Entitlement = createEntitlement({ db: deps.db, logger: deps.logger });
  const trusted = trustedSet(config.content.trusted_proxies);
  const certHeaderName = config.content.client_cert_header.toLowerCase();
  const access =
    deps.access ??
    createAccessRecorder(deps.db, { storageRoot: path.resolve(config.paths.storage), clock, logger: log });
  const metrics = new MetricsRegistry();
  const requests = metrics.counter('pulp_lazy_content_requests_total', 'Content requests by outcome.');
  const protectedRepos = metrics.gauge(
    'pulp_lazy_content_protected_repositories',
    'Protected repositories known.',
  );
  let closing = false;

  /** Sends a complete response; `outcome` undefined = not a content request (healthz, metrics). */
  const finish = (
    res: http.ServerResponse,
    outcome: Outcome | undefined,
    status: number,
    headers: http.OutgoingHttpHeaders,
    body = '',
  ) => {
    if (outcome) requests.inc({ outcome });
    if (closing) headers.Connection = 'close';
    headers['Content-Length'] = Buffer.byteLength(body);
    res.writeHead(status, headers);
    res.end(body);
  };
  const text = (
    res: http.ServerResponse,
    outcome: Outcome | undefined,
    status: number,
    msg: string,
    extra = {},
  ) => finish(res, outcome, status, { 'Content-Type': 'text/plain; charset=utf-8', ...extra }, `${msg}\n`);

  const view = (req: http.IncomingMessage): RequestView => ({
    peer: req.socket.remoteAddress,
    headers: req.headers,
    encrypted: Boolean((req.socket as TLSSocket).encrypted),
  });

  /** `reqId` is the request's id; `given`: it came with the request (Apache's or the client's). */
  const handle = async (
    req: http.IncomingMessage,
    res: http.ServerResponse,
    log: Logger,
    id: { reqId: string; given: boolean },
  ) => {
    const target = req.url ?? '';
    const q = target.indexOf('?');
    const pathname = q < 0 ? target : target.slice(0, q);
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      return text(res, 'method_not_allowed', 405, 'method not allowed', { Allow: 'GET, HEAD' });
    }
    if (pathname === '/healthz') {
      return entitlement.loaded
        ? text(res, undefined, 200, 'ok')
        : text(res, undefined, 503, 'protection map not loaded');
    }
    if (pathname === '/metrics') {
      protectedRepos.set({}, entitlement.size);
      const body = metrics.render() + (deps.extraMetrics?.() ?? '');
      return finish(res, undefined, 200, { 'Content-Type': METRICS_CONTENT_TYPE }, body);
    }
    let raw: string;
    if (pathname === CONTENT_MOUNT.slice(0, -1)) raw = '';
    else if (pathname.startsWith(CONTENT_MOUNT)) raw = pathname.slice(CONTENT_MOUNT.length);
    else if (deps.otherRoutes && (await deps.otherRoutes(req, res, pathname))) return;
    else return text(res, 'notfound', 404, 'not found');

    const cp = parseContentPath(raw);
    if (!cp) {
      log.info({ path: pathname }, 'unsafe path refused');
      return text(res, 'forbidden', 403, 'forbidden');
    }
    if (!entitlement.loaded) return text(res, 'unavailable', 503, 'not ready', { 'Retry-After': '5' });
    const v = view(req);
    const now = clock();
    if (entitlement.size > 0) {
      // Only the local Apache may vouch for a client certificate.
      const cert = fromTrustedProxy(v, trusted) ? headerValue(req.headers[certHeaderName]) : undefined;
      const ent = entitlement.check(cp.segments, cert, now);
      if (!ent.ok) {
        log.info({ path: cp.rel, repo: ent.repo, reason: ent.reason }, 'entitlement refused');
        return text(res, 'forbidden', 403, 'forbidden');
      }
    }

    const r: Resolution = await resolver.resolve(cp);
    switch (r.kind) {
      case 'file':
        log.debug({ path: cp.rel, file: r.file }, 'hit');
        // A GET hit counts as a use of the unit (HEAD does not); published metadata is ignored.
        if (req.method === 'GET') access.served(r.file);
        if (deps.delivery) return void requests.inc({ outcome: await deps.delivery.file(req, res, r) });
        return finish(res, 'hit', 200, {
          'Content-Type': r.contentType,
          ETag: r.etag,
          'Last-Modified': r.lastModified,
          ...(r.cacheControl ? { 'Cache-Control': r.cacheControl } : {}),
          'X-Sendfile': xsendfileValue(r.file),
        });
      case 'missing': {
        if (deps.delivery) {
          log.debug({ path: cp.rel, storagePath: r.storagePath }, 'miss');
          return void requests.inc({ outcome: await deps.delivery.missing(req, res, r, v) });
        }
        const origin = redirectOrigin(
          v,
          { ...config.redirect, port: config.redirect.port || config.apache.streamer_port },
          trusted,
        );
        if (!origin) return text(res, 'bad_request', 400, 'bad or missing Host header');
        const url = `${origin}${redirectPath(config.redirect.path, r.storagePath)}`;
        const extensions = config.content.bind_remote_ip
          ? { remote_ip: clientAddress(v, trusted) }
          : undefined;
        const location = signUrl(url, {
          privateKey: privateKey!,
          ttlMs: config.signing.ttl,
          now,
          ...(extensions ? { extensions } : {}),
        });
        log.debug({ path: cp.rel, storagePath: r.storagePath }, 'miss, redirecting');
        // A given request id rides along unsigned (`rid`); Apache makes it the streamer's X-Request-Id.
        // One made here is not added: the same request gets the same redirect.
        return finish(res, 'miss', 302, {
          Location: id.given ? withRequestId(location, id.reqId) : location,
          'Cache-Control': 'no-store',
        });
      }
      case 'directory':
        return finish(
          res,
          'directory',
          200,
          { 'Content-Type': 'text/html; charset=utf-8' },
          renderIndex(CONTENT_MOUNT, cp.segments, r.entries),
        );
      case 'forbidden':
        log.info({ path: cp.rel, reason: r.reason }, 'path refused');
        return text(res, 'forbidden', 403, 'forbidden');
      case 'notfound':
        return text(res, 'notfound', 404, 'not found');
    }
  };

  const server = http.createServer((req, res) => {
    const given = safeRequestId(req.headers[REQUEST_ID_HEADER]) !== undefined;
    const reqId = requestId(req, res);
    const rlog = log.child({ reqId });
    handle(req, res, rlog, { reqId, given }).catch((err) => {
      rlog.error({ err, path: req.url }, 'content request failed');
      if (!res.headersSent) text(res, 'error', 500, 'internal error');
      else res.destroy();
    });
  });
  server.keepAliveTimeout = config.content.keep_alive_timeout;
  // Above the keep-alive timeout, so an idle pooled connection is never cut mid-request-head.
  server.headersTimeout = config.content.keep_alive_timeout + 5000;

  return {
    server,
    metrics,
    refreshProtection: () => entitlement.refresh(),
    async listen() {
      try {
        await entitlement.refresh();
      } catch (err) {
        throw new DatabaseError(`content daemon: cannot load repository protection: ${oneLine(err)}`, err);
      }
      entitlement.start(deps.protectionRefreshMs ?? PROTECTION_REFRESH_MS);
      // The resolver judges links against the real roots: they must exist.
      for (const dir of [config.paths.storage, config.paths.published]) {
        await mkdir(dir, { recursive: true }).catch(() => {});
      }
      const addr = await listenOn(server, deps.listen ?? config.content.listen);
      log.info({ listen: formatAddress(addr) }, 'content daemon listening');
      return addr;
    },
    async close(opts = {}) {
      closing = true;
      entitlement.stop();
      // The hits of the requests still draining are written too.
      const flushAccess = () => (deps.access ? Promise.resolve() : access.close());
      if (!server.listening) return flushAccess();
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      const timer = setTimeout(
        () => server.closeAllConnections(),
        opts.deadlineMs ?? DEFAULT_CLOSE_DEADLINE_MS,
      );
      try {
        await closed;
      } finally {
        clearTimeout(timer);
        await flushAccess();
      }
      log.info('content daemon stopped');
    },
  };
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v.join('\n') : v;
}
