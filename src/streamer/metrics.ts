/** The streamer's metrics (served on GET /metrics). */
import { type Counter, type Gauge, MetricsRegistry } from '../metrics.ts';

/** How a request ended (the `outcome` label of requests_total). */
export type RequestOutcome =
  | 'storage' // served from permanent storage
  | 'streamed' // served from an upstream fetch (first client or joiner)
  | 'head' // HEAD answered from storage or the catalog
  | 'not_found' // 404: no catalog entry, or every upstream said 404
  | 'upstream_error' // 502 before the first byte
  | 'upstream_timeout' // 504 before the first byte
  | 'upstream_blocked' // 503 at once: every entry's origin is blocked (src/upstream/health.ts)
  | 'broken' // the fetch failed after the first byte: connection destroyed
  | 'client_gone' // the client disconnected
  | 'bad_request'
  | 'unavailable' // shutting down
  | 'relayed' // passed to the streamer holding the path's fetch (streamer.share_fetches)
  | 'error'; // anything else (500)

export interface StreamerMetrics {
  registry: MetricsRegistry;
  requests: Counter;
  bytes: Counter;
  upstreamFetches: Counter;
  joins: Counter;
  sharedRelays: Counter;
  saves: Counter;
  tempFileBytes: Counter;
  tempFileReadBytes: Counter;
  checksumFailures: Counter;
  activeFlights: Gauge;
  /** 1 while storage.min_free is not met (new files streamed, not saved). */
  diskGuardActive: Gauge;
  /** Free bytes of each guarded directory's filesystem, at the guard's last check. */
  diskFreeBytes: Gauge;
  /** 1 while an upstream origin is blocked (src/upstream/health.ts), by origin. */
  remoteBlocked: Gauge;
  /** Consecutive connection failures of each upstream origin, by origin. */
  remoteFailures: Gauge;
}

export function createStreamerMetrics(registry = new MetricsRegistry()): StreamerMetrics {
  const p = 'pulp_lazy_streamer_';
  return {
    registry,
    requests: registry.counter(`${p}requests_total`, 'Storage-path requests by outcome.'),
    bytes: registry.counter(
      `${p}bytes_streamed_total`,
      'Body bytes sent to clients, by source (storage; upstream: fanned out as received; temp_file: read back by a client that fell behind).',
    ),
    upstreamFetches: registry.counter(
      `${p}upstream_fetches_total`,
      'Upstream GETs by result (ok, not_found, error, timeout).',
    ),
    joins: registry.counter(
      `${p}single_flight_joins_total`,
      'Requests that joined an upstream fetch already running.',
    ),
    sharedRelays: registry.counter(
      `${p}shared_relays_total`,
      'Requests passed to the streamer holding the fetch (share_fetches), by result (relayed, unreachable).',
    ),
    saves: registry.counter(`${p}saves_total`, 'Finished fetches by result (saved, not_saved, failed).'),
    tempFileBytes: registry.counter(
      `${p}temp_file_bytes_total`,
      'Bytes written to temp files, by io (direct: O_DIRECT, past the page cache; buffered).',
    ),
    tempFileReadBytes: registry.counter(
      `${p}temp_file_read_bytes_total`,
      'Bytes read back from temp files for clients that fell behind or joined late, by io (direct, buffered).',
    ),
    checksumFailures: registry.counter(
      `${p}checksum_failures_total`,
      'Fetches whose size or checksum was wrong.',
    ),
    activeFlights: registry.gauge(`${p}flights_active`, 'Upstream fetches in progress.'),
    diskGuardActive: registry.gauge(
      'pulp_lazy_disk_guard_active',
      '1 while free space is under storage.min_free: new files are streamed without being saved.',
    ),
    diskFreeBytes: registry.gauge(
      'pulp_lazy_disk_free_bytes',
      'Free bytes of the filesystem of each guarded directory (storage, working), by dir.',
    ),
    remoteBlocked: registry.gauge(
      'pulp_lazy_remote_blocked',
      '1 while an upstream origin is blocked after connection failures (remotes.block_after), by origin.',
    ),
    remoteFailures: registry.gauge(
      'pulp_lazy_remote_failures',
      'Consecutive connection failures of each upstream origin (0 after any answer), by origin.',
    ),
  };
}
