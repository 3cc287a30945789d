/**
 * A flight's temp file in the working dir, and the writing of an upstream
 * body into it at upstream speed.
 *
 * Each chunk is queued as it arrives; queued bytes are written in batches,
 * up to WRITE_PARALLEL positional writes at a time (`written` advances over
 * the contiguous completed prefix). With a direct handle (large files,
 * streamer.direct_io_min_size), a batch is whole blocks, at most one staging
 * slot, written with O_DIRECT: a lone client that fell behind reads them back
 * the same way (read-back.ts). While one of several clients reads the file
 * back (`sharesReads`), batches are buffered: those clients share blocks and
 * edge reads through the page cache. The bytes after the last whole block are
 * written buffered at the end. Upstream is paused only while the write budget
 * (write-budget.ts) is used up.
 *
 * The file is fdatasync'ed in the background every SYNC_EVERY bytes while it
 * is written, so that the final commit (fsync + rename, moveTo) does not hold
 * the flight's last byte for seconds per GiB.
 */
import { type FileHandle, open, rm } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { ChecksumMismatch, oneLine, PulpLazyError } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { Counter } from '../metrics.ts';
import { alignDown, alignUp, openDirect, STAGING_SLOT, writeDirect } from '../storage/direct-io.ts';
import { commitFile, tempPath } from '../storage/index.ts';
import type { WriteBudget } from './write-budget.ts';

/** The temp file is fdatasync'ed in the background each time this many more bytes were written. */
export const SYNC_EVERY = 64 << 20;
/**
 * Positional writes to the temp file in progress at most. One at a time was
 * tried: the streamer then spun on the file's inode lock, and a few writes in
 * flight gave more throughput for no more CPU.
 */
export const WRITE_PARALLEL = 4;
/** A write starts while others run only once this many bytes are queued. */
export const WRITE_BATCH = 256 * 1024;

export interface TempFileOptions {
  /** The storage path the file is for: names the temp file, and the errors about it. */
  name: string;
  settings: {
    workingDir: string;
    /** The file will be committed into storage: only then is it fdatasync'ed in the background. */
    saveToStorage: boolean;
    /** Files of at least this many bytes are written with O_DIRECT (storage/direct-io.ts); absent: none. */
    directIoMinSize?: number | undefined;
  };
  budget: WriteBudget;
  clock: () => number;
  /** Counts the bytes handed to each write, by io (direct, buffered). */
  bytesWritten: Counter;
  log: Logger;
  /** Told of each body chunk (starting at body byte `from`) once it is queued, before it is written. */
  onChunk: (chunk: Buffer, from: number) => void;
  /** Called each time `written` advanced. */
  onWritten: () => void;
  /** Whether several clients read the file back now: batches then go through the page cache. */
  sharesReads: () => boolean;
}

export class TempFileWriter {
  /** Body bytes received so far. */
  received = 0;
  /** Bytes in the file so far (a contiguous prefix). */
  written = 0;
  /** Received chunks not yet written, in order; the first starts at `queueStart`. */
  queue: Buffer[] = [];
  queueStart = 0;
  /** The temp file's path; undefined before it is created and once it was moved or removed. */
  path: string | undefined;
  /** The file's ordinary handle (writes, fdatasync, buffered reads). */
  handle: FileHandle | undefined;
  /** A handle for O_DIRECT reads by a client reading the file back (large files only). */
  directRead: FileHandle | undefined;
  /** How often and how long upstream waited for the disk. */
  pauses = 0;
  pausedMs = 0;

  /** A second handle for O_DIRECT writes (large files only). */
  private direct: FileHandle | undefined;
  private opening: Promise<void> | undefined;
  private body: Readable | undefined;
  /** Expected size of the body; more is an error. */
  private size: number | undefined;
  private resolve: (() => void) | undefined;
  private reject: ((err: unknown) => void) | undefined;
  /** Batches being written, in file order. */
  private readonly batches: Array<{ end: number; done: boolean }> = [];
  /** Bytes handed to a write so far. */
  private submitted = 0;
  private ended = false;
  private failed = false;
  private paused = false;
  private pausedAt = 0;
  /** Background fdatasync of the file (see syncInBackground). */
  private syncing: Promise<void> = Promise.resolve();
  private syncBusy = false;
  private syncedUpTo = 0;

