/**
 * One upstream fetch of one storage path, shared by every client that asks
 * for the path while it runs (single-flight).
 *
 * The fetch tries the catalog entries in order until one answers 200 (this
 * is the only failover point: nothing has been sent to anyone yet), then
 * writes the body to a temp file in the working dir at upstream speed,
 * hashing as it goes (on the event loop: measured cheaper in total CPU than
 * a worker thread reading the file back, and it keeps up). Clients get bytes
 * two ways (send.ts):
 *   - live: a client that has every byte received so far gets each new
 *     upstream chunk directly, without a copy (fan-out), until its socket
 *     pushes back;
 *   - from the file: a client that fell behind (or joined late) reads the
 *     temp file at its own pace through the flight's file handle, then goes
 *     live again once it caught up (bytes received but not yet written are
 *     served from the write queue).
 * So upstream is never slowed by a client, a slow client holds no upstream
 * bytes in memory, and memory is the write queues (bounded by write-budget.ts).
 * The last byte is held back until the size and checksum are verified and
 * the file is committed into storage (save enabled) and recorded, so a bad
 * file never reaches a client (or a cache) complete, and a complete reply
 * means the file is stored. The temp file is fdatasync'ed in the background
 * every SYNC_EVERY bytes while it is written, so that final commit (fsync +
 * rename) does not hold the last byte for seconds per GiB. Large files are
 * written with O_DIRECT, and read back that way by a lone client, except
 * while several clients share reads of the file back (see save(), read()
 * and storage/direct-io.ts). The temp file is removed on every failure path.
 */
import { createHash, type Hash } from 'node:crypto';
import { type FileHandle, open, rm } from 'node:fs/promises';
import type { OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { Readable } from 'node:stream';
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
import {
  alignDown,
  alignUp,
  openDirect,
  readDirect,
  STAGING_SLOT,
  writeDirect,
} from '../storage/direct-io.ts';
import { checkDigest, commitFile, tempPath } from '../storage/index.ts';
import { markDownloadedIfComplete } from '../storage/units.ts';
import type { UpstreamClient } from '../upstream/client.ts';
import { redactUrl, toUpstreamError } from '../upstream/describe.ts';
import type { CatalogLookup } from './catalog.ts';
import { clearDeferred, queueDeferred, recordDeferredFailure } from './deferred.ts';
import { cacheControl, endToEndHeaders } from './headers.ts';
import type { MemoryGuard } from './memory-guard.ts';
import type { StreamerMetrics } from './metrics.ts';
import type { WriteBudget } from './write-budget.ts';

/** Bytes of the file withheld from clients until verification succeeds. */
export const HOLD_BACK = 1;
/** Bytes a live client may have waiting in its socket before it reads from the file instead. */
export const LIVE_BUFFER = 128 * 1024;
/** Size of the temp-file blocks shared by clients reading back (sharedBlock). */
export const SHARED_BLOCK = 1 << 20;
/**
 * Shared blocks kept per flight at most (and never more than its clients):
 * clients spread over the file each find their block without a read of their
 * own (with 50 clients, 8 blocks meant re-reading evicted blocks again and
 * again, 1 MiB allocations that kept the garbage collector busy for seconds).
 */
export const SHARED_BLOCKS_MAX = 64;
/** The temp file is fdatasync'ed in the background each time this many more bytes were written. */
export const SYNC_EVERY = 64 << 20;
/**
 * Positional writes to the temp file in progress at most. One at a time was
 * tried (perf showed ~5% of serve's CPU spinning on the file's inode lock):
 * 18 interleaved pairs of cold 1 GiB misses through serve (AMD EPYC, 2
 * cores) gave a median of 549 MB/s with one, 579 with four, and no less CPU.
 */
export const WRITE_PARALLEL = 4;
/** A write starts while others run only once this many bytes are queued. */
export const WRITE_BATCH = 256 * 1024;

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
}

/** A client's hold on a flight: call `detach()` exactly once when done reading. */
export interface FlightClient {
  detach(): void;
}

