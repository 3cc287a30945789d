/**
 * The streamer's core, independent of HTTP routing: answers one request for
 * one absolute storage path (already decoded, signature already checked).
 *
 *   GET:  join the upstream fetch of the path when one is running (no
 *         database query) → else catalog lookup (404 when absent; cached
 *         briefly and shared by concurrent requests, see catalog.ts) → the
 *         file from storage when it is there (verified earlier) → else,
 *         without the entries on blocked origins (src/upstream/health.ts;
 *         none left: 503 with Retry-After at once), start the single
 *         upstream fetch for the path (see flight.ts) and stream from it.
 *   HEAD: answered from storage or the catalog without any upstream request
 *         and without temp files: Content-Length is the stored size or the
 *         catalog size (absent when the catalog has none), Content-Type from
 *         the file name. A catalog HEAD can therefore say 200 for a file
 *         upstream no longer has; the GET would then answer 404.
 *
 * Errors before the first byte are JSON bodies, after it the connection is
 * cut (outcome.ts). The running flights are kept in flights.ts.
 */
import { type Stats, statSync } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import path from 'node:path';
import type { Config } from '../config.ts';
import type { CatalogEntryDoc, Database, RemoteHealthDoc } from '../db/index.ts';
import { NotInCatalog, PulpLazyError, UpstreamBlocked, UpstreamError } from '../errors.ts';
import { requestId } from '../http/request-id.ts';
import { fileVanished } from '../http/send-file.ts';
import type { Logger } from '../log.ts';
import { type AccessRecorder, createAccessRecorder } from '../storage/access.ts';
import { DiskGuard, guardedDirs } from '../storage/free-space.ts';
import { UpstreamClient } from '../upstream/client.ts';
import { healthSettings, probeThrough, RemoteHealth } from '../upstream/health.ts';
import { createCatalogLookup, usableEntries } from './catalog.ts';
import { Flight, type FlightSettings } from './flight.ts';
import { FlightRegistry } from './flights.ts';
import { type CacheControlOverride, contentTypeFor } from './headers.ts';
import { MemoryGuard } from './memory-guard.ts';
import { createStreamerMetrics, type RequestOutcome, type StreamerMetrics } from './metrics.ts';
import { sendError, sendOutcome, shuttingDown } from './outcome.ts';
import { sendFromFlight, sendStored } from './send.ts';
import { createSharedFlights, JOIN_HEADER, type SharedFlights } from './shared-flight.ts';
import { WriteBudget } from './write-budget.ts';

/** Request header the download tasks send: their fetches never queue a deferred download. */
export const STREAM_REQUEST_HEADER = 'pulp-stream-request';

export interface StreamerServiceDeps {
  db: Database;
  logger: Logger;
  clock?: () => number;
  /** Where complete GETs of unit files are recorded (default: a recorder of its own, closed with the service). */
  access?: AccessRecorder;
}

export interface StreamerService {
  /**
   * Answers a request for a stored file, from storage or upstream. `opts.cacheControl`
   * replaces the streamer's Cache-Control on a 200/206 (see CacheControlOverride).
   */
  handleStoragePath(
    req: IncomingMessage,
    res: ServerResponse,
    storagePath: string,
    opts?: { cacheControl?: CacheControlOverride },
  ): Promise<void>;
  metrics: StreamerMetrics;
  /** Upstream fetches running now, by storage path. */
  flights: ReadonlyMap<string, Flight>;
  /**
   * Turns on single-flight across streamers (streamer.share_fetches) once the
   * daemon knows the URL the others reach it at.
   */
  shareFetches(advertiseUrl: string): void;
  /**
   * Why the last fetch of `storagePath` failed (a disk full, a checksum), if
   * its last fetch failed: an in-process client only sees its response cut.
   */
  lastFailure(storagePath: string): string | undefined;
  /** Refuses new work, waits for running work until the deadline, then aborts it and removes temp files. */
  close(opts?: { deadlineMs?: number }): Promise<void>;
}

