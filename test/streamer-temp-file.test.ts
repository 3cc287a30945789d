/**
 * The flight's temp-file writer on its own (src/streamer/temp-file.ts): a
 * body from a stream, a real file in a temp dir, no socket. Writes are
 * batched and overlap (at most WRITE_PARALLEL), upstream pauses while the
 * write budget is used up, the file is fdatasync'ed in the background only
 * when it is to be saved, O_DIRECT is chosen by size and given up while
 * clients share reads, and a body longer than expected fails.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import type { FileHandle } from 'node:fs/promises';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, test } from 'node:test';
import { ChecksumMismatch } from '../src/errors.ts';
import { silentLogger } from '../src/log.ts';
import { Counter } from '../src/metrics.ts';
import { DIRECT_ALIGN, openDirect } from '../src/storage/direct-io.ts';
import {
  SYNC_EVERY,
  type TempFileOptions,
  TempFileWriter,
  WRITE_BATCH,
  WRITE_PARALLEL,
} from '../src/streamer/temp-file.ts';
import { WriteBudget } from '../src/streamer/write-budget.ts';

const MiB = 1 << 20;
const work = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-tempfile-'));
after(() => rm(work, { recursive: true, force: true }));

/** A body of `chunks`, all buffered before anyone reads it (the way a fast upstream delivers). */
function bodyOf(chunks: Buffer[]): Readable {
  const body = new Readable({ read() {} });
  for (const c of chunks) body.push(c);
  body.push(null);
  return body;
}

/** `n` chunks of `size` bytes, each of its own byte value. */
function chunksOf(n: number, size: number): Buffer[] {
  return Array.from({ length: n }, (_, i) => Buffer.alloc(size, i % 251));
}

function writer(over: Partial<TempFileOptions> = {}) {
  const received: number[] = [];
  let notified = 0;
  const w = new TempFileWriter({
    name: '/storage/file/t.bin',
    settings: { workingDir: work, saveToStorage: true },
    budget: new WriteBudget(),
    clock: Date.now,
    bytesWritten: new Counter('test_temp_file_bytes_total', 'test'),
    log: silentLogger,
    onChunk: (chunk, from) => {
      assert.equal(
        from,
        received.reduce((a, b) => a + b, 0),
        'chunks are told in order',
      );
      received.push(chunk.length);
    },
    onWritten: () => notified++,
    sharesReads: () => false,
    ...over,
  });
  return { w, received, notified: () => notified };
}

/** Counts the writes to `fh` and how many ran at once. */
function watchWrites(fh: FileHandle): { writes: number[]; maxAtOnce: () => number } {
  const writes: number[] = [];
  let running = 0;
  let max = 0;
  const real = fh.writev.bind(fh);
  fh.writev = (async (buffers: Buffer[], position?: number) => {
    writes.push(buffers.reduce((n, b) => n + b.length, 0));
    running++;
    max = Math.max(max, running);
    try {
      return await real(buffers, position);
    } finally {
      running--;
    }
  }) as typeof fh.writev;
  return { writes, maxAtOnce: () => max };
}

test('a fast body is written in batches of at least WRITE_BATCH, up to WRITE_PARALLEL at once, in order', async () => {
  const { w, received, notified } = writer();
  await w.open();
  const watch = watchWrites(w.handle!);
  const chunks = chunksOf(256, 16 * 1024); // 4 MiB in 16 KiB chunks
  await w.write(bodyOf(chunks), 4 * MiB);
  assert.equal(received.length, 256);
  assert.equal(w.received, 4 * MiB);
  assert.equal(w.written, 4 * MiB);
  assert.deepEqual(w.queue, [], 'nothing stays queued once written');
  assert.ok(watch.writes.length < 64, `${watch.writes.length} writes for 256 chunks: not batched`);
  // Only the first write (nothing else running) and the last (the end) may be small.
  for (const n of watch.writes.slice(1, -1)) assert.ok(n >= WRITE_BATCH, `a batch of ${n} bytes`);
  assert.ok(watch.maxAtOnce() > 1, 'writes overlap');
  assert.ok(watch.maxAtOnce() <= WRITE_PARALLEL, `${watch.maxAtOnce()} writes at once`);
  assert.ok(notified() > 0 && notified() <= watch.writes.length);
  const onFile = await readFile(w.path!);
  assert.equal(sha256(onFile), sha256(Buffer.concat(chunks)));
  await w.stop();
  await w.remove();
  w.closeHandles();
});