/** A client receiving upstream chunks directly (see Flight.goLive). */
export interface LiveClient {
  res: ServerResponse;
  /** Next byte the client needs. */
  pos: number;
  onBytes: (n: number) => void;
  /** Called once when the client stops being live (fell behind, or the body ended or failed). */
  leave: () => void;
}

export class Flight {
  state: FlightState = 'fetching';
  /** Response headers for clients, known once upstream answered 200. */
  headers: OutgoingHttpHeaders | undefined;
  /** Body bytes received from upstream so far. */
  received = 0;
  /** Bytes in the temp file so far. */
  written = 0;
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

  private readonly ac = new AbortController();
  private abortReason: PulpLazyError | undefined;
  private fh: FileHandle | undefined;
  /** A second handle on the temp file, for O_DIRECT writes (large files only). */
  private direct: FileHandle | undefined;
  /** A third, for O_DIRECT reads by clients reading the file back (closed with `fh`). */
  private directRead: FileHandle | undefined;
  private temp: string | undefined;
  private opening: Promise<void> | undefined;
  private hash: Hash | undefined;
  /** Received chunks not yet written, in order; the first starts at `queueStart`. */
  private queue: Buffer[] = [];
  private queueStart = 0;
  private readonly live = new Set<LiveClient>();
  private fanOutPending: Array<{ chunk: Buffer; from: number }> = [];
  /** Recently read blocks of the temp file, by index (see sharedBlock). */
  private readonly blocks = new Map<number, Promise<Buffer>>();
  /** Background fdatasync of the temp file (see syncInBackground). */
  private syncing: Promise<void> = Promise.resolve();
  private syncBusy = false;
  private syncedUpTo = 0;
  /** How often and how long upstream waited for the disk (logged at the end). */
  private pauses = 0;
  private pausedMs = 0;
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

  /** Reads temp-file bytes at `position` (only below `releasable()`, while attached). */
  async read(buf: Buffer, length: number, position: number): Promise<number> {
    if (!this.fh) throw new Error('flight has no file');
    // Bytes written with O_DIRECT are not in the page cache: reading them through it would
    // fill fresh pages (the cost the direct writes avoid), so a lone client reads them the
    // same way. Clients that share reads (sharedBlock) go through the page cache.
    const read = this.deps.metrics.tempFileReadBytes;
    if (this.directRead && this.clients < 2) {
      const n = await readDirect(this.directRead, buf, length, position);
      read.inc({ io: 'direct' }, n);
      return n;
    }
    const { bytesRead } = await this.fh.read(buf, 0, length, position);
    read.inc({ io: 'buffered' }, bytesRead);
    return bytesRead;
  }

  /**
   * The full aligned block of the temp file that holds byte `pos`, shared by
   * the clients reading the file back (read once, kept for the next readers:
   * clients that fell behind together then cost one read, not one each).
   * Undefined when fewer than two clients are attached or the block is not
   * complete on file yet: read it yourself then.
   */
  sharedBlock(pos: number): Promise<{ buf: Buffer; start: number }> | undefined {
    if (this.clients < 2 || !this.fh) return undefined;
    const index = Math.floor(pos / SHARED_BLOCK);
    const start = index * SHARED_BLOCK;
    if (start + SHARED_BLOCK > this.written) return undefined;
    let block = this.blocks.get(index);
    if (!block) {
      const buf = Buffer.allocUnsafe(SHARED_BLOCK);
      block = this.read(buf, SHARED_BLOCK, start).then((bytesRead) => {
        if (bytesRead !== SHARED_BLOCK) throw new Error(`${this.temp}: short read at ${start}`);
        return buf;
      });
      block.catch(() => this.blocks.delete(index));
      this.blocks.set(index, block);
      const keep = Math.min(SHARED_BLOCKS_MAX, this.clients);
      for (const old of this.blocks.keys()) {
        if (this.blocks.size <= keep) break;
        this.blocks.delete(old);
      }
    }
    return block.then((buf) => ({ buf, start }));
  }

  /** Whether several clients are attached and one of them reads the file back. */
  private sharesReads(): boolean {
    return this.clients > 1 && this.live.size < this.clients;
  }

