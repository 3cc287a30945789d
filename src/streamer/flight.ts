/**
 * One upstream fetch of one storage path, shared by every client that asks
 * for it while it runs (single-flight): its state, its clients, its steps.
 * An entry that answers is found (failover.ts); its body goes into a temp
 * file at upstream speed (temp-file.ts), hashed on the event loop (measured
 * cheaper in total CPU than a worker thread reading the file back); clients
 * that have every byte get each chunk directly (fan-out.ts), the others read
 * the file at their own pace (read-back.ts, send.ts). The last byte is held
 * back until the file is verified, committed into storage (save enabled) and
 * recorded (commit.ts): a bad file never reaches a client (or a cache)
 * complete, and a complete reply means the file is stored (unless the
 * entry's repository has the streamed policy, or the disk guard says the
 * disk is low when the flight starts: then nothing is saved). The
 * temp file is removed on every failure path.
 */
import { createHash, type Hash } from 'node:crypto';
import type { OutgoingHttpHeaders } from 'node:http';
import type { CatalogEntryDoc, Database } from '../db/index.ts';
import { ChecksumMismatch, oneLine, PulpLazyError, UpstreamTimeout } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { DiskGuard } from '../storage/free-space.ts';
import type { UpstreamClient } from '../upstream/client.ts';
import { redactUrl, toUpstreamError } from '../upstream/describe.ts';
import type { RemoteHealth } from '../upstream/health.ts';
import { type CatalogLookup, isStreamed } from './catalog.ts';
import {
  type CommitDeps,
  databaseRecords,
  queueAfterFailure,
  recordVerificationFailure,
  verifyAndCommit,
} from './commit.ts';
import { firstAnswer } from './failover.ts';
import { FanOut, type LiveClient } from './fan-out.ts';
import { flightHeaders } from './headers.ts';
import type { MemoryGuard } from './memory-guard.ts';
import type { StreamerMetrics } from './metrics.ts';
import { ReadBack } from './read-back.ts';
import { TempFileWriter } from './temp-file.ts';
import type { WriteBudget } from './write-budget.ts';

/** Bytes of the file withheld from clients until verification succeeds. */
export const HOLD_BACK = 1;

/**
 * fetching: no upstream answer yet; streaming: body flowing; finishing: body
 * complete, verifying and saving; done: verified (and saved or not), every
 * byte may be sent, retired; failed.
 */
export type FlightState = 'fetching' | 'streaming' | 'finishing' | 'done' | 'failed';

export interface FlightSettings {
  workingDir: string;
  saveToStorage: boolean;
  cacheTimeoutMs: number;
  failureCooldownMs: number;
  orphanSaveTimeoutMs: number;
  /** Files of at least this many bytes are written with O_DIRECT (storage/direct-io.ts); absent: none. */
  directIoMinSize?: number | undefined;
}

export interface FlightDeps {
  db: Database;
  catalog: CatalogLookup;
  logger: Logger;
  clock: () => number;
  pool: UpstreamClient;
  budget: WriteBudget;
  /** Told of every upstream chunk (memory-guard.ts); absent: none. */
  memory?: MemoryGuard;
  metrics: StreamerMetrics;
  settings: FlightSettings;
  /** Says whether a new file may be saved (storage.min_free); absent: always. */
  disk?: DiskGuard;
  /** Which origins are blocked: their entries are skipped (failover.ts); absent: none. */
  health?: RemoteHealth;
  /** The id of the request that started the flight: on its log lines and its upstream request. */
  reqId?: string;
}

/** A client's hold on a flight: call `detach()` exactly once when done reading. */
export interface FlightClient {
  detach(): void;
}

export class Flight {
  state: FlightState = 'fetching';
  /** Response headers for clients, known once upstream answered 200. */
  headers: OutgoingHttpHeaders | undefined;
  /** Expected size: upstream Content-Length, else the catalog size. */
  size: number | undefined;
  /** Why the flight failed (state 'failed'). */
  error: PulpLazyError | undefined;
  /** Whether the verified file went into storage. */
  saved = false;
  /** Bumped at every change (more bytes written or a new state). */
  version = 0;
  /** Resolves when headers are known; rejects with the failure when no entry could be fetched. */
  readonly ready: Promise<void>;
  /** Resolves when everything is over: temp file committed or removed, database updated. */
  readonly settled: Promise<void>;
  /** Reads of the temp file for clients that fell behind (only below `releasable()`, while attached). */
  readonly readBack: ReadBack;

