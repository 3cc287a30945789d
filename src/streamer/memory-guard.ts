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
 *
 * With few streams at once the streamer is short of CPU, not memory, so the
 * guard then relaxes V8's own trigger (HEAP_GROWING_PERCENT): V8 counts the
 * external memory allocated since its last full collection toward the old
 * generation's limit, and for the streamer's small heap that limit is a few
 * tens of MiB. Upstream chunks waiting in a write queue are promoted, so a
 * large miss ran a full collection every few tens of MB, and their marking
 * took about as much CPU as hashing the bytes; with the relaxed trigger a
 * large miss runs one or two per GiB and streams faster (bench/RESULTS.md,
 * miss). Past FEW_STREAMS flights V8's default is back (it takes effect at
 * the next full collection): with many streams at once memory is what runs
 * short, and the relaxed trigger raised their peak (bench/RESULTS.md, memory).
 */
import v8 from 'node:v8';
import { runInNewContext } from 'node:vm';

export const CHECK_EVERY = 16 << 20;
export const SLACK = 32 << 20;
export const MIN_INTERVAL_MS = 200;
/** With at most FEW_STREAMS flights, V8's heap may grow this much past its live size before V8 collects. */
export const HEAP_GROWING_PERCENT = 300;
export const FEW_STREAMS = 4;

type Collect = () => void;
/** Sets V8's heap growing percent (0: V8's own, adaptive factor). */
type SetGrowing = (percent: number) => void;

export class MemoryGuard {
  private sinceCheck = 0;
  private level: number;
  private lastRun = 0;
  /** Full collections run so far (tests read it). */
  runs = 0;
  private growing: number | undefined;

  constructor(
    /** null: V8 refused --expose-gc (the guard then does nothing). */
    private readonly collect: Collect | null = exposeGc(),
    private readonly clock: () => number = Date.now,
    private readonly arrayBuffers: () => number = () => process.memoryUsage().arrayBuffers,
    private readonly setGrowing: SetGrowing = (p) => v8.setFlagsFromString(`--heap-growing-percent=${p}`),
  ) {
    this.level = collect ? this.arrayBuffers() : 0;
    this.streams(0);
  }

  /** `n` flights are running now: relaxes V8's trigger for few, restores V8's default for more. */
  streams(n: number): void {
    if (!this.collect) return;
    const growing = n <= FEW_STREAMS ? HEAP_GROWING_PERCENT : 0;
    if (growing === this.growing) return;
    this.growing = growing;
    this.setGrowing(growing);
  }

  get enabled(): boolean {
    return this.collect !== null;
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

function exposeGc(): Collect | null {
  try {
    v8.setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as unknown;
    return typeof gc === 'function' ? () => (gc as () => void)() : null;
  } catch {
    return null;
  }
}
