/**
 * Keeps a sync's memory near its live size while the plan streams through it.
 *
 * A sync makes garbage at a steady rate (parsed metadata, JSON lines of the
 * plan, documents for the database), and what is alive across an await of
 * disk or database I/O is promoted to V8's old generation. On a machine with
 * a few GiB of memory V8 lets that generation grow to about four times its
 * live size before it collects it (its adaptive heap growing factor), and a
 * sync's peak followed that factor, not the size of its plan. During a sync the
 * guard sets V8's growing factor to HEAP_GROWING_PERCENT (V8 then marks
 * incrementally, as usual, only sooner), and puts V8's own factor back at the
 * end (`--heap-growing-percent=0`).
 *
 * The Buffers of file reads (a 50 MB Packages hashed, spooled plan files) and
 * of database replies die young, but their memory is freed only when a
 * collection finds them, and V8 runs one for the young generation only once
 * it has filled with JavaScript objects: tens of MiB of them piled up while a
 * sync hashed its metadata. Every INTERVAL_MS the guard reads the memory of
 * ArrayBuffers and, BUFFER_SLACK past its level when last found low, runs a
 * young-generation collection (about a millisecond).
 *
 * A new growing factor counts from V8's next full collection on, and a sync
 * starts with a heap far below V8's first limit: the guard runs one full
 * collection at its start, or the factor would take effect only once the old
 * generation had grown to four times its live size anyway.
 *
 * V8's young generation grows, doubling, up to 32 MiB while the sync
 * allocates, and stays at that size: twice the live heap of a sync. During a
 * sync the guard stops that growth (SEMI_SPACE_GROWTH 1: the young
 * generation keeps the size it has, set at start-up only by
 * --max-semi-space-size); the short-lived objects of a sync die in a young
 * collection whatever its size.
 *
 * V8 runs collections on request only with --expose-gc: the guard sets the
 * flag at run time and takes `gc` from a new context, as the streamer's
 * memory guard does (src/streamer/memory-guard.ts). Where that is refused,
 * the guard only sets the growing factors.
 */
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';

export const HEAP_GROWING_PERCENT = 25;
export const SEMI_SPACE_GROWTH = 1;
/** V8's own semi-space growth factor (flag-definitions.h), put back at the end. */
const V8_SEMI_SPACE_GROWTH = 2;
export const INTERVAL_MS = 50;
export const BUFFER_SLACK = 8 << 20;
export const CHECK_BYTES = 4 << 20;

export class HeapGuard {
  readonly #collect: (() => void) | null;
  readonly #timer: NodeJS.Timeout | undefined;
  /** Undefined right after a collection: V8 frees the Buffers' memory in the background. */
  #buffers: number | undefined;
  #bytes = 0;
  /** Young-generation collections the guard ran (logs read it). */
  runs = 0;

  constructor(gc: Collectors | null = collectors()) {
    v8.setFlagsFromString(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
    v8.setFlagsFromString(`--semi-space-growth-factor=${SEMI_SPACE_GROWTH}`);
    this.#collect = gc?.young ?? null;
    if (!gc) return;
    gc.full();
    this.#timer = setInterval(() => this.check(), INTERVAL_MS);
    this.#timer.unref();
  }

  /**
   * Counts bytes read or downloaded in Buffers of their own; every
   * CHECK_BYTES of them the guard checks at once, as its timer would: a
   * download from a nearby mirror makes more than BUFFER_SLACK of them
   * between two ticks.
   */
  bytes(n: number): void {
    this.#bytes += n;
    if (this.#bytes < CHECK_BYTES) return;
    this.#bytes = 0;
    this.check();
  }

  check(): void {
    const buffers = process.memoryUsage().arrayBuffers;
    if (this.#buffers === undefined || buffers < this.#buffers) this.#buffers = buffers;
    else if (this.#collect && buffers >= this.#buffers + BUFFER_SLACK) {
      this.#collect();
      this.runs++;
      this.#buffers = undefined;
    }
  }

  /** Stops the checks and gives V8 its own growing factor back. */
  stop(): void {
    clearInterval(this.#timer);
    v8.setFlagsFromString('--heap-growing-percent=0');
    v8.setFlagsFromString(`--semi-space-growth-factor=${V8_SEMI_SPACE_GROWTH}`);
  }
}

export interface Collectors {
  young: () => void;
  full: () => void;
}

function collectors(): Collectors | null {
  try {
    v8.setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as unknown;
    if (typeof gc !== 'function') return null;
    const run = gc as (o?: object) => void;
    return { young: () => run({ type: 'minor' }), full: () => run() };
  } catch {
    return null;
  }
}
