/**
 * An external merge sort, so that a sync holds a bounded part of its plan in
 * memory however many packages the repository has. Records are added in any
 * order as JSON lines; up to `runChars` characters of them are kept in
 * memory, then sorted by key and written to a run file in the spool's
 * directory. Reading merges the runs (a binary heap over one line of each)
 * and yields the records sorted by key, stably (equal keys in the order they
 * were added); a read of several runs also writes the merged result, which
 * then replaces them, so the next read is one sequential pass. More than
 * FAN_IN runs are first merged FAN_IN at a time, so that a read holds at most
 * FAN_IN runs' read buffers however many records there are.
 */
import { createReadStream } from 'node:fs';
import { type FileHandle, open, rm } from 'node:fs/promises';
import { detach } from './detach.ts';
import { splitLines } from './lines.ts';

/** Characters of records a spool keeps in memory before it writes a run (default). */
export const RUN_CHARS = 1 << 20;
/** Runs merged at once: more are merged FAN_IN at a time first, so a read holds FAN_IN of them. */
export const FAN_IN = 16;
const WRITE_CHARS = 1 << 16;
const READ_BYTES = 1 << 14;

export interface SpoolOptions<T> {
  /** The sort key of a record (compared as JavaScript strings). */
  key: (record: T) => string;
  /** Characters of JSON held in memory before a run is written. */
  runChars?: number | undefined;
}

interface Line {
  key: string;
  line: string;
}

const byKey = (a: Line, b: Line) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0);

export class Spool<T> {
  readonly #file: string;
  readonly #key: (record: T) => string;
  readonly #runChars: number;
  #buffer: Line[] = [];
  #chars = 0;
  #runs: string[] = [];
  #made = 0;
  #count = 0;

  /** `file`: the name prefix of its run files (in a directory the caller removes). */
  constructor(file: string, opts: SpoolOptions<T>) {
    this.#file = file;
    this.#key = opts.key;
    this.#runChars = opts.runChars ?? RUN_CHARS;
  }

  /** Records added so far. */
  get count(): number {
    return this.#count;
  }

  /** Run files on disk (for tests: whether the spool spilled). */
  get runs(): number {
    return this.#runs.length;
  }

  async add(record: T): Promise<void> {
    const line = JSON.stringify(record);
    // A key cut from a parser's input chunk would keep the chunk alive while it sits here.
    this.#buffer.push({ key: detach(this.#key(record)), line });
    this.#chars += line.length;
    this.#count++;
    if (this.#chars >= this.#runChars) await this.#spill();
  }

  /** Every record, sorted by key (stable). Records added after the read began are not included. */
  async *sorted(): AsyncGenerator<T> {
    if (this.#runs.length === 0) {
      this.#buffer.sort(byKey);
      const lines = this.#buffer.slice();
      for (const l of lines) yield JSON.parse(l.line) as T;
      return;
    }
    if (this.#buffer.length > 0) await this.#spill();
    while (this.#runs.length > FAN_IN) for await (const _ of this.#merge(FAN_IN));
    if (this.#runs.length === 1) {
      for await (const line of readLines(this.#runs[0]!)) yield JSON.parse(line) as T;
      return;
    }
    yield* this.#merge();
  }

  /** Removes the run files (the caller removes the directory too). */
  async discard(): Promise<void> {
    const runs = this.#runs;
    this.#runs = [];
    this.#buffer = [];
    this.#chars = 0;
    await Promise.all(runs.map((r) => rm(r, { force: true })));
  }

  #nextRun(): string {
    return `${this.#file}.${this.#made++}`;
  }

  async #spill(): Promise<void> {
    const lines = this.#buffer;
    this.#buffer = [];
    this.#chars = 0;
    lines.sort(byKey);
    const file = this.#nextRun();
    const out = new LineWriter(await open(file, 'w'));
    try {
      for (const l of lines) await out.write(l.line);
    } finally {
      await out.close();
    }
    this.#runs.push(file);
  }

  /** Merges the first `n` runs into one new run while yielding; it replaces them once complete. */
  async *#merge(n = this.#runs.length): AsyncGenerator<T> {
    const runs = this.#runs.slice(0, n);
    const heads: Array<{ run: number; key: string; line: string; record: T; rest: AsyncGenerator<string> }> =
      [];
    const heap = new Heap<(typeof heads)[number]>((a, b) =>
      a.key < b.key ? true : a.key > b.key ? false : a.run < b.run,
    );
    const advance = async (run: number, rest: AsyncGenerator<string>) => {
      const next = await rest.next();
      if (next.done) return;
      const record = JSON.parse(next.value) as T;
      heap.push({ run, key: this.#key(record), line: next.value, record, rest });
    };
    const readers = runs.map((r) => readLines(r));
    const merged = this.#nextRun();
    const out = new LineWriter(await open(merged, 'w'));
    let complete = false;
    try {
      for (const [i, r] of readers.entries()) await advance(i, r);
      for (let top = heap.pop(); top; top = heap.pop()) {
        await out.write(top.line);
        yield top.record;
        await advance(top.run, top.rest);
      }
      complete = true;
    } finally {
      await out.close();
      await Promise.all(readers.map((r) => r.return(undefined)));
      if (complete) {
        // Runs written while the merge went on (records added meanwhile) stay after it.
        this.#runs = [merged, ...this.#runs.slice(runs.length)];
        await Promise.all(runs.map((r) => rm(r, { force: true })));
      } else await rm(merged, { force: true });
    }
  }
}

/** The lines of a file (without their "\n"), READ_BYTES at a time. */
function readLines(file: string): AsyncGenerator<string> {
  return splitLines(createReadStream(file, { highWaterMark: READ_BYTES }) as AsyncIterable<Buffer>);
}

/** Buffered line writes to a file handle. */
class LineWriter {
  #pending: string[] = [];
  #chars = 0;
  constructor(private readonly fh: FileHandle) {}

  async write(line: string): Promise<void> {
    this.#pending.push(line);
    this.#chars += line.length + 1;
    if (this.#chars >= WRITE_CHARS) await this.flush();
  }

  async flush(): Promise<void> {
    if (this.#pending.length === 0) return;
    const text = `${this.#pending.join('\n')}\n`;
    this.#pending = [];
    this.#chars = 0;
    await this.fh.write(text);
  }

  async close(): Promise<void> {
    try {
      await this.flush();
    } finally {
      await this.fh.close();
    }
  }
}

/** A binary min-heap under `before(a, b)` (a comes out first). */
class Heap<T> {
  readonly #items: T[] = [];
  constructor(private readonly before: (a: T, b: T) => boolean) {}

  push(item: T): void {
    const a = this.#items;
    a.push(item);
    let i = a.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!this.before(a[i]!, a[parent]!)) break;
      [a[i], a[parent]] = [a[parent]!, a[i]!];
      i = parent;
    }
  }

  pop(): T | undefined {
    const a = this.#items;
    const top = a[0];
    const last = a.pop();
    if (a.length > 0 && last !== undefined) {
      a[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < a.length && this.before(a[l]!, a[m]!)) m = l;
        if (r < a.length && this.before(a[r]!, a[m]!)) m = r;
        if (m === i) break;
        [a[i], a[m]] = [a[m]!, a[i]!];
        i = m;
      }
    }
    return top;
  }
}
