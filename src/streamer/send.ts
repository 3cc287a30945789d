/**
 * Writing a file to an HTTP response with backpressure: a flight's growing
 * temp file (each client at its own pace) or a file already in storage.
 */
import type { Stats } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { contentRange, parseRange, unsatisfiedRange } from '../http/range.ts';
import { drainOrClose, endResponse, writeChunk } from '../http/response.ts';
import { sendFile } from '../http/send-file.ts';
import type { LiveClient } from './fan-out.ts';
import type { Flight } from './flight.ts';
import { type CacheControlOverride, cacheControl, contentTypeFor, withCacheControl } from './headers.ts';

/** Largest read from the temp file per step (fast clients). */
export const READ_CHUNK = 1 << 20;
/** First and smallest read: a client whose socket keeps pushing back stays here. */
export const MIN_READ_CHUNK = 64 * 1024;
/**
 * Read buffers of all clients together may grow past MIN_READ_CHUNK only
 * while they hold less than this (a hundred slow clients must not each keep
 * two 1 MiB buffers because their socket buffers looked empty at first).
 */
export const READ_BUFFERS_BUDGET = 8 << 20;
/**
 * A socket that pushed back but then took a whole read at this rate or more
 * (bytes per ms: 32 MB/s) belongs to a client that keeps up, e.g. Apache
 * relaying to its client: its reads grow as if it had not pushed back. The
 * reads of a large file written with O_DIRECT go to the disk, where small
 * reads held a cold miss through Apache to half the rate of 1 MiB reads.
 */
export const FAST_DRAIN_RATE = 32_000;
let readBuffersGrown = 0;

export type SendResult = 'complete' | 'client_gone' | 'broken';

/**
 * Sends the flight's headers, then its bytes as they become releasable, then
 * ends the response once every byte is verified. If the flight fails, the
 * response is destroyed (never ended cleanly). Call once `flight.ready` resolved.
 *
 * The client is live (gets upstream chunks directly, see Flight.goLive)
 * whenever it has caught up; otherwise it reads the temp file at its own
 * pace, with two alternating buffers whose size adapts to the client (from
 * MIN_READ_CHUNK up to READ_CHUNK while its socket keeps up, halved when it
 * pushes back and drains slowly), so memory per slow client stays small.
 */
export async function sendFromFlight(
  flight: Flight,
  res: ServerResponse,
  onBytes: { live: (n: number) => void; file: (n: number) => void },
  rangeHeader?: string,
  cacheOverride?: CacheControlOverride,
): Promise<SendResult> {
  let wake: (() => void) | undefined;
  const onClose = () => wake?.();
  res.once('close', onClose);
  try {
    // A range is served once the size is known; the response still ends only
    // after the whole file was verified, so a bad object never ends cleanly.
    const size = flight.size;
    const range = size === undefined ? undefined : parseRange(rangeHeader, size);
    if (range === 'unsatisfiable') {
      res.writeHead(416, { 'content-range': unsatisfiedRange(size!), 'content-length': 0 });
      return (await endResponse(res)) ? 'complete' : 'client_gone';
    }
    let pos = 0;
    let stop = Number.POSITIVE_INFINITY;
    if (range) {
      res.writeHead(206, {
        ...withCacheControl(flight.headers, cacheOverride),
        'content-length': String(range.end - range.start + 1),
        'content-range': contentRange(range, size!),
      });
      pos = range.start;
      stop = range.end + 1;
    } else {
      res.writeHead(200, withCacheControl(flight.headers, cacheOverride));
    }
    // The status and headers go out now, not with the first body bytes (which may still be on
    // their way from upstream): that is the client's first byte a few ms sooner on a miss.
    if (!flight.complete) res.flushHeaders();
    const reader = new FileReader(flight, res, onBytes.file);
    res.once('close', () => reader.release());
    for (;;) {
      const seen = flight.version;
      if (res.destroyed) return 'client_gone';
      const limit = Math.min(flight.releasable(), stop);
      if (pos < limit) {
        const got = await reader.send(pos, limit);
        if (got === 0) {
          res.destroy();
          return 'broken';
        }
        pos += got;
        continue;
      }
      if (flight.complete && pos >= Math.min(flight.written, stop)) {
        await reader.flushed();
        return (await endResponse(res)) ? 'complete' : 'client_gone';
      }
      if (flight.state === 'failed') {
        res.destroy();
        return 'broken';
      }
      if (stop === Number.POSITIVE_INFINITY && pos >= flight.written) {
        await reader.drained();
        const live = await goLive(flight, res, pos, onBytes.live);
        pos = live.pos;
        if (live.pushedBack) await drainOrClose(res);
        if (live.moved || live.pushedBack) continue;
      }
      await new Promise<void>((resolve) => {
        wake = resolve;
        flight.changed(seen).then(resolve);
      });
      wake = undefined;
    }
  } finally {
    res.off('close', onClose);
  }
}

/**
 * Live mode: resolves when the client stops being live (its socket pushed
 * back, the body ended or failed, or the response closed), with its new position.
 */
