/**
 * Keeps the garbage of upstream bytes from piling up in the streamer.
 *
 * Every upstream chunk is a Buffer of its own. Those waiting in a write queue
 * (write-budget.ts) live long enough to be promoted to V8's old generation,
 * and V8 collects promoted Buffers only once external memory grew by 64 MiB
 * since the last full collection: with 100 streams at once that garbage was
 * a third of the streamer's peak RSS (bench/run.ts, memory). The guard counts
 * the upstream bytes; every CHECK_EVERY of them it compares the ArrayBuffer
 * total with its level after the last full collection and, SLACK past it,
 * runs one (never more often than MIN_INTERVAL_MS). A collection of the
 * streamer's small heap takes a few ms.
 *
 * V8 runs a full collection on request only with --expose-gc; the guard sets
 * the flag at run time and takes `gc` from a new context (as Jest's leak
 * detector does). Where that is refused, the guard does nothing.
 */
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';

export const CHECK_EVERY = 16 << 20;
export const SLACK = 32 << 20;
export const MIN_INTERVAL_MS = 200;

type Collect = () => void;

export class MemoryGuard {
  private sinceCheck = 0;
  private level: number;
  private lastRun = 0;
  /** Full collections run so far (tests read it). */
  runs = 0;

  constructor(
    private readonly collect: Collect | undefined = exposeGc(),
    private readonly clock: () => number = Date.now,
    private readonly arrayBuffers: () => number = () => process.memoryUsage().arrayBuffers,
  ) {
    this.level = collect ? this.arrayBuffers() : 0;
  }

  get enabled(): boolean {
    return this.collect !== undefined;
  }

  /** `n` more bytes came from upstream. */
  received(n: number): void {
    if (!this.collect) return;
    this.sinceCheck += n;
    if (this.sinceCheck < CHECK_EVERY) return;
    this.sinceCheck = 0;
    const now = this.clock();
    if (now - this.lastRun < MIN_INTERVAL_MS || this.arrayBuffers() < this.level + SLACK) return;
    this.lastRun = now;
    this.collect();
    this.runs++;
    this.level = this.arrayBuffers();
  }
}

function exposeGc(): Collect | undefined {
  try {
    v8.setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as unknown;
    return typeof gc === 'function' ? () => (gc as () => void)() : undefined;
  } catch {
    return undefined;
  }
}
