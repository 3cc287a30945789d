/**
 * Reads of a flight's temp file for the clients that fell behind or joined
 * late (send.ts's FileReader calls them through the flight). Bytes written
 * with O_DIRECT are not in the page cache, so a lone client reads them the
 * same way; several clients reading back share whole blocks instead, read
 * once through the page cache.
 */
import type { FileHandle } from 'node:fs/promises';
import type { Counter } from '../metrics.ts';
import { readDirect } from '../storage/direct-io.ts';

/** Size of the temp-file blocks shared by clients reading back (sharedBlock). */
export const SHARED_BLOCK = 1 << 20;
/**
 * Shared blocks kept per flight at most (and never more than its clients):
 * clients spread over the file each find their block without a read of their
 * own. With fewer blocks than clients, evicted blocks were read again and
 * again, each a fresh 1 MiB allocation that kept the garbage collector busy.
 */
export const SHARED_BLOCKS_MAX = 64;

/** What read-back needs of the temp file (temp-file.ts's TempFileWriter). */
export interface ReadBackFile {
  /** Its ordinary handle; undefined before it is created and once closed. */
  readonly handle: FileHandle | undefined;
  /** Its O_DIRECT read handle, for files written with O_DIRECT. */
  readonly directRead: FileHandle | undefined;
  /** Bytes on file so far. */
  readonly written: number;
  readonly path: string | undefined;
}

export class ReadBack {
  /** Recently read blocks of the file, by index (see sharedBlock). */
  private readonly blocks = new Map<number, Promise<Buffer>>();

  constructor(
    private readonly file: ReadBackFile,
    /** Counts the bytes read, by io (direct, buffered). */
    private readonly bytesRead: Counter,
    /** How many clients are attached to the flight now. */
    private readonly clients: () => number,
  ) {}

  /** Reads bytes of the file at `position` (only below what the flight releases, while attached). */
  async read(buf: Buffer, length: number, position: number): Promise<number> {
    const { handle, directRead } = this.file;
    if (!handle) throw new Error('flight has no file');
    // Reading O_DIRECT-written bytes through the page cache would fill fresh pages (the cost
    // the direct writes avoid), so a lone client reads them the same way. Clients that share
    // reads (sharedBlock) go through the page cache.
    if (directRead && this.clients() < 2) {
      const n = await readDirect(directRead, buf, length, position);
      this.bytesRead.inc({ io: 'direct' }, n);
      return n;
    }
    const { bytesRead } = await handle.read(buf, 0, length, position);
    this.bytesRead.inc({ io: 'buffered' }, bytesRead);
    return bytesRead;
  }

  /**
   * The full aligned block of the file that holds byte `pos`, shared by the
   * clients reading the file back (read once, kept for the next readers:
   * clients that fell behind together then cost one read, not one each).
   * Undefined when fewer than two clients are attached or the block is not
   * complete on file yet: read it yourself then.
   */
  sharedBlock(pos: number): Promise<{ buf: Buffer; start: number }> | undefined {
    const clients = this.clients();
    if (clients < 2 || !this.file.handle) return undefined;
    const index = Math.floor(pos / SHARED_BLOCK);
    const start = index * SHARED_BLOCK;
    if (start + SHARED_BLOCK > this.file.written) return undefined;
    let block = this.blocks.get(index);
    if (!block) {
      const buf = Buffer.allocUnsafe(SHARED_BLOCK);
      block = this.read(buf, SHARED_BLOCK, start).then((bytesRead) => {
        if (bytesRead !== SHARED_BLOCK) throw new Error(`${this.file.path}: short read at ${start}`);
        return buf;
      });
      block.catch(() => this.blocks.delete(index));
      this.blocks.set(index, block);
      const keep = Math.min(SHARED_BLOCKS_MAX, clients);
      for (const old of this.blocks.keys()) {
        if (this.blocks.size <= keep) break;
        this.blocks.delete(old);
      }
    }
    return block.then((buf) => ({ buf, start }));
  }

  /** Drops the kept blocks (the flight is over). */
  clear(): void {
    this.blocks.clear();
  }
}
