/**
 * One upstream fetch of one storage path, shared by every client that asks
 * for the path while it runs (single-flight).
 *
 * The fetch tries the catalog entries in order until one answers 200 (this
 * is the only failover point: nothing has been sent to anyone yet), then
 * writes the body to a temp file in the working dir, hashing as it goes.
 * Clients never get bytes from the fetch directly: each one reads the
 * growing temp file at its own pace through the flight's file handle
 * (positional reads), so a slow client slows neither the others nor the
 * save, and memory stays bounded. The last byte is held back until the size
 * and checksum are verified, so a bad file never reaches a client (or a
 * cache) complete. At the end the temp file is committed into storage (save
 * enabled) or removed; it is removed on every failure path too.
 */
import { createHash, type Hash } from 'node:crypto';
import { type FileHandle, open, rm } from 'node:fs/promises';
import type { OutgoingHttpHeaders } from 'node:http';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { Dispatcher } from 'undici';
import type { CatalogEntryDoc, Database } from '../db/index.ts';
import {
  ChecksumMismatch,
  oneLine,
  PulpLazyError,
  UpstreamError,
  UpstreamNotFound,
  UpstreamTimeout,
} from '../errors.ts';
import type { Logger } from '../log.ts';
import { checkDigest, commitFile, tempPath } from '../storage/index.ts';
import { markDownloadedIfComplete } from '../storage/units.ts';
import { findRepo, markEntryFailed } from './catalog.ts';
import { clearDeferred, queueDeferred, recordDeferredFailure } from './deferred.ts';
import { cacheControl, endToEndHeaders } from './headers.ts';
import type { StreamerMetrics } from './metrics.ts';
import { redactUrl, toUpstreamError, type UpstreamClient } from './upstream.ts';

/** Bytes of the file withheld from clients until verification succeeds. */
export const HOLD_BACK = 1;
/** Buffered between the upstream body and the temp file before upstream is paused. */
const WRITE_BUFFER = 1 << 20;

export type FlightState = 'fetching' | 'streaming' | 'finishing' | 'done' | 'failed';

export interface FlightSettings {
  workingDir: string;
  saveToStorage: boolean;
  cacheTimeoutMs: number;
  failureCooldownMs: number;
  orphanSaveTimeoutMs: number;
}

export interface FlightDeps {
  db: Database;
  logger: Logger;
  clock: () => number;
  pool: UpstreamClient;
  metrics: StreamerMetrics;
  settings: FlightSettings;
}

/** A client's hold on a flight: call `detach()` exactly once when done reading. */
export interface FlightClient {
  detach(): void;
}

export class Flight {
  state: FlightState = 'fetching';
  /** Response headers for clients, known once upstream answered 200. */
  headers: OutgoingHttpHeaders | undefined;
  /** Bytes in the temp file so far. */
  written = 0;
  /** Expected size: upstream Content-Length, else the catalog size. */
  size: number | undefined;
  /** Why the flight failed (state 'failed'). */
  error: PulpLazyError | undefined;
  /** Whether the verified file went into storage. */
  saved = false;
  /** Resolves when headers are known; rejects with the failure when no entry could be fetched. */
  readonly ready: Promise<void>;
  /** Resolves when everything is over: temp file committed or removed, database updated. */
  readonly settled: Promise<void>;

  private readonly ac = new AbortController();
  private abortReason: PulpLazyError | undefined;
  private fh: FileHandle | undefined;
  private temp: string | undefined;
  private hash: Hash | undefined;
  private refs = 1; // the flight's own reference to the file handle
  private clients = 0;
  private wantsDeferred = false;
  private waiters: Array<() => void> = [];
  private orphanTimer: NodeJS.Timeout | undefined;
  private resolveReady!: () => void;
  private rejectReady!: (err: PulpLazyError) => void;
  private readonly log: Logger;
  private readonly startedAt: number;