  /** Resolves at the next change, or at once when `since` (a `version`) is already past. */
  changed(since = this.version): Promise<void> {
    if (since !== this.version) return Promise.resolve();
    return new Promise((resolve) => this.waiters.push(resolve));
  }

  /**
   * Makes `c` live when it has everything on file (c.pos >= written): the
   * received bytes not yet written are sent from the write queue, then every
   * new chunk as it arrives. Returns false (nothing registered) when the
   * flight cannot serve live clients now or the socket pushed back; c.pos
   * tells what was sent either way. Once live, c.leave() is called when it
   * stops being live.
   */
  goLive(c: LiveClient): boolean {
    if (this.state !== 'streaming' || this.size === undefined || c.pos < this.written) return false;
    let from = this.queueStart;
    for (const chunk of this.queue) {
      if (!this.sendLive(c, chunk, from)) return false;
      from += chunk.length;
    }
    if (c.pos < Math.min(this.received, this.holdAt())) return false;
    this.live.add(c);
    return true;
  }

  /** Stops sending live chunks to `c` (its response closed); does not call c.leave(). */
  dropLive(c: LiveClient): void {
    this.live.delete(c);
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

  /** Writes the part of `chunk` (starting at byte `from`) that `c` needs; false when its socket pushed back. */
  private sendLive(c: LiveClient, chunk: Buffer, from: number): boolean {
    const start = c.pos - from;
    const end = Math.min(chunk.length, this.holdAt() - from);
    if (start >= end || start < 0) return true;
    c.pos += end - start;
    c.onBytes(end - start);
    return c.res.write(start === 0 && end === chunk.length ? chunk : chunk.subarray(start, end));
  }

  /**
   * Queues `chunk` (body bytes from `from`) for the live clients. Chunks are
   * sent once per event-loop turn (setImmediate), so the chunks of one
   * socket read burst go out in one corked writev per client instead of one
   * syscall per 64 KiB.
   */
  private fanOut(chunk: Buffer, from: number): void {
    if (this.live.size === 0) return;
    if (this.fanOutPending.length === 0) setImmediate(() => this.flushLive());
    this.fanOutPending.push({ chunk, from });
  }

  private flushLive(): void {
    const pending = this.fanOutPending;
    if (pending.length === 0) return;
    this.fanOutPending = [];
    for (const c of this.live) {
      if (c.res.destroyed) {
        this.live.delete(c);
        continue;
      }
      let i = 0;
      while (i < pending.length && c.res.writableLength < LIVE_BUFFER) {
        c.res.cork();
        for (; i < pending.length && c.res.writableLength < LIVE_BUFFER; i++) {
          this.sendLive(c, pending[i]!.chunk, pending[i]!.from);
        }
        c.res.uncork();
      }
      if (i < pending.length || c.res.writableLength >= LIVE_BUFFER) {
        this.live.delete(c);
        c.leave();
      }
    }
  }

  private endLive(): void {
    this.flushLive();
    const live = [...this.live];
    this.live.clear();
    for (const c of live) c.leave();
  }

  private unref(): void {
    this.refs--;
    if (this.refs === 0 && this.fh) {
      const fh = this.fh;
      this.fh = undefined;
      fh.close().catch(() => {});
      this.directRead?.close().catch(() => {});
      this.directRead = undefined;
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
      // Whatever ended it (upstream, disk full, shutdown), a client wanted this unit and it is not stored.
      if (this.error) await this.queueAfterFailure();
    } finally {
      // A temp file still being created (upstream failed first) is removed below like any other.
      await this.opening?.catch(() => {});
      await this.closeDirect();
      if (this.orphanTimer) clearTimeout(this.orphanTimer);
      this.orphanTimer = undefined;
      this.queue = [];
      this.blocks.clear();
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

  /**
   * The upstream failed a client (not a download task) and nothing was
   * stored: queue the unit, so a download task stores it later (an entry that
   * failed verification was already queued with its cool-down: no-op then).
   */
  private async queueAfterFailure(): Promise<void> {
    const unit = this.entries[0];
    if (!this.wantsDeferred || !unit) return;
    try {
      await queueDeferred(this.deps.db, unit, new Date(this.deps.clock()));
    } catch (err) {
      this.log.error({ err: oneLine(err) }, 'cannot queue the failed download');
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
    const { catalog, pool, metrics } = this.deps;
    const url = redactUrl(entry.url);
    const repo = await catalog.repo(entry.importer_id);
    if (!repo) return new UpstreamNotFound(`${url}: no repository uses importer ${entry.importer_id}`);
    let res: Dispatcher.ResponseData;
    // The temp file is created while upstream answers (not after: that is a few ms of first byte).
    this.openTemp().catch(() => {});
    const asked = this.deps.clock();
    try {
      res = await pool.get(entry.url, repo, this.ac.signal);
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
    const answered = this.deps.clock();
    try {
      await this.openTemp();
      const min = this.deps.settings.directIoMinSize;
      if (min !== undefined && this.size !== undefined && this.size >= min) {
        this.direct = await openDirect(this.temp!);
        if (this.direct) this.directRead = await openDirect(this.temp!, 'read');
      }
      this.hash = createHash(entry.checksum_algorithm);
    } catch (err) {
      res.body.destroy();
      throw err;
    }
    const headers = endToEndHeaders(res.headers);
    if (this.size !== undefined) headers['content-length'] = String(this.size);
    headers['cache-control'] = cacheControl(this.deps.settings.cacheTimeoutMs);
    this.headers = headers;
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
      await this.save(res.body);
      await this.closeDirect();
    } catch (err) {
      if (this.abortReason) throw this.abortReason;
      if (err instanceof ChecksumMismatch) {
        await this.recordVerificationFailure(entry, err);
        throw err;
      }
      if (err instanceof PulpLazyError) throw err;
      throw toUpstreamError(err, entry.url);
    }
    await this.finish(entry);
    return undefined;
  }

  /** Closes the O_DIRECT handle, once its writes are over (FileHandle.close waits for them). */
  private async closeDirect(): Promise<void> {
    const direct = this.direct;
    this.direct = undefined;
    await direct?.close().catch(() => {});
  }

  /**
   * Creates the temp file (once per flight, whichever entry answers; run()
   * removes it on every failure path). A failed attempt is tried again.
   */
  private openTemp(): Promise<void> {
    if (!this.opening) {
      const opening = (async () => {
        const temp = await tempPath(this.deps.settings.workingDir, this.path);
        const fh = await open(temp, 'w+', 0o644);
        this.temp = temp;
        this.fh = fh;
      })();
      opening.catch(() => {
        if (this.opening === opening) this.opening = undefined;
      });
      this.opening = opening;
    }
    return this.opening;
  }

  /**
   * Reads the body at upstream speed: each chunk goes to the live clients at
   * once and into the write queue; queued bytes are written to the temp
   * file in batches, up to WRITE_PARALLEL positional writes at a time
   * (`written` advances over the contiguous completed prefix). With a direct
   * handle (large files, streamer.direct_io_min_size), a batch is whole
   * blocks, at most one staging slot, written with O_DIRECT: a lone client
   * that fell behind reads them back the same way (see read()). While one of
   * several clients reads the file back (sharesReads), batches are buffered:
   * those clients share blocks and edge reads through the page cache. The
   * bytes after the last whole block are written buffered at the end.
   * Upstream is paused only while the write budget (write-budget.ts) is used
   * up. Resolves once the whole body is in the file.
   */
  private save(body: Readable): Promise<void> {
    const budget = this.deps.budget;
    const written = this.deps.metrics.tempFileBytes;
    return new Promise<void>((resolve, reject) => {
      /** Batches being written, in file order. */
      const batches: Array<{ end: number; done: boolean }> = [];
      let submitted = 0; // bytes handed to a write so far
      let ended = false;
      let failed = false;
      let paused = false;
      let pausedAt = 0;
      const queued = () => this.received - this.written;
      const resume = () => {
        if (!paused || failed) return;
        if (budget.full(queued())) {
          budget.onRoom(resume);
          return;
        }
        paused = false;
        this.pausedMs += this.deps.clock() - pausedAt;
        body.resume();
      };
      const failWith = (err: unknown) => {
        if (failed) return;
        failed = true;
        budget.forget(resume);
        budget.release(queued());
        body.destroy();
        reject(err);
      };
      const complete = () => {
        let n = 0;
        while (batches[0]?.done) {
          const b = batches.shift()!;
          n += b.end - this.written;
          this.written = b.end;
        }
        if (n === 0) return;
        // Chunks wholly on file leave the queue (a direct batch may end inside a chunk).
        let drop = 0;
        let start = this.queueStart;
        while (drop < this.queue.length && start + this.queue[drop]!.length <= this.written) {
          start += this.queue[drop]!.length;
          drop++;
        }
        this.queue.splice(0, drop);
        this.queueStart = start;
        budget.release(n);
        this.syncInBackground();
        this.notify();
      };
      /** The end of the next batch from `submitted` (undefined: wait for more bytes), and how. */
      const nextBatch = (): { end: number; direct: boolean } | undefined => {
        const unsubmitted = this.received - submitted;
        if (unsubmitted === 0) return undefined;
        if (batches.length > 0 && unsubmitted < WRITE_BATCH && !ended) return undefined;
        // O_DIRECT unless clients share reads of the file back: those want the page cache.
        if (!this.direct || this.sharesReads()) return { end: this.received, direct: false };
        // A block begun by a buffered write is finished by one.
        const next = alignUp(submitted);
        if (next > submitted) return { end: Math.min(next, this.received), direct: false };
        const blocks = alignDown(this.received);
        if (blocks > submitted) return { end: Math.min(blocks, submitted + STAGING_SLOT), direct: true };
        return ended ? { end: this.received, direct: false } : undefined;
      };
      const pump = () => {
        if (failed) return;
        while (batches.length < WRITE_PARALLEL) {
          const next = nextBatch();
          if (!next) break;
          const at = submitted;
          const batch = { end: next.end, done: false };
          submitted = next.end;
          batches.push(batch);
          const chunks = bytesBetween(this.queue, this.queueStart, at, next.end);
          const bytes = chunks.reduce((n, c) => n + c.length, 0);
          (next.direct ? writeDirect(this.direct!, chunks, at) : writeAll(this.fh!, chunks, at)).then(
            () => {
              if (failed) return;
              written.inc({ io: next.direct ? 'direct' : 'buffered' }, bytes);
              batch.done = true;
              complete();
              if (paused) resume();
              pump();
            },
            (err: unknown) =>
              failWith(
                new PulpLazyError(
                  'PL_STREAMER_IO',
                  `${this.path}: cannot write the temp file: ${oneLine(err)}`,
                  {
                    cause: err,
                  },
                ),
              ),
          );
        }
        if (ended && batches.length === 0 && submitted === this.received && !failed) {
          budget.forget(resume);
          resolve();
        }
      };
      body.on('data', (chunk: Buffer) => {
        if (failed) return;
        const from = this.received;
        if (this.size !== undefined && from + chunk.length > this.size) {
          failWith(
            new ChecksumMismatch(`${this.path}: upstream sent more than the expected ${this.size} bytes`),
          );
          return;
        }
        this.received += chunk.length;
        this.hash!.update(chunk);
        budget.add(chunk.length);
        this.deps.memory?.received(chunk.length);
        this.queue.push(chunk);
        this.fanOut(chunk, from);
        if (!paused && budget.full(queued())) {
          paused = true;
          pausedAt = this.deps.clock();
          this.pauses++;
          body.pause();
          budget.onRoom(resume);
        }
        pump();
      });
      body.once('end', () => {
        ended = true;
        pump();
      });
      body.once('error', failWith);
      // The body may have failed while the temp file was being opened (an upstream reset right
      // after the headers): a stream that already failed emits nothing to listeners added now,
      // and the flight would wait for it forever.
      if (body.errored) failWith(body.errored);
      else if (body.destroyed && !body.readableEnded)
        failWith(new Error('the upstream connection closed before the body was read'));
    });
  }

  /** Starts an fdatasync of the temp file once SYNC_EVERY more bytes were written (one at a time, see WriteBudget). */
  private syncInBackground(): void {
    if (!this.deps.settings.saveToStorage || this.written - this.syncedUpTo < SYNC_EVERY) return;
    if (this.syncBusy || !this.deps.budget.takeSyncSlot()) return;
    const fh = this.fh!;
    const upTo = this.written;
    this.syncBusy = true;
    const done = () => {
      this.syncBusy = false;
      this.deps.budget.releaseSyncSlot();
    };
    this.syncing = fh.datasync().then(
      () => {
        this.syncedUpTo = upTo;
        done();
      },
      // The commit's own fsync reports any real problem.
      done,
    );
  }

  /**
   * Verifies, saves (or not), updates the database, then releases the
   * held-back bytes: a client that got the whole body can rely on the file
   * being in storage and the unit marked. The fsync of the commit is short
   * because the file was synced in the background while it was written
   * (SYNC_EVERY).
   */
  private async finish(entry: CatalogEntryDoc): Promise<void> {
    const { db, metrics, settings, clock } = this.deps;
    const bodyMs = clock() - this.startedAt;
    this.state = 'finishing';
    this.endLive();
    this.notify();
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
        await this.syncing;
        await commitFile(this.temp!, entry.path);
        this.temp = undefined;
        this.saved = true;
      } catch (err) {
        this.log.error({ err: oneLine(err) }, 'verified file could not be saved into storage');
      }
    }
    const savedMs = clock() - this.startedAt;
    try {
      const downloaded = this.saved && (await markDownloadedIfComplete(db, entry.unit_id));
      if (downloaded) await clearDeferred(db, entry);
      else if (this.wantsDeferred) await queueDeferred(db, entry, new Date(clock()));
    } catch (err) {
      this.log.error({ err: oneLine(err) }, 'cannot record the download in the database');
    }
    metrics.saves.inc({ result: this.saved ? 'saved' : settings.saveToStorage ? 'failed' : 'not_saved' });
    this.state = 'done';
    this.onRetire(this);
    this.notify();
    this.log.info(
      {
        bytes: this.written,
        saved: this.saved,
        bodyMs,
        savedMs,
        ms: clock() - this.startedAt,
        upstreamPauses: this.pauses,
        upstreamPausedMs: this.pausedMs,
      },
      'fetch complete',
    );
  }

  /** Bytes did not match the catalog: cool the entry down and record the failure in the queue. */
  private async recordVerificationFailure(entry: CatalogEntryDoc, err: ChecksumMismatch): Promise<void> {
    const { catalog, db, clock, metrics, settings } = this.deps;
    metrics.checksumFailures.inc();
    if (this.state !== 'fetching') metrics.saves.inc({ result: 'failed' });
    const now = clock();
    const until = new Date(now + settings.failureCooldownMs);
    this.log.warn(
      { url: redactUrl(entry.url), err: err.message },
      'verification failed; entry skipped until cooldown ends',
    );
    try {
      await catalog.markFailed(entry, err.message, until);
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
    this.endLive();
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

/** Bytes `from` to `end` of `chunks`, whose first byte is byte `chunksStart`. */
function bytesBetween(chunks: readonly Buffer[], chunksStart: number, from: number, end: number): Buffer[] {
  const out: Buffer[] = [];
  let at = chunksStart;
  for (const c of chunks) {
    if (at >= end) break;
    const next = at + c.length;
    if (next > from) {
      const a = Math.max(0, from - at);
      const b = Math.min(c.length, end - at);
      out.push(a === 0 && b === c.length ? c : c.subarray(a, b));
    }
    at = next;
  }
  return out;
}

/** Writes `chunks` at `position`, resuming after short writes. */
async function writeAll(fh: FileHandle, chunks: Buffer[], position: number): Promise<void> {
  let pending = chunks;
  let at = position;
  while (pending.length > 0) {
    const { bytesWritten } = await fh.writev(pending, at);
    if (bytesWritten === 0) throw new Error('cannot write to the temp file');
    at += bytesWritten;
    pending = bytesBetween(pending, 0, bytesWritten, Number.POSITIVE_INFINITY);
  }
}