export function createStreamerService(config: Config, deps: StreamerServiceDeps): StreamerService {
  const clock = deps.clock ?? Date.now;
  const log = deps.logger.child({ module: 'streamer' });
  const metrics = createStreamerMetrics();
  const storageRoot = path.resolve(config.paths.storage);
  const s = config.streamer;
  // Every answer and connection failure of the streamer's requests is told to the origins' health.
  const health = new RemoteHealth(deps.db, healthSettings(config.remotes), { clock, log });
  const pool = new UpstreamClient(
    { connectMs: s.connect_timeout, headersMs: s.headers_timeout, bodyIdleMs: s.body_idle_timeout },
    { health },
  );
  health.start(probeThrough(pool, deps.db), { onRefresh: (docs) => remoteGauges(metrics, docs) });
  const settings: FlightSettings = {
    workingDir: config.paths.working,
    saveToStorage: s.save_to_storage,
    cacheTimeoutMs: s.cache_timeout,
    failureCooldownMs: s.failure_cooldown,
    orphanSaveTimeoutMs: s.orphan_save_timeout,
    directIoMinSize: s.direct_io_min_size,
  };
  const catalog = createCatalogLookup(deps.db, { clock });
  const budget = new WriteBudget();
  const memory = new MemoryGuard();
  const disk = diskGuard(config, log, clock, metrics);
  const flightDeps = {
    db: deps.db,
    catalog,
    logger: log,
    clock,
    pool,
    budget,
    memory,
    metrics,
    settings,
    disk,
    health,
  };
  const flights = new FlightRegistry(
    (storagePath, entries, onRetire, reqId) =>
      new Flight(storagePath, entries, reqId ? { ...flightDeps, reqId } : flightDeps, onRetire),
    memory,
  );
  const access = deps.access ?? createAccessRecorder(deps.db, { storageRoot, clock, logger: log });
  const active = new Set<ServerResponse>();
  let closing = false;
  let shared: SharedFlights | undefined;

  async function serve(
    req: IncomingMessage,
    res: ServerResponse,
    storagePath: string,
    reqId: string,
    cacheOverride: CacheControlOverride,
  ): Promise<RequestOutcome> {
    const method = req.method ?? 'GET';
    if (method !== 'GET' && method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      throw new PulpLazyError('PL_METHOD_NOT_ALLOWED', `method ${method} not allowed`);
    }
    checkPath(storagePath, storageRoot);
    const onBytes = (source: string) => (n: number) => metrics.bytes.inc({ source }, n);
    const running = method === 'GET' && !closing ? flights.get(storagePath) : undefined;
    if (running) {
      metrics.joins.inc();
      return stream(req, res, running, onBytes, cacheOverride);
    }
    const entries = await catalog.entries(storagePath);
    if (entries.length === 0) throw new NotInCatalog(storagePath);

    const st = storedFile(storagePath, entries);
    if (st) {
      try {
        const r = await sendStored(
          req,
          res,
          storagePath,
          st,
          s.cache_timeout,
          onBytes('storage'),
          cacheOverride,
        );
        return r === 'complete' ? (method === 'HEAD' ? 'head' : 'storage') : sendOutcome(r);
      } catch (err) {
        // Reclaimed between the stat and the open: fetched like any file not stored.
        if (!fileVanished(err, res)) throw err;
      }
    }
    let usable = usableEntries(entries, clock());
    if (usable.length === 0) {
      throw new UpstreamError(`every source of ${storagePath} failed verification recently; try again later`);
    }
    if (method === 'HEAD') {
      const size = usable.find((e) => e.size !== undefined)?.size;
      res.writeHead(200, {
        'content-type': contentTypeFor(storagePath),
        ...(size !== undefined ? { 'content-length': String(size) } : {}),
      });
      res.end();
      return 'head';
    }
    if (closing) throw shuttingDown();

    let flight = flights.get(storagePath);
    if (!flight) {
      // Entries on blocked origins are skipped; when none is left, 503 at once: no upstream connection,
      // no flight, nothing queued (the misses that blocked the origin queued their units; the client retries).
      const open = openEntries(usable, health);
      if (open instanceof UpstreamBlocked) throw open;
      usable = open;
    }
    if (flight) {
      metrics.joins.inc();
      return stream(req, res, flight, onBytes, cacheOverride);
    }
    if (shared && req.headers[JOIN_HEADER] === undefined) {
      const started = await flights.startShared(shared, storagePath, usable, reqId);
      if (started.kind === 'flight') return stream(req, res, started.flight, onBytes, cacheOverride);
      const r = await shared.relay(req, res, started.url, storagePath);
      metrics.sharedRelays.inc({ result: r });
      if (r === 'relayed') return 'relayed';
      if (closing) throw shuttingDown();
    }
    flight = flights.get(storagePath) ?? flights.start(storagePath, usable, reqId);
    return stream(req, res, flight, onBytes, cacheOverride);
  }

  async function stream(
    req: IncomingMessage,
    res: ServerResponse,
    flight: Flight,
    onBytes: (source: string) => (n: number) => void,
    cacheOverride: CacheControlOverride,
  ): Promise<RequestOutcome> {
    const client = flight.attach({ streamRequest: fromTask(req) });
    try {
      const gone = new Promise<'gone'>((resolve) => res.once('close', () => resolve('gone')));
      if ((await Promise.race([flight.ready.then(() => 'ready' as const), gone])) === 'gone')
        return 'client_gone';
      const sinks = { live: onBytes('upstream'), file: onBytes('temp_file') };
      return sendOutcome(await sendFromFlight(flight, res, sinks, req.headers.range, cacheOverride));
    } finally {
      client.detach();
    }
  }

  async function handleStoragePath(
    req: IncomingMessage,
    res: ServerResponse,
    storagePath: string,
    opts: { cacheControl?: CacheControlOverride } = {},
  ): Promise<void> {
    const started = clock();
    const reqId = requestId(req, res);
    const rlog = log.child({ reqId });
    active.add(res);
    let outcome: RequestOutcome = 'error';
    try {
      outcome = await serve(req, res, storagePath, reqId, opts.cacheControl);
    } catch (err) {
      outcome = sendError(res, err, rlog);
    } finally {
      active.delete(res);
      // A client's complete GET (a download task's copy is no use).
      if ((outcome === 'storage' || outcome === 'streamed') && req.method === 'GET' && !fromTask(req))
        access.served(storagePath);
      metrics.requests.inc({ outcome });
      const level = outcome === 'error' ? 'error' : 'info';
      rlog[level]({ method: req.method, path: storagePath, outcome, ms: clock() - started }, 'request');
    }
  }

  async function close(opts: { deadlineMs?: number } = {}): Promise<void> {
    closing = true;
    disk.stop();
    const deadlineMs = opts.deadlineMs ?? s.shutdown_timeout;
    const idle = async () => {
      while (flights.size > 0 || active.size > 0) {
        await flights.settled();
        if (active.size > 0) await new Promise((r) => setTimeout(r, 20));
      }
    };
    let timer: NodeJS.Timeout | undefined;
    const expired = new Promise<'expired'>((resolve) => {
      timer = setTimeout(() => resolve('expired'), deadlineMs);
    });
    const result = await Promise.race([idle().then(() => 'idle' as const), expired]);
    clearTimeout(timer);
    if (result === 'expired') {
      log.warn(
        { flights: flights.size, requests: active.size },
        'shutdown deadline reached; aborting transfers',
      );
      flights.abortAll(shuttingDown());
      for (const res of active) res.destroy();
      await flights.settled();
    }
    await health.stop();
    await pool.close();
    await shared?.close();
    if (!deps.access) await access.close();
  }

  function shareFetches(advertiseUrl: string): void {
    shared = createSharedFlights({
      db: deps.db,
      logger: deps.logger,
      clock,
      advertiseUrl: advertiseUrl.replace(/\/+$/, ''),
      leaseMs: s.fetch_lease,
      connectMs: s.connect_timeout,
    });
    log.info({ advertise_url: advertiseUrl }, 'sharing upstream fetches with the other streamers');
  }

  return {
    handleStoragePath,
    metrics,
    flights: flights.byPath,
    shareFetches,
    lastFailure: (storagePath) => flights.lastFailure(storagePath),
    close,
  };
}

