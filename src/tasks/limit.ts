/** A counting semaphore: at most `size` holders at once, FIFO. */
export class Limiter {
  private active = 0;
  private readonly waiting: Array<() => void> = [];

  constructor(readonly size: number) {
    if (!Number.isInteger(size) || size < 1)
      throw new Error(`limiter size must be a positive integer, got ${size}`);
  }

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.active >= this.size) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.active++;
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.active--;
    }
  }
}

/** Runs `worker` over `items` with at most `concurrency` at once; resolves when all are done. */
export async function forEachConcurrent<T>(
  items: Iterable<T>,
  concurrency: number,
  worker: (item: T) => Promise<void>,
): Promise<void> {
  const it = items[Symbol.iterator]();
  const lanes = Array.from({ length: concurrency }, async () => {
    for (let r = it.next(); !r.done; r = it.next()) await worker(r.value);
  });
  await Promise.all(lanes);
}
