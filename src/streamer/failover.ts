/**
 * Failover across a path's catalog entries, before the first byte: the
 * entries are asked in order until one answers 200 with a Content-Length
 * the catalog agrees with. That answer commits the flight to its entry:
 * nothing has been sent to anyone before it, and after it a failure ends
 * the flight (no other entry is tried once bytes may have gone out).
 */
import type { Dispatcher } from 'undici';
import type { CatalogEntryDoc, Database } from '../db/index.ts';
import { ChecksumMismatch, PulpLazyError, UpstreamError, UpstreamNotFound } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { UpstreamClient } from '../upstream/client.ts';
import { redactUrl, toUpstreamError } from '../upstream/describe.ts';
import type { RemoteHealth } from '../upstream/health.ts';
import type { CatalogLookup } from './catalog.ts';
import { GoneUpstream, recordGone } from './drift.ts';
import type { StreamerMetrics } from './metrics.ts';

export interface FailoverDeps {
  /** Where a file gone upstream is recorded (drift.ts); absent: not recorded. */
  db?: Database;
  /** Finds the repository whose importer made an entry. */
  catalog: Pick<CatalogLookup, 'repo'>;
  pool: Pick<UpstreamClient, 'get'>;
  metrics: Pick<StreamerMetrics, 'upstreamFetches'>;
  log: Logger;
  clock: () => number;
  /** Sent upstream as X-Request-Id. */
  reqId?: string | undefined;
  /** Aborts the request in progress; once aborted, its reason is thrown. */
  signal: AbortSignal;
  /** Says which entries' origins are blocked (skipped without a request); absent: none. */
  health?: Pick<RemoteHealth, 'blocked'> | undefined;
  /** Called before each request (the temp file is created while upstream answers). */
  beforeRequest: () => void;
  /** Records an entry whose Content-Length contradicts the catalog (a verification failure). */
  mismatch: (entry: CatalogEntryDoc, err: ChecksumMismatch) => Promise<void>;
}

/** The entry that answered, and its response (body not read yet). */
export interface Answer {
  entry: CatalogEntryDoc;
  res: Dispatcher.ResponseData;
  /** Expected size: upstream Content-Length, else the catalog size. */
  size: number | undefined;
  /** When the request was sent and when its answer was accepted (clock). */
  asked: number;
  answered: number;
}

/** Asks `entries` in order; the first good answer, or the failure to report (pickFailure). */
export async function firstAnswer(
  path: string,
  entries: readonly CatalogEntryDoc[],
  deps: FailoverDeps,
): Promise<Answer> {
  const failures: PulpLazyError[] = [];
  for (const entry of entries) {
    if (deps.signal.aborted) throw deps.signal.reason;
    // A blocked origin (src/upstream/health.ts) is not asked: the next entry at once.
    const got = deps.health?.blocked(entry.url) ?? (await tryEntry(entry, deps));
    if (!(got instanceof PulpLazyError)) return got;
    failures.push(got);
    // A skipped blocked origin is no news (its block was logged once, by health.ts).
    if (got.code === 'PL_UPSTREAM_BLOCKED')
      deps.log.debug({ url: redactUrl(entry.url) }, 'catalog entry skipped: blocked');
    else deps.log.warn({ url: redactUrl(entry.url), err: got }, 'catalog entry failed');
  }
  const failure = pickFailure(path, failures);
  if (failure instanceof GoneUpstream && deps.db)
    await recordGone(deps.db, failure, deps.log, new Date(deps.clock()));
  throw failure;
}

/** Asks one entry; returns the failure when the next entry should be tried. */
async function tryEntry(entry: CatalogEntryDoc, deps: FailoverDeps): Promise<Answer | PulpLazyError> {
  const { pool, metrics, clock, signal } = deps;
  const url = redactUrl(entry.url);
  const repo = await deps.catalog.repo(entry.importer_id);
  if (!repo) return new UpstreamNotFound(`${url}: no repository uses importer ${entry.importer_id}`);
  deps.beforeRequest();
  const asked = clock();
  let res: Dispatcher.ResponseData;
  try {
    res = await pool.get(entry.url, repo, signal, deps.reqId);
  } catch (err) {
    if (signal.aborted) throw signal.reason;
    const mapped = toUpstreamError(err, entry.url);
    metrics.upstreamFetches.inc({ result: mapped.status === 504 ? 'timeout' : 'error' });
    return mapped;
  }
  if (res.statusCode !== 200) {
    res.body.dump().catch(() => {});
    const notFound = res.statusCode === 404 || res.statusCode === 410;
    metrics.upstreamFetches.inc({ result: notFound ? 'not_found' : 'error' });
    const message = `${url}: upstream answered ${res.statusCode}`;
    return notFound
      ? new GoneUpstream(message, [{ unit_id: entry.unit_id, repo: repo._id, status: res.statusCode }])
      : new UpstreamError(message);
  }
  metrics.upstreamFetches.inc({ result: 'ok' });
  const length = contentLength(res.headers);
  if (length !== undefined && entry.size !== undefined && length !== entry.size) {
    res.body.destroy();
    const err = new ChecksumMismatch(`${url}: Content-Length ${length}, expected ${entry.size}`);
    await deps.mismatch(entry, err);
    return err;
  }
  return { entry, res, size: length ?? entry.size, asked, answered: clock() };
}

/**
 * 404 when every entry was missing (GoneUpstream when each of them answered
 * 404 or 410 upstream); otherwise the last other failure (502/504).
 */
export function pickFailure(path: string, failures: PulpLazyError[]): PulpLazyError {
  const other = failures.filter((f) => f.status !== 404);
  if (other.length > 0) return other[other.length - 1]!;
  if (failures.length === 0) return new UpstreamNotFound(`${path}: no usable catalog entry`);
  const message = `${path}: not found upstream (${failures.map((f) => f.message).join('; ')})`;
  const gone = failures.filter((f) => f instanceof GoneUpstream);
  if (gone.length < failures.length) return new UpstreamNotFound(message);
  return new GoneUpstream(
    message,
    gone.flatMap((f) => f.sources),
  );
}

/** The Content-Length header as a number (undefined when absent or not digits). */
export function contentLength(headers: Record<string, string | string[] | undefined>): number | undefined {
  const v = headers['content-length'];
  if (typeof v !== 'string' || !/^\d+$/.test(v)) return undefined;
  return Number(v);
}
