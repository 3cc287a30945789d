/**
 * The streamer daemon: Squid's origin server. Routes
 *   GET /healthz            200 {"status":"ok"} (503 while shutting down)
 *   GET /metrics            Prometheus text
 *   GET|HEAD <storage path> the file (see src/streamer/service.ts)
 * The request path is the percent-encoded absolute storage path; the
 * signature was checked and stripped in front of Squid.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Config } from '../config.ts';
import type { Database } from '../db/index.ts';
import { ConfigError, PulpLazyError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { METRICS_CONTENT_TYPE } from '../metrics.ts';
import { removeDeadWritersTemps, tempDirOf } from '../storage/temp-files.ts';
import type { StreamerMetrics } from '../streamer/metrics.ts';
import { sendError } from '../streamer/outcome.ts';
import { createStreamerService } from '../streamer/service.ts';
import { formatAddress, listenOn } from '../util/listen.ts';

export interface StreamerDeps {
  db: Database;
  logger: Logger;
  clock?: () => number;
}

export interface Streamer {
  server: http.Server;
  /** The request listener of `server` (routing + storage paths). */
  handler: (req: http.IncomingMessage, res: http.ServerResponse) => void;
  /** Serves one decoded absolute storage path; reused by the all-in-one server. */
  handleStoragePath(req: http.IncomingMessage, res: http.ServerResponse, storagePath: string): Promise<void>;
  metrics: StreamerMetrics;
  /** Why the last fetch of a storage path failed, if it did (StreamerService.lastFailure). */
  lastFailure(storagePath: string): string | undefined;
  /** Binds config.streamer.listen (`host:port` or `unix:/path`). */
  listen(): Promise<AddressInfo | string>;
  /** Stops accepting, lets transfers finish until the deadline (default streamer.shutdown_timeout), then cuts them. */
  close(opts?: { deadlineMs?: number }): Promise<void>;
}

export function createStreamer(config: Config, deps: StreamerDeps): Streamer {
  const log = deps.logger.child({ module: 'streamer' });
  const service = createStreamerService(config, deps);
  let closing = false;

  const handler = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const target = requestPath(req.url ?? '/');
    if (target === undefined) {
      sendError(res, new PulpLazyError('PL_BAD_PATH', 'request path is not valid percent-encoding'), log);
      return;
    }
    if (target === '/healthz' || target === '/metrics') {
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.setHeader('allow', 'GET, HEAD');
        sendError(res, new PulpLazyError('PL_METHOD_NOT_ALLOWED', `method ${req.method} not allowed`), log);
        return;
      }
      const [status, type, body] =
        target === '/healthz'
          ? [
              closing ? 503 : 200,
              'application/json',
              `${JSON.stringify({ status: closing ? 'closing' : 'ok' })}\n`,
            ]
          : [200, METRICS_CONTENT_TYPE, service.metrics.registry.render()];
      res.writeHead(status, {
        'content-type': type,
        'content-length': Buffer.byteLength(body),
        'cache-control': 'no-store',
      });
      res.end(body);
      return;
    }
    void service.handleStoragePath(req, res, target);
  };

  const server = http.createServer({ keepAliveTimeout: config.streamer.keep_alive_timeout }, handler);

  return {
    server,
    handler,
    handleStoragePath: service.handleStoragePath,
    metrics: service.metrics,
    lastFailure: service.lastFailure,
    async listen() {
      await removePredecessorTemps(config, log);
      const addr = await listenOn(server, config.streamer.listen);
      if (config.streamer.share_fetches) {
        const url = advertiseUrl(config.streamer.advertise_url, addr);
        if (!url) {
          server.close();
          throw new ConfigError(
            `streamer.share_fetches: set streamer.advertise_url (listening on ${formatAddress(addr)}, which other streamers cannot reach)`,
          );
        }
        service.shareFetches(url);
      }
      log.info({ listen: formatAddress(addr) }, 'streamer listening');
      return addr;
    },
    async close(opts = {}) {
      closing = true;
      const closed = server.listening
        ? new Promise<void>((resolve) => server.close(() => resolve()))
        : Promise.resolve();
      await service.close(opts);
      server.closeAllConnections();
      await closed;
      log.info('streamer stopped');
    },
  };
}

/**
 * At start, before serving: removes the temp files a dead streamer (or other
 * writer) of this host left in the streamer's temp dir, e.g. one killed with
 * -9, and logs how many. A temp file is only ever read by the flight that
 * writes it, so nothing else could still want these.
 */
export async function removePredecessorTemps(config: Config, log: Logger): Promise<number> {
  const dir = tempDirOf(config.paths.working);
  const removed = await removeDeadWritersTemps(dir);
  log.info({ dir, removed }, 'removed the temp files of dead processes');
  return removed;
}

/** The URL other streamers reach this one at: the configured one, else `listen` when it names a host. */
export function advertiseUrl(configured: string, addr: AddressInfo | string): string | undefined {
  if (configured) return configured;
  if (typeof addr === 'string' || addr.address === '0.0.0.0' || addr.address === '::') return undefined;
  return `http://${formatAddress(addr)}`;
}

/** The decoded path of an origin-form (or absolute-form) request target; undefined when undecodable. */
export function requestPath(url: string): string | undefined {
  let raw = url;
  if (!raw.startsWith('/')) {
    try {
      raw = new URL(raw).pathname;
    } catch {
      return undefined;
    }
  }
  const q = raw.indexOf('?');
  if (q >= 0) raw = raw.slice(0, q);
  try {
    return decodeURIComponent(raw);
  } catch {
    return undefined;
  }
}