function goLive(
  flight: Flight,
  res: ServerResponse,
  pos: number,
  onBytes: (n: number) => void,
): Promise<{ pos: number; moved: boolean; pushedBack: boolean }> {
  return new Promise((resolve) => {
    const start = pos;
    let done = false;
    const c: LiveClient = {
      res,
      pos,
      onBytes,
      leave: () => finish(false),
    };
    const onClose = () => finish(true);
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      res.off('close', onClose);
      if (closed) flight.dropLive(c);
      resolve({ pos: c.pos, moved: c.pos > start || closed, pushedBack: !closed && res.writableNeedDrain });
    };
    if (!flight.goLive(c)) {
      resolve({ pos: c.pos, moved: c.pos > start, pushedBack: res.writableNeedDrain });
      return;
    }
    res.once('close', onClose);
  });
}

/**
 * Temp-file reads for one client: two alternating buffers, read size adapted
 * to the client. The next read runs while the socket drains the last write.
 */
class FileReader {
  private readonly bufs: Buffer[] = [];
  private turn = 0;
  private chunk = MIN_READ_CHUNK;
  /** Resolves when the previous write of each buffer was handed to the kernel (or the response closed). */
  private readonly writes: Array<Promise<void> | undefined> = [undefined, undefined];
  /** The drain the last write is waiting for (its socket pushed back); resizes the reads when over. */
  private draining: Promise<void> | undefined;

  constructor(
    private readonly flight: Flight,
    private readonly res: ServerResponse,
    private readonly onBytes: (n: number) => void,
  ) {}

  /** Reads up to `limit` from `pos` and writes it; resolves with the bytes sent (0: file too short). */
  async send(pos: number, limit: number): Promise<number> {
    const shared = this.flight.readBack.sharedBlock(pos);
    if (shared) {
      const { buf, start } = await shared;
      await this.drained();
      if (this.res.destroyed) return 0;
      const part = buf.subarray(pos - start, Math.min(limit, start + buf.length) - start);
      this.onBytes(part.length);
      if (!this.res.write(part)) await drainOrClose(this.res);
      return part.length;
    }
    const i = this.turn;
    this.turn ^= 1;
    await this.writes[i];
    const n = Math.min(limit - pos, this.chunk);
    let buf = this.bufs[i];
    if (n < this.chunk) {
      // A short read (small file, or the growing edge): a buffer of its size, not kept.
      buf = Buffer.allocUnsafe(n);
    } else if (!buf || buf.length !== this.chunk) {
      buf = Buffer.allocUnsafe(this.chunk);
      this.bufs[i] = buf;
    }
    const got = await this.flight.readBack.read(buf, n, pos);
    if (got === 0) return got;
    await this.drained();
    if (this.res.destroyed) return got;
    this.onBytes(got);
    const { ok, taken } = writeChunk(this.res, got === buf.length ? buf : buf.subarray(0, got));
    this.writes[i] = taken;
    const full = got === this.chunk;
    if (ok) {
      this.adapt(true, full);
      return got;
    }
    const pushedBack = performance.now();
    this.draining = drainOrClose(this.res).then(() => {
      if (this.res.destroyed) return; // released: the budget is settled
      this.adapt(got / Math.max(performance.now() - pushedBack, 0.001) >= FAST_DRAIN_RATE, full);
    });
    return got;
  }

  /** Doubles the read size after a full read the client kept up with; halves it when it did not. */
  private adapt(keptUp: boolean, full: boolean): void {
    if (!keptUp) this.resize(Math.max(MIN_READ_CHUNK, this.chunk / 2));
    else if (full) this.resize(Math.min(READ_CHUNK, this.chunk * 2));
  }

  /** Resolves once the socket took the last write that pushed back (or the response closed). */
  async drained(): Promise<void> {
    const d = this.draining;
    this.draining = undefined;
    await d;
  }

  /** Changes the read size, within the shared budget when growing. */
  private resize(chunk: number): void {
    const extra = 2 * (chunk - this.chunk);
    if (extra === 0 || (extra > 0 && readBuffersGrown + extra > READ_BUFFERS_BUDGET)) return;
    readBuffersGrown += extra;
    this.chunk = chunk;
  }

  /** Gives the grown part of the buffers back to the budget (once, when the response closed). */
  release(): void {
    readBuffersGrown -= 2 * (this.chunk - MIN_READ_CHUNK);
    this.chunk = MIN_READ_CHUNK;
    this.bufs.length = 0;
  }

  /** Resolves once both buffers' writes were handed to the kernel (or the response closed). */
  async flushed(): Promise<void> {
    await this.drained();
    if (this.res.destroyed) return;
    await Promise.all(this.writes);
  }
}

/** Headers for a file in storage. */
export function storedHeaders(file: string, st: Stats, cacheTimeoutMs: number): Record<string, string> {
  return {
    'content-type': contentTypeFor(file),
    'content-length': String(st.size),
    'last-modified': st.mtime.toUTCString(),
    'cache-control': cacheControl(cacheTimeoutMs),
  };
}

/** Streams a stored file (GET, with Range) or only its headers (HEAD). */
export async function sendStored(
  req: IncomingMessage,
  res: ServerResponse,
  file: string,
  st: Stats,
  cacheTimeoutMs: number,
  onBytes: (n: number) => void,
  cacheOverride?: CacheControlOverride,
): Promise<SendResult> {
  const { 'content-length': _, ...headers } = withCacheControl(
    storedHeaders(file, st, cacheTimeoutMs),
    cacheOverride,
  )!;
  const r = await sendFile(req, res, file, st, headers, onBytes);
  return r === 'not_modified' ? 'complete' : r;
}