  private readonly ac = new AbortController();
  private abortReason: PulpLazyError | undefined;
  private readonly file: TempFileWriter;
  private readonly fanOut: FanOut;
  private readonly commit: CommitDeps;
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
  /** This flight's settings: the streamer's, but not saved when the repository's policy is streamed. */
  private readonly settings: FlightSettings;

  constructor(
    readonly path: string,
    private readonly entries: CatalogEntryDoc[],
    private readonly deps: FlightDeps,
    /** Called once, synchronously, when the flight stops taking new clients. */
    private readonly onRetire: (flight: Flight) => void,
  ) {
    const { metrics, clock } = deps;
    this.log = deps.logger.child(deps.reqId ? { reqId: deps.reqId, path } : { path });
    this.startedAt = clock();
    this.settings = { ...deps.settings };
    this.file = new TempFileWriter({
      ...deps,
      settings: this.settings,
      name: path,
      log: this.log,
      bytesWritten: metrics.tempFileBytes,
      onChunk: (chunk, from) => {
        this.hash!.update(chunk);
        this.deps.memory?.received(chunk.length);
        this.fanOut.add(chunk, from);
      },
      onWritten: () => this.notify(),
      // Several clients attached and one of them reads the file back.
      sharesReads: () => this.clients > 1 && this.fanOut.size < this.clients,
    });
    this.readBack = new ReadBack(this.file, metrics.tempFileReadBytes, () => this.clients);
    this.fanOut = new FanOut(() => this.holdAt());
    const records = databaseRecords(deps.db, deps.catalog);
    this.commit = { records, metrics, log: this.log, clock, settings: this.settings };
    this.ready = new Promise<void>((resolve, reject) => {
      this.resolveReady = resolve;
      this.rejectReady = reject;
    });
    this.ready.catch(() => {});
    metrics.activeFlights.inc();
    this.settled = this.run();
  }

  /** Bytes in the temp file so far. */
  get written(): number {
    return this.file.written;
  }

  /** True once the flight is over (no new client may attach). */
  get terminal(): boolean {
    return this.state === 'done' || this.state === 'failed';
  }

