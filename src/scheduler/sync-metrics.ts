/**
 * The scheduler's GET /metrics (on sync.metrics_listen): per repository, the last
 * sync's time, result and duration, failures in a row and the next sync, read from
 * the database at each scrape (so syncs run by `pulp-lazy sync` count too), and the
 * syncs this scheduler ran.
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Database, RepoDoc } from '../db/index.ts';
import type { Logger } from '../log.ts';
import { type Counter, METRICS_CONTENT_TYPE, MetricsRegistry } from '../metrics.ts';
import { listRepos } from '../repos/index.ts';
import { formatAddress, listenOn } from '../util/listen.ts';
import { type SyncTiming, syncView } from './plan.ts';

/** The per-repository sync gauges in the Prometheus text format. */
export function renderSyncMetrics(repos: RepoDoc[], now: number, timing: SyncTiming): string {
  const reg = new MetricsRegistry();
  const g = (name: string, help: string) => reg.gauge(`pulp_lazy_repo_${name}`, help);
  const lastStart = g('last_sync_start_timestamp_seconds', 'Start of the last sync (Unix time).');
  const lastEnd = g('last_sync_end_timestamp_seconds', 'End of the last finished sync (Unix time).');
  const success = g('last_sync_success', '1 when the last finished sync succeeded, 0 when it failed.');
  const duration = g('last_sync_duration_seconds', 'Duration of the last finished sync.');
  const failures = g('sync_failures', 'Failed syncs in a row.');
  const next = g('next_sync_timestamp_seconds', 'When the next sync is due (Unix time); absent: none.');
  const running = g('sync_running', '1 while a sync of the repository has started and not finished.');
  for (const r of repos) {
    const v = syncView(r, now, timing);
    const repo = { repo: r._id };
    const secs = (iso: string) => Date.parse(iso) / 1000;
    failures.set(repo, v.failures);
    running.set(repo, v.last_result === 'running' ? 1 : 0);
    if (v.last_started_at) lastStart.set(repo, secs(v.last_started_at));
    if (v.last_finished_at) lastEnd.set(repo, secs(v.last_finished_at));
    if (v.last_result === 'ok' || v.last_result === 'failed')
      success.set(repo, v.last_result === 'ok' ? 1 : 0);
    if (v.last_duration_ms !== null) duration.set(repo, v.last_duration_ms / 1000);
    if (v.next_at) next.set(repo, secs(v.next_at));
  }
  return reg.render();
}

export interface MetricsServer {
  close(): Promise<void>;
}

/** Serves GET /metrics and GET /healthz on `listen`; logs "scheduler listening". */
export async function serveSyncMetrics(
  listen: string,
  deps: { db: Database; timing: SyncTiming; runs: Counter; logger: Logger },
): Promise<MetricsServer> {
  const server = http.createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' || (path !== '/metrics' && path !== '/healthz')) {
      res.writeHead(404).end();
      return;
    }
    if (path === '/healthz') {
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok\n');
      return;
    }
    listRepos(deps.db).then(
      (repos) => {
        const body = `${deps.runs.render()}\n${renderSyncMetrics(repos, Date.now(), deps.timing)}`;
        res.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE }).end(body);
      },
      (err: unknown) => {
        deps.logger.warn({ event: 'metrics.failed', err }, 'could not read the repositories');
        res.writeHead(503).end();
      },
    );
  });
  const addr: AddressInfo | string = await listenOn(server, listen);
  deps.logger.info({ listen: formatAddress(addr) }, 'scheduler listening');
  return {
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