/**
 * The guard of storage.min_free, measured every second as well so that
 * /metrics says the state without waiting for a miss.
 */
function diskGuard(
  config: Config,
  log: Logger,
  clock: () => number,
  metrics: StreamerMetrics,
): DiskGuard & { stop(): void } {
  const guard = new DiskGuard(guardedDirs(config), config.storage.min_free, {
    clock,
    log,
    onCheck: (st) => {
      metrics.diskGuardActive.set({}, st.low ? 1 : 0);
      for (const d of st.dirs) metrics.diskFreeBytes.set({ dir: d.dir }, d.free);
    },
  });
  const check = () => void guard.check().catch(() => {});
  check();
  const timer = setInterval(check, 1000);
  timer.unref();
  return Object.assign(guard, { stop: () => clearInterval(timer) });
}

/** A download task's copy (sweep, download-repo), not a client's request. */
const fromTask = (req: IncomingMessage) => req.headers[STREAM_REQUEST_HEADER] !== undefined;

/** The entries whose origin is not blocked, or (none left) the blocked error of the first. */
function openEntries(entries: CatalogEntryDoc[], health: RemoteHealth): CatalogEntryDoc[] | UpstreamBlocked {
  let first: UpstreamBlocked | undefined;
  const open = entries.filter((e) => {
    const blocked = health.blocked(e.url);
    first ??= blocked;
    return !blocked;
  });
  return open.length === 0 && first ? first : open;
}

/** /metrics: each origin's blocked flag and failure count (pulp_lazy_remote_*). */
function remoteGauges(metrics: StreamerMetrics, docs: RemoteHealthDoc[]): void {
  for (const d of docs) {
    metrics.remoteBlocked.set({ origin: d._id }, d.blocked_at ? 1 : 0);
    metrics.remoteFailures.set({ origin: d._id }, d.failures);
  }
}

/** The path must be absolute, normalized and inside the storage root (else it cannot be in the catalog). */
function checkPath(p: string, storageRoot: string): void {
  if (!path.posix.isAbsolute(p) || p.includes('\0') || path.posix.normalize(p) !== p) {
    throw new PulpLazyError('PL_BAD_PATH', `not a normalized absolute path: ${JSON.stringify(p)}`);
  }
  if (!p.startsWith(`${storageRoot}/`)) throw new NotInCatalog(p);
}

/**
 * The stored file, when present with a size some entry expects (files enter
 * storage only verified). A synchronous stat, like the content resolver's
 * (src/content/resolve.ts): through the thread pool it would queue behind the
 * flights' temp-file reads and writes.
 */
function storedFile(file: string, entries: CatalogEntryDoc[]): Stats | undefined {
  let st: Stats | undefined;
  try {
    st = statSync(file, { throwIfNoEntry: false });
  } catch {
    return undefined;
  }
  if (!st?.isFile()) return undefined;
  const sizes = entries.flatMap((e) => (e.size === undefined ? [] : [e.size]));
  if (sizes.length > 0 && !sizes.includes(st.size)) return undefined;
  return st;
}