  /** True once every byte may be sent. */
  get complete(): boolean {
    return this.state === 'done';
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

  /** The first byte not sent before verification (size known: the file's last byte). */
  private holdAt(): number {
    return this.size !== undefined ? this.size - HOLD_BACK : Math.max(0, this.written - HOLD_BACK);
  }

  /** How many bytes clients may read from the file now (the tail is held back until verified). */
  releasable(): number {
    if (this.complete) return this.written;
    if (this.state === 'streaming' || this.state === 'finishing')
      return Math.max(0, Math.min(this.written, this.holdAt()));
    return 0;
  }

  /** Resolves at the next change, or at once when `since` (a `version`) is already past. */
  changed(since = this.version): Promise<void> {
    if (since !== this.version) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /**
   * Makes `c` live (FanOut.join) when the body is streaming and `c` has
   * everything on file (c.pos >= written); false when it cannot be (c.pos
   * tells what was sent either way).
   */
  goLive(c: LiveClient): boolean {
    if (this.state !== 'streaming' || this.size === undefined || c.pos < this.written) return false;
    return this.fanOut.join(c, this.file.queue, this.file.queueStart, this.file.received);
  }

  /** Stops sending live chunks to `c` (its response closed); does not call c.leave(). */
  dropLive(c: LiveClient): void {
    this.fanOut.drop(c);
  }

  /** Stops the fetch (shutdown, orphan timeout): clients still attached are cut off. */
  abort(reason: PulpLazyError): void {
    if (this.terminal || this.abortReason) return;
    this.abortReason = reason;
    this.ac.abort(reason);
  }

  private notify(): void {
    this.version++;
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  private unref(): void {
    this.refs--;
    if (this.refs === 0) this.file.closeHandles();
  }

  /** Every client left before the end: finish the save in the background, bounded in time. */
  private orphaned(): void {
    if (!this.settings.saveToStorage) {
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
      // Whatever ended it (upstream, disk full, shutdown), a client wanted this unit and it is not stored;
      // except a file gone upstream: its repository's re-sync is requested instead (drift.ts).
      if (this.error && this.error.code !== 'PL_UPSTREAM_GONE')
        await queueAfterFailure(this.commit, this.entries[0], this.wantsDeferred);
    } finally {
      // A temp file still being created (upstream failed first) is removed below like any other.
      await this.file.stop();
      clearTimeout(this.orphanTimer);
      this.orphanTimer = undefined;
      this.readBack.clear();
      await this.file.remove();
      this.deps.metrics.activeFlights.dec();
      this.unref();
    }
  }

  /** Finds the entry to fetch from (failover.ts), then streams its body into the temp file and commits it. */
  private async fetch(): Promise<void> {
    const { entry, res, size, asked, answered } = await firstAnswer(this.path, this.entries, {
      ...this.deps,
      log: this.log,
      signal: this.ac.signal,
      // The temp file is created while upstream answers (not after: that is a few ms of first byte).
      beforeRequest: () => {
        this.file.open().catch(() => {});
      },
      mismatch: (e, err) => recordVerificationFailure(this.commit, e, err, false),
    });

    // Committed to this entry: from here on, a failure ends the flight.
    this.size = size;
    try {
      if (await isStreamed(this.deps.catalog, entry)) this.settings.saveToStorage = false;
      // Low disk (storage.min_free): streamed, not saved; queued like any unsaved miss (commit.ts).
      if (this.settings.saveToStorage && this.deps.disk && !(await this.deps.disk.canSave(this.size)))
        this.settings.saveToStorage = false;
      await this.file.open();
      await this.file.openDirect(this.size);
      this.hash = createHash(entry.checksum_algorithm);
    } catch (err) {
      res.body.destroy();
      throw err;
    }
    const url = redactUrl(entry.url);
    this.headers = flightHeaders(res.headers, this.size, this.deps.settings.cacheTimeoutMs);
    this.state = 'streaming';
    // Where a miss's first byte goes: before the request (repository lookup), upstream, the temp file.
    const now = this.deps.clock();
    this.log.info(
      {
        url,
        size: this.size,
        beforeMs: asked - this.startedAt,
        upstreamMs: answered - asked,
        tempMs: now - answered,
      },
      'upstream answered; streaming',
    );
    this.resolveReady();
    this.notify();

    try {
      await this.file.write(res.body, this.size);
      await this.file.closeDirect();
    } catch (err) {
      if (this.abortReason) throw this.abortReason;
      if (err instanceof ChecksumMismatch) {
        await recordVerificationFailure(this.commit, entry, err, true);
        throw err;
      }
      if (err instanceof PulpLazyError) throw err;
      throw toUpstreamError(err, entry.url);
    }
    await this.finish(entry);
  }

  /**
   * Verifies, saves (or not), updates the database (commit.ts), then
   * releases the held-back bytes: a client that got the whole body can rely
   * on the file being in storage and the unit marked. The fsync of the
   * commit is short because the file was synced in the background while it
   * was written (temp-file.ts).
   */
  private async finish(entry: CatalogEntryDoc): Promise<void> {
    const { clock } = this.deps;
    const bodyMs = clock() - this.startedAt;
    this.state = 'finishing';
    this.fanOut.end();
    this.notify();
    const got = { digest: this.hash!.digest('hex'), size: this.written };
    const done = await verifyAndCommit(this.commit, entry, this.file, got, this.size, this.wantsDeferred);
    this.saved = done.saved;
    this.state = 'done';
    this.onRetire(this);
    this.notify();
    this.log.info(
      {
        bytes: this.written,
        saved: this.saved,
        bodyMs,
        savedMs: done.savedAt - this.startedAt,
        ms: clock() - this.startedAt,
        upstreamPauses: this.file.pauses,
        upstreamPausedMs: this.file.pausedMs,
      },
      'fetch complete',
    );
  }

  private fail(err: PulpLazyError): void {
    if (this.terminal) return;
    this.state = 'failed';
    this.error = err;
    this.log.warn({ err, bytes: this.written }, 'fetch failed');
    this.rejectReady(err);
    this.fanOut.end();
    this.onRetire(this);
    this.notify();
  }
}
