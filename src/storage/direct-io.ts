/**
 * Writes (and reads back) of large temp files that bypass the page cache
 * (O_DIRECT), for the streamer's saves (streamer.direct_io_min_size).
 *
 * Why: a buffered write of new data puts every byte into the page cache.
 * Where those pages come from free memory, that costs far more than the
 * copy: on VMs that hand free memory back to their host (free page
 * reporting) every page taken from free memory costs the host a round trip,
 * and a buffered write of a large file cost several times the system CPU of
 * an O_DIRECT write from one reused buffer. A cold miss of a large file
 * saved while streaming paid that on its way to the client. A large file is also rarely wanted
 * from memory again soon, and a buffered write of it pushes out pages that
 * are (nginx's `directio` for reads, on the same reasoning).
 *
 * O_DIRECT needs the memory address, the file offset and the length
 * aligned to the device's block size (DIRECT_ALIGN covers 512 and 4096).
 * Node's Buffers have no alignment guarantee, so the bytes are copied into
 * staging slots carved from one WebAssembly.Memory, whose backing store
 * starts on a page boundary; a slot is held only for the copy and its
 * write, so a few slots serve any number of flights. The part of a file
 * after its last full block is written through an ordinary handle by the
 * caller. A file system without O_DIRECT refuses it at open (tmpfs did on
 * older kernels; on Linux 6.18 here it accepts it): openDirect() then
 * answers undefined and the caller writes as before.
 */
import { constants } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';

/** Offsets and lengths of direct writes are multiples of this. */
export const DIRECT_ALIGN = 4096;
/** Bytes one direct write moves at most (one staging slot). */
export const STAGING_SLOT = 1 << 20;
/** Staging slots in the process (direct reads and writes in progress at most, all flights together). */
export const STAGING_SLOTS = 4;

const WASM_PAGE = 64 * 1024;
// The one part of the WebAssembly API used here (not in this project's TypeScript libs).
declare const WebAssembly: { Memory: new (d: { initial: number }) => { buffer: ArrayBuffer } };

/** `n` rounded down to a multiple of DIRECT_ALIGN. */
export function alignDown(n: number): number {
  return n - (n % DIRECT_ALIGN);
}

/** `n` rounded up to a multiple of DIRECT_ALIGN. */
export function alignUp(n: number): number {
  return alignDown(n + DIRECT_ALIGN - 1);
}

/**
 * Opens `file` (which exists) a second time, for O_DIRECT writes or reads.
 * Undefined where the platform or the file system does not offer it.
 */
export async function openDirect(
  file: string,
  mode: 'write' | 'read' = 'write',
): Promise<FileHandle | undefined> {
  const flag = constants.O_DIRECT;
  if (flag === undefined) return undefined;
  try {
    return await open(file, (mode === 'write' ? constants.O_WRONLY : constants.O_RDONLY) | flag);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EINVAL' || code === 'EOPNOTSUPP' || code === 'ENOTSUP') return undefined;
    throw err;
  }
}

/** Page-aligned buffers, lent out one at a time (see the module comment). */
class StagingPool {
  private readonly free: Buffer[] = [];
  private readonly waiting: Array<(slot: Buffer) => void> = [];

  constructor(slots: number, slotSize: number) {
    const memory = new WebAssembly.Memory({ initial: (slots * slotSize) / WASM_PAGE });
    for (let i = 0; i < slots; i++) this.free.push(Buffer.from(memory.buffer, i * slotSize, slotSize));
  }

  acquire(): Promise<Buffer> {
    const slot = this.free.pop();
    if (slot) return Promise.resolve(slot);
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  release(slot: Buffer): void {
    const next = this.waiting.shift();
    if (next) next(slot);
    else this.free.push(slot);
  }
}

let pool: StagingPool | undefined;

/**
 * Writes `chunks`, one after the other, at `position` through `fh` (opened
 * by openDirect). `position` and their total length are multiples of
 * DIRECT_ALIGN, the length at most STAGING_SLOT.
 */
export async function writeDirect(
  fh: FileHandle,
  chunks: readonly Buffer[],
  position: number,
): Promise<void> {
  const length = chunks.reduce((n, c) => n + c.length, 0);
  if (position % DIRECT_ALIGN !== 0 || length % DIRECT_ALIGN !== 0 || length > STAGING_SLOT) {
    throw new Error(`unaligned direct write: ${length} bytes at ${position}`);
  }
  pool ??= new StagingPool(STAGING_SLOTS, STAGING_SLOT);
  const slot = await pool.acquire();
  try {
    let copied = 0;
    for (const c of chunks) copied += c.copy(slot, copied);
    let done = 0;
    while (done < length) {
      const { bytesWritten } = await fh.write(slot, done, length - done, position + done);
      // A short write that ends off a block boundary cannot be continued with O_DIRECT.
      if (bytesWritten === 0 || bytesWritten % DIRECT_ALIGN !== 0) {
        throw new Error(`short direct write (${bytesWritten} of ${length - done} bytes)`);
      }
      done += bytesWritten;
    }
  } finally {
    pool.release(slot);
  }
}

/**
 * Reads up to `length` bytes at `position` (any offset) into `buf` through
 * `fh` (opened by openDirect for reading): whole blocks around the range go
 * into a staging slot, the asked-for part is copied out. Resolves with the
 * bytes copied (fewer at the end of the file).
 */
export async function readDirect(
  fh: FileHandle,
  buf: Buffer,
  length: number,
  position: number,
): Promise<number> {
  pool ??= new StagingPool(STAGING_SLOTS, STAGING_SLOT);
  const slot = await pool.acquire();
  try {
    let done = 0;
    while (done < length) {
      const at = position + done;
      const start = alignDown(at);
      const span = Math.min(STAGING_SLOT, alignUp(position + length) - start);
      const { bytesRead } = await fh.read(slot, 0, span, start);
      const n = Math.min(bytesRead - (at - start), length - done);
      if (n <= 0) break;
      slot.copy(buf, done, at - start, at - start + n);
      done += n;
      if (bytesRead < span) break;
    }
    return done;
  } finally {
    pool.release(slot);
  }
}