  constructor(private readonly opts: TempFileOptions) {}

  /** Creates the temp file (once; a failed attempt is tried again at the next call). */
  open(): Promise<void> {
    if (!this.opening) {
      const opening = (async () => {
        const temp = await tempPath(this.opts.settings.workingDir, this.opts.name);
        const fh = await open(temp, 'w+', 0o644);
        this.path = temp;
        this.handle = fh;
      })();
      opening.catch(() => {
        if (this.opening === opening) this.opening = undefined;
      });
      this.opening = opening;
    }
    return this.opening;
  }

  /** Opens the O_DIRECT handles when a body of `size` bytes is large enough (and the file system allows it). */
  async openDirect(size: number | undefined): Promise<void> {
    const min = this.opts.settings.directIoMinSize;
    if (min === undefined || size === undefined || size < min) return;
    this.direct = await openDirect(this.path!);
    if (this.direct) this.directRead = await openDirect(this.path!, 'read');
  }

  /**
   * Reads `body` (expected: `size` bytes, when known) into the file. Resolves
   * once the whole body is in the file; rejects (and destroys the body) on
   * the first failure: upstream, disk, or more bytes than expected.
   */
  write(body: Readable, size: number | undefined): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      this.body = body;
      this.size = size;
      this.resolve = resolve;
      this.reject = reject;
      body.on('data', this.onData);
      body.once('end', this.onEnd);
      body.once('error', this.fail);
      // The body may have failed while the temp file was being opened (an upstream reset right
      // after the headers): a stream that already failed emits nothing to listeners added now,
      // and the flight would wait for it forever.
      if (body.errored) this.fail(body.errored);
      else if (body.destroyed && !body.readableEnded)
        this.fail(new Error('the upstream connection closed before the body was read'));
    });
  }

  private readonly onData = (chunk: Buffer): void => {
    if (this.failed) return;
    const from = this.received;
    if (this.size !== undefined && from + chunk.length > this.size) {
      this.fail(
        new ChecksumMismatch(`${this.opts.name}: upstream sent more than the expected ${this.size} bytes`),
      );
      return;
    }
    const budget = this.opts.budget;
    this.received += chunk.length;
    budget.add(chunk.length);
    this.queue.push(chunk);
    this.opts.onChunk(chunk, from);
    if (!this.paused && budget.full(this.received - this.written)) {
      this.paused = true;
      this.pausedAt = this.opts.clock();
      this.pauses++;
      this.body!.pause();
      budget.onRoom(this.resume);
    }
    this.pump();
  };

  private readonly onEnd = (): void => {
    this.ended = true;
    this.pump();
  };

  private readonly resume = (): void => {
    if (!this.paused || this.failed) return;
    const budget = this.opts.budget;
    if (budget.full(this.received - this.written)) {
      budget.onRoom(this.resume);
      return;
    }
    this.paused = false;
    this.pausedMs += this.opts.clock() - this.pausedAt;
    this.body!.resume();
  };

  private readonly fail = (err: unknown): void => {
    if (this.failed) return;
    this.failed = true;
    this.opts.budget.forget(this.resume);
    this.opts.budget.release(this.received - this.written);
    this.body!.destroy();
    this.reject!(err);
  };

  /** Starts writes while fewer than WRITE_PARALLEL run; resolves write() once all is written. */
  private pump(): void {
    if (this.failed) return;
    while (this.batches.length < WRITE_PARALLEL) {
      const next = this.nextBatch();
      if (!next) break;
      this.submit(next.end, next.direct);
    }
    if (this.ended && this.batches.length === 0 && this.submitted === this.received && !this.failed) {
      this.opts.budget.forget(this.resume);
      this.resolve!();
    }
  }

  /** The end of the next batch from `submitted` (undefined: wait for more bytes), and how. */
  private nextBatch(): { end: number; direct: boolean } | undefined {
    const { received, submitted } = this;
    const unsubmitted = received - submitted;
    if (unsubmitted === 0) return undefined;
    if (this.batches.length > 0 && unsubmitted < WRITE_BATCH && !this.ended) return undefined;
    // O_DIRECT unless clients share reads of the file back: those want the page cache.
    if (!this.direct || this.opts.sharesReads()) return { end: received, direct: false };
    // A block begun by a buffered write is finished by one.
    const next = alignUp(submitted);
    if (next > submitted) return { end: Math.min(next, received), direct: false };
    const blocks = alignDown(received);
    if (blocks > submitted) return { end: Math.min(blocks, submitted + STAGING_SLOT), direct: true };
    return this.ended ? { end: received, direct: false } : undefined;
  }

  /** Writes the queued bytes from `submitted` to `end`. */
  private submit(end: number, direct: boolean): void {
    const at = this.submitted;
    const batch = { end, done: false };
    this.submitted = end;
    this.batches.push(batch);
    const chunks = bytesBetween(this.queue, this.queueStart, at, end);
    const bytes = chunks.reduce((n, c) => n + c.length, 0);
    (direct ? writeDirect(this.direct!, chunks, at) : writeAll(this.handle!, chunks, at)).then(
      () => {
        if (this.failed) return;
        this.opts.bytesWritten.inc({ io: direct ? 'direct' : 'buffered' }, bytes);
        batch.done = true;
        this.complete();
        if (this.paused) this.resume();
        this.pump();
      },
      (err: unknown) =>
        this.fail(
          new PulpLazyError(
            'PL_STREAMER_IO',
            `${this.opts.name}: cannot write the temp file: ${oneLine(err)}`,
            { cause: err },
          ),
        ),
    );
  }

  /** Advances `written` over the batches done at the front; drops the chunks wholly on file. */
  private complete(): void {
    let n = 0;
    while (this.batches[0]?.done) {
      const b = this.batches.shift()!;
      n += b.end - this.written;
      this.written = b.end;
    }
    if (n === 0) return;
    // A direct batch may end inside a chunk: that chunk stays queued.
    let drop = 0;
    let start = this.queueStart;
    while (drop < this.queue.length && start + this.queue[drop]!.length <= this.written) {
      start += this.queue[drop]!.length;
      drop++;
    }
    this.queue.splice(0, drop);
    this.queueStart = start;
    this.opts.budget.release(n);
    this.syncInBackground();
    this.opts.onWritten();
  }

  /** Starts an fdatasync once SYNC_EVERY more bytes were written (one at a time, see WriteBudget). */
  private syncInBackground(): void {
    if (!this.opts.settings.saveToStorage || this.written - this.syncedUpTo < SYNC_EVERY) return;
    if (this.syncBusy || !this.opts.budget.takeSyncSlot()) return;
    const fh = this.handle!;
    const upTo = this.written;
    this.syncBusy = true;
    const done = () => {
      this.syncBusy = false;
      this.opts.budget.releaseSyncSlot();
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

  /** Bytes covered by a completed background fdatasync. */
  get synced(): number {
    return this.syncedUpTo;
  }

  /** Closes the O_DIRECT write handle, once its writes are over (FileHandle.close waits for them). */
  async closeDirect(): Promise<void> {
    const direct = this.direct;
    this.direct = undefined;
    await direct?.close().catch(() => {});
  }

  /** fsyncs the written file and renames it onto `target` (after any background fdatasync). */
  async moveTo(target: string): Promise<void> {
    await this.syncing;
    await commitFile(this.path!, target);
    this.path = undefined;
  }

  /** Once writing is over (done or failed): waits for a creation still under way, closes the direct handle. */
  async stop(): Promise<void> {
    await this.opening?.catch(() => {});
    await this.closeDirect();
  }

  /** Forgets the queued bytes and removes the file unless it was moved into storage. */
  async remove(): Promise<void> {
    this.queue = [];
    if (!this.path) return;
    const temp = this.path;
    this.path = undefined;
    await rm(temp, { force: true }).catch((err) =>
      this.opts.log.error({ temp, err }, 'cannot remove temp file'),
    );
  }

  /** Closes the read handles (once no client reads the file any more). */
  closeHandles(): void {
    if (!this.handle) return;
    const fh = this.handle;
    this.handle = undefined;
    fh.close().catch(() => {});
    this.directRead?.close().catch(() => {});
    this.directRead = undefined;
  }
}

/** Bytes `from` to `end` of `chunks`, whose first byte is byte `chunksStart`. */
export function bytesBetween(
  chunks: readonly Buffer[],
  chunksStart: number,
  from: number,
  end: number,
): Buffer[] {
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
