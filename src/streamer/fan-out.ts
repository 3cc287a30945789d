/**
 * Fan-out of a flight's upstream chunks to its live clients: a client that
 * has every byte received so far gets each new chunk directly, without a
 * copy, until its socket pushes back (LIVE_BUFFER); it then leaves and reads
 * the temp file at its own pace (send.ts), so upstream is never slowed by a
 * client.
 */
import type { Writable } from 'node:stream';

/** Bytes a live client may have waiting in its socket before it reads from the file instead. */
export const LIVE_BUFFER = 128 * 1024;

/** What fan-out needs of a client's response. */
export type LiveResponse = Pick<Writable, 'write' | 'cork' | 'uncork' | 'writableLength' | 'destroyed'>;

/** A client receiving upstream chunks directly (see FanOut.join). */
export interface LiveClient {
  res: LiveResponse;
  /** Next byte the client needs. */
  pos: number;
  onBytes: (n: number) => void;
  /** Called once when the client stops being live (fell behind, or the body ended or failed). */
  leave: () => void;
}

export class FanOut {
  private readonly live = new Set<LiveClient>();
  private pending: Array<{ chunk: Buffer; from: number }> = [];
  private readonly flushSoon = () => this.flush();

  /** `holdAt`: the first byte not to send yet (held back until the file is verified). */
  constructor(private readonly holdAt: () => number) {}

  /** Live clients now. */
  get size(): number {
    return this.live.size;
  }

  /**
   * Makes `c` live: `queued` (body bytes from `queueStart`: received, not yet
   * on file) is sent first, then every new chunk as it arrives. Returns false
   * (nothing registered) when the socket pushed back or `c` still lacks
   * bytes received before; c.pos tells what was sent either way. Once live,
   * c.leave() is called when it stops being live.
   */
  join(c: LiveClient, queued: readonly Buffer[], queueStart: number, received: number): boolean {
    let from = queueStart;
    for (const chunk of queued) {
      if (!this.send(c, chunk, from)) return false;
      from += chunk.length;
    }
    if (c.pos < Math.min(received, this.holdAt())) return false;
    this.live.add(c);
    return true;
  }

  /** Stops sending to `c` (its response closed); does not call c.leave(). */
  drop(c: LiveClient): void {
    this.live.delete(c);
  }

  /**
   * Queues `chunk` (body bytes from `from`) for the live clients. Chunks are
   * sent once per event-loop turn (setImmediate), so the chunks of one
   * socket read burst go out in one corked writev per client instead of one
   * syscall per chunk.
   */
  add(chunk: Buffer, from: number): void {
    if (this.live.size === 0) return;
    if (this.pending.length === 0) setImmediate(this.flushSoon);
    this.pending.push({ chunk, from });
  }

  /** Sends the queued chunks; a client whose socket filled up leaves. */
  flush(): void {
    const pending = this.pending;
    if (pending.length === 0) return;
    this.pending = [];
    for (const c of this.live) {
      if (c.res.destroyed) {
        this.live.delete(c);
        continue;
      }
      let i = 0;
      while (i < pending.length && c.res.writableLength < LIVE_BUFFER) {
        c.res.cork();
        for (; i < pending.length && c.res.writableLength < LIVE_BUFFER; i++) {
          this.send(c, pending[i]!.chunk, pending[i]!.from);
        }
        c.res.uncork();
      }
      if (i < pending.length || c.res.writableLength >= LIVE_BUFFER) {
        this.live.delete(c);
        c.leave();
      }
    }
  }

  /** Sends what is queued, then every client leaves (the body ended or failed). */
  end(): void {
    this.flush();
    const live = [...this.live];
    this.live.clear();
    for (const c of live) c.leave();
  }

  /** Writes the part of `chunk` (starting at byte `from`) that `c` needs; false when its socket pushed back. */
  private send(c: LiveClient, chunk: Buffer, from: number): boolean {
    const start = c.pos - from;
    const end = Math.min(chunk.length, this.holdAt() - from);
    if (start >= end || start < 0) return true;
    c.pos += end - start;
    c.onBytes(end - start);
    return c.res.write(start === 0 && end === chunk.length ? chunk : chunk.subarray(start, end));
  }
}