test('upstream is paused while the write budget is used up, and resumed', async () => {
  const { w } = writer();
  await w.open();
  const body = bodyOf(chunksOf(24, MiB)); // three times a flight's FLIGHT_MAX
  await w.write(body, 24 * MiB);
  assert.ok(w.pauses > 0, 'the body was never paused');
  assert.equal(w.written, 24 * MiB);
  await w.stop();
  await w.remove();
  w.closeHandles();
});

test('the file is fdatasynced in the background every SYNC_EVERY bytes when it is to be saved, never otherwise', async () => {
  const chunk = Buffer.alloc(MiB, 7);
  const n = SYNC_EVERY / MiB + 2;
  for (const saveToStorage of [true, false]) {
    const budget = new WriteBudget();
    const { w } = writer({ settings: { workingDir: work, saveToStorage }, budget });
    await w.open();
    await w.write(bodyOf(Array.from({ length: n }, () => chunk)), n * MiB);
    const target = path.join(work, `saved-${saveToStorage}.bin`);
    await w.moveTo(target); // waits for a background fdatasync under way
    if (saveToStorage) assert.ok(w.synced >= SYNC_EVERY, `synced up to ${w.synced}`);
    else assert.equal(w.synced, 0);
    assert.ok(budget.takeSyncSlot(), 'the sync slot was given back');
    assert.equal((await readFile(target)).length, n * MiB);
    assert.equal(w.path, undefined, 'a moved file is not removed');
    await w.stop();
    await w.remove();
    w.closeHandles();
    await rm(target);
  }
});

test('a large file goes O_DIRECT by whole blocks (the tail buffered), and all buffered while clients share reads', async () => {
  const probe = path.join(work, 'probe');
  await writeFile(probe, '');
  const fh = await openDirect(probe);
  // The test's working dir must take O_DIRECT (ext4, xfs; not tmpfs): otherwise this test would prove nothing.
  assert.ok(fh, `no O_DIRECT in ${work}: run the tests with TMPDIR on a disk file system`);
  await fh.close();
  const size = 3 * MiB + 100;
  for (const shares of [false, true]) {
    const bytesWritten = new Counter('test_temp_file_bytes_total', 'test');
    const { w } = writer({
      settings: { workingDir: work, saveToStorage: false, directIoMinSize: MiB },
      bytesWritten,
      sharesReads: () => shares,
    });
    await w.open();
    await w.openDirect(size);
    const body = randomBytes(size);
    await w.write(bodyOf([body]), size);
    await w.closeDirect();
    const direct = bytesWritten.get({ io: 'direct' });
    const buffered = bytesWritten.get({ io: 'buffered' });
    assert.equal(direct + buffered, size, 'every byte written once');
    if (shares) assert.equal(direct, 0);
    else {
      assert.equal(direct, size - (size % DIRECT_ALIGN));
      assert.equal(buffered, size % DIRECT_ALIGN);
    }
    assert.equal(sha256(await readFile(w.path!)), sha256(body));
    await w.stop();
    await w.remove();
    w.closeHandles();
  }
  // Below the minimum size: no direct handle at all.
  const { w } = writer({ settings: { workingDir: work, saveToStorage: false, directIoMinSize: MiB } });
  await w.open();
  await w.openDirect(MiB - 1);
  assert.equal(w.directRead, undefined);
  await w.stop();
  await w.remove();
  w.closeHandles();
});

test('a body longer than expected fails with a checksum mismatch, releases its budget and is removed', async () => {
  const budget = new WriteBudget(1);
  const { w } = writer({ budget });
  await w.open();
  const body = bodyOf([Buffer.alloc(600), Buffer.alloc(600)]);
  await assert.rejects(w.write(body, 1000), (err) => err instanceof ChecksumMismatch);
  assert.ok(body.destroyed, 'the body is destroyed');
  assert.ok(!budget.full(0) && !budget.full(128 * 1024), 'the budget holds nothing of it');
  const temp = w.path!;
  await w.stop();
  await w.remove();
  w.closeHandles();
  assert.ok(!(await readdir(path.dirname(temp))).includes(path.basename(temp)), 'temp file removed');
});

function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}