  constructor(
    readonly path: string,
    private readonly entries: CatalogEntryDoc[],
    private readonly deps: FlightDeps,
    /** Called once, synchronously, when the flight stops taking new clients. */
    private readonly onRetire: (flight: Flight) => void,
  ) {
    this.log = deps.logger.child({ path });
    this.startedAt = deps.clock();
    this.ready = new Promise<void>((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => {});
    deps.metrics.activeFlights.inc();
    this.settled = this.run();
  }

  /** True once the flight is over (no new client may attach). */
  get terminal(): boolean {
    return this.state === 'done' || this.state === 'failed';
  }

  /** Registers a client. `streamRequest`: the client sent Pulp-Stream-Request (a download task). */
  attach(opts: { streamRequest: boolean }): FlightClient {
    if (this.terminal) throw new Error('attach to a finished flight');
    this.clients++;
    this.refs++;
    if (!opts.streamRequest) this.wantsDeferred = true;
    if (this.orphanTimer) {
      clearTimeout(this.orphanTimer);
      this.orphanTimer = undefined;
    }
    let detached = false;
    return {
      detach: () => {
        if (detached) return;
        detached = true;
        this.clients--;
        this.unref();
        if (this.clients === 0 && !this.terminal) this.orphaned();
      },
    };
  }

  /** How many bytes clients may send now (the tail is held back until verified). */
  releasable(): number {
    if (this.state === 'done') return this.written;
    if (this.state === 'streaming' || this.state === 'finishing')
      return Math.max(0, this.written - HOLD_BACK);
    return 0;
  }

  /** Reads temp-file bytes at `position` (only below `releasable()`, while attached). */
  async read(buf: Buffer, length: number, position: number): Promise<number> {
    if (!this.fh) throw new Error('flight has no file');
    const { bytesRead } = await this.fh.read(buf, 0, length, position);
    return bytesRead;
  }

  /** Resolves at the next change: more bytes written or a new state. */
  changed(): Promise<void> {
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /** Stops the fetch (shutdown, orphan timeout): clients still attached are cut off. */
  abort(reason: PulpLazyError): void {
    if (this.terminal || this.abortReason) return;
    this.abortReason = reason;
    this.ac.abort(reason);
  }

  private notify(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  private unref(): void {
    this.refs--;
    if (this.refs === 0 && this.fh) {
      const fh = this.fh;
      this.fh = undefined;
      fh.close().catch(() => {});
    }
  }

  /** Every client left before the end: finish the save in the background, bounded in time. */
  private orphaned(): void {
    if (!this.deps.settings.saveToStorage) {
      this.abort(new PulpLazyError('PL_CLIENT_GONE', 'every client went away and nothing is being saved'));
      return;
    }
    this.log.info('every client went away; finishing the save');
    this.orphanTimer = setTimeout(() => {
      this.abort(new UpstreamTimeout(`save of ${this.path} still unfinished after its clients left`));
    }, this.deps.settings.orphanSaveTimeoutMs);
  }

  private async run(): Promise<void> {
    try {
      await this.fetch();
    } catch (err) {
      this.fail(
        this.abortReason ??
          (err instanceof PulpLazyError
            ? err
            : new PulpLazyError('PL_STREAMER_IO', `${this.path}: ${oneLine(err)}`, { cause: err })),
      );
    } finally {
      if (this.orphanTimer) clearTimeout(this.orphanTimer);
      this.orphanTimer = undefined;
      if (this.temp) {
        const temp = this.temp;
        this.temp = undefined;
        await rm(temp, { force: true }).catch((err) =>
          this.log.error({ temp, err: oneLine(err) }, 'cannot remove temp file'),
        );
      }
      this.deps.metrics.activeFlights.dec();
      this.unref();
    }
  }

  private async fetch(): Promise<void> {
    const failures: PulpLazyError[] = [];
    for (const entry of this.entries) {
      if (this.abortReason) throw this.abortReason;
      const failure = await this.tryEntry(entry);
      if (!failure) return;
      failures.push(failure);
      this.log.warn(
        { url: redactUrl(entry.url), code: failure.code, err: failure.message },
        'catalog entry failed',
      );
    }
    throw pickFailure(this.path, failures);
  }

  /** Fetches from one entry; returns the failure when the next entry should be tried. */
  private async tryEntry(entry: CatalogEntryDoc): Promise<PulpLazyError | undefined> {
    const { db, pool, metrics } = this.deps;
    const url = redactUrl(entry.url);
    const repo = await findRepo(db, entry.importer_id);
    if (!repo) return new UpstreamNotFound(`${url}: no repository uses importer ${entry.importer_id}`);
    let res: Dispatcher.ResponseData;
    try {
      res = await pool.get(entry.url, repo.upstream, this.ac.signal);
    } catch (err) {
      if (this.abortReason) throw this.abortReason;
      const mapped = toUpstreamError(err, entry.url);
      metrics.upstreamFetches.inc({ result: mapped.status === 504 ? 'timeout' : 'error' });
      return mapped;
    }
    if (res.statusCode !== 200) {
      res.body.dump().catch(() => {});
      const notFound = res.statusCode === 404 || res.statusCode === 410;
      metrics.upstreamFetches.inc({ result: notFound ? 'not_found' : 'error' });
      return notFound
        ? new UpstreamNotFound(`${url}: upstream answered ${res.statusCode}`)
        : new UpstreamError(`${url}: upstream answered ${res.statusCode}`);
    }
    metrics.upstreamFetches.inc({ result: 'ok' });
    const length = contentLength(res.headers);
    if (length !== undefined && entry.size !== undefined && length !== entry.size) {
      res.body.destroy();
      const err = new ChecksumMismatch(`${url}: Content-Length ${length}, expected ${entry.size}`);
      await this.recordVerificationFailure(entry, err);
      return err;
    }

    // Committed to this entry: from here on, a failure ends the flight.
    this.size = length ?? entry.size;
    this.hash = createHash(entry.checksum_algorithm);
    try {
      this.temp = await tempPath(this.deps.settings.workingDir, this.path);
      this.fh = await open(this.temp, 'w+', 0o644);
    } catch (err) {
      res.body.destroy();
      throw err;
    }
    const headers = endToEndHeaders(res.headers);
    if (this.size !== undefined) headers['content-length'] = String(this.size);
    headers['cache-control'] = cacheControl(this.deps.settings.cacheTimeoutMs);
    this.headers = headers;
    this.state = 'streaming';
    this.log.info({ url, size: this.size }, 'upstream answered; streaming');
    this.resolveReady();
    this.notify();

    try {
      await pipeline(res.body, this.sink(), { signal: this.ac.signal });
    } catch (err) {
      if (this.abortReason) throw this.abortReason;
      if (err instanceof ChecksumMismatch) {
        await this.recordVerificationFailure(entry, err);
        throw err;
      }
      throw toUpstreamError(err, entry.url);
    }
    await this.finish(entry);
    return undefined;
  }

  /** The temp-file writer: batches buffered chunks into one positional writev. */
  private sink(): Writable {
    const write = async (chunks: Buffer[]) => {
      const total = chunks.reduce((n, c) => n + c.length, 0);
      if (this.size !== undefined && this.written + total > this.size) {
        throw new ChecksumMismatch(`${this.path}: upstream sent more than the expected ${this.size} bytes`);
      }
      for (const c of chunks) this.hash!.update(c);
      let pending = chunks;
      while (pending.length > 0) {
        const { bytesWritten } = await this.fh!.writev(pending, this.written);
        if (bytesWritten === 0) throw new Error(`cannot write to ${this.temp}`);
        this.written += bytesWritten;
        pending = dropBytes(pending, bytesWritten);
      }
      this.notify();
    };
    return new Writable({
      highWaterMark: WRITE_BUFFER,
      write(chunk: Buffer, _enc, cb) {
        write([chunk]).then(() => cb(), cb);
      },
      writev(chunks, cb) {
        write(chunks.map((c) => c.chunk as Buffer)).then(() => cb(), cb);
      },
    });
  }

  /** Verifies, then saves (or not), updates the database, and releases the held-back bytes. */
  private async finish(entry: CatalogEntryDoc): Promise<void> {
    const { db, metrics, settings, clock } = this.deps;
    this.state = 'finishing';
    const got = { digest: this.hash!.digest('hex'), size: this.written };
    try {
      checkDigest(redactUrl(entry.url), got, {
        size: this.size,
        checksum: entry.checksum,
        checksum_algorithm: entry.checksum_algorithm,
      });
    } catch (err) {
      if (!(err instanceof ChecksumMismatch)) throw err;
      await this.recordVerificationFailure(entry, err);
      throw err;
    }
    if (settings.saveToStorage) {
      try {
        await commitFile(this.temp!, entry.path);
        this.temp = undefined;
        this.saved = true;
      } catch (err) {
        this.log.error({ err: oneLine(err) }, 'verified file could not be saved into storage');
      }
    }
    try {
      const downloaded = this.saved && (await markDownloadedIfComplete(db, entry.unit_id));
      if (downloaded) await clearDeferred(db, entry);
      else if (this.wantsDeferred) await queueDeferred(db, entry, new Date(clock()));
    } catch (err) {
      this.log.error({ err: oneLine(err) }, 'cannot record the download in the database');
    }
    metrics.saves.inc({ result: this.saved ? 'saved' : settings.saveToStorage ? 'failed' : 'not_saved' });
    this.state = 'done';
    this.log.info({ bytes: this.written, saved: this.saved, ms: clock() - this.startedAt }, 'fetch complete');
    this.onRetire(this);
    this.notify();
  }

  /** Bytes did not match the catalog: cool the entry down and record the failure in the queue. */
  private async recordVerificationFailure(entry: CatalogEntryDoc, err: ChecksumMismatch): Promise<void> {
    const { db, clock, metrics, settings } = this.deps;
    metrics.checksumFailures.inc();
    if (this.state !== 'fetching') metrics.saves.inc({ result: 'failed' });
    const now = clock();
    const until = new Date(now + settings.failureCooldownMs);
    this.log.warn(
      { url: redactUrl(entry.url), err: err.message },
      'verification failed; entry skipped until cooldown ends',
    );
    try {
      await markEntryFailed(db, entry, err.message, until);
      await recordDeferredFailure(db, entry, err.message, new Date(now), until);
    } catch (dbErr) {
      this.log.error({ err: oneLine(dbErr) }, 'cannot record the verification failure');
    }
  }

  private fail(err: PulpLazyError): void {
    if (this.terminal) return;
    this.state = 'failed';
    this.error = err;
    this.log.warn({ code: err.code, err: err.message, bytes: this.written }, 'fetch failed');
    this.rejectReady(err);
    this.onRetire(this);
    this.notify();
  }
}

/** 404 when every entry was missing upstream; otherwise the last other failure (502/504). */
function pickFailure(path: string, failures: PulpLazyError[]): PulpLazyError {
  const other = failures.filter((f) => f.status !== 404);
  if (other.length > 0) return other[other.length - 1]!;
  if (failures.length === 0) return new UpstreamNotFound(`${path}: no usable catalog entry`);
  return new UpstreamNotFound(`${path}: not found upstream (${failures.map((f) => f.message).join('; ')})`);
}

function contentLength(headers: Record<string, string | string[] | undefined>): number | undefined {
  const v = headers['content-length'];
  if (typeof v !== 'string' || !/^\d+$/.test(v)) return undefined;
  return Number(v);
}

/** The buffers left after the first `n` bytes of `chunks` were written. */
function dropBytes(chunks: Buffer[], n: number): Buffer[] {
  let skip = n;
  const rest: Buffer[] = [];
  for (const c of chunks) {
    if (skip >= c.length) {
      skip -= c.length;
      continue;
    }
    rest.push(skip > 0 ? c.subarray(skip) : c);
    skip = 0;
  }
  return rest;
}
