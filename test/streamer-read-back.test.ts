/**
 * Read-back of a flight's temp file (src/streamer/read-back.ts) over a real
 * file, no socket: a lone client reads for itself; two or more share whole
 * blocks, read once and kept for the next readers (at most one per client
 * and SHARED_BLOCKS_MAX); a block not yet complete on file is not shared.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { type FileHandle, mkdtemp, open, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { Counter } from '../src/metrics.ts';
import { ReadBack, type ReadBackFile, SHARED_BLOCK } from '../src/streamer/read-back.ts';

const work = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-readback-'));
after(() => rm(work, { recursive: true, force: true }));
const content = randomBytes(4 * SHARED_BLOCK + 1000);

async function fileOf(bytes: Buffer): Promise<{ file: ReadBackFile & { written: number }; fh: FileHandle }> {
  const p = path.join(work, `f-${Math.random()}`);
  const fh = await open(p, 'w+');
  await fh.write(bytes, 0, bytes.length, 0);
  after(() => fh.close());
  return { file: { handle: fh, directRead: undefined, written: bytes.length, path: p }, fh };
}

test('a lone client reads for itself; no shared blocks', async () => {
  const { file } = await fileOf(content);
  const read = new Counter('test_read_bytes_total', 'test');
  const rb = new ReadBack(file, read, () => 1);
  assert.equal(rb.sharedBlock(0), undefined);
  const buf = Buffer.alloc(5000);
  assert.equal(await rb.read(buf, 5000, 123), 5000);
  assert.deepEqual(buf, content.subarray(123, 5123));
  assert.equal(read.get({ io: 'buffered' }), 5000);
});

test('clients that fell behind together share a block: one read for all of them', async () => {
  const { file } = await fileOf(content);
  const read = new Counter('test_read_bytes_total', 'test');
  const rb = new ReadBack(file, read, () => 3);
  const [a, b, c] = await Promise.all([
    rb.sharedBlock(10),
    rb.sharedBlock(SHARED_BLOCK - 1),
    rb.sharedBlock(500),
  ]);
  assert.equal(read.get({ io: 'buffered' }), SHARED_BLOCK, 'read once');
  assert.equal(a!.buf, b!.buf);
  assert.equal(a!.buf, c!.buf);
  assert.equal(a!.start, 0);
  assert.deepEqual(a!.buf, content.subarray(0, SHARED_BLOCK));
  const second = await rb.sharedBlock(SHARED_BLOCK + 5);
  assert.equal(second!.start, SHARED_BLOCK);
  assert.deepEqual(second!.buf, content.subarray(SHARED_BLOCK, 2 * SHARED_BLOCK));
});

test('a block not complete on file is not shared', async () => {
  const { file } = await fileOf(content);
  file.written = 2 * SHARED_BLOCK - 1;
  const rb = new ReadBack(file, new Counter('test_read_bytes_total', 'test'), () => 2);
  assert.ok(rb.sharedBlock(SHARED_BLOCK - 1));
  assert.equal(rb.sharedBlock(SHARED_BLOCK), undefined);
});

test('blocks are kept one per client at most: an evicted block is read again', async () => {
  const { file } = await fileOf(content);
  const read = new Counter('test_read_bytes_total', 'test');
  const rb = new ReadBack(file, read, () => 2);
  await rb.sharedBlock(0);
  await rb.sharedBlock(SHARED_BLOCK);
  await rb.sharedBlock(0);
  assert.equal(read.get({ io: 'buffered' }), 2 * SHARED_BLOCK, 'both blocks kept for two clients');
  await rb.sharedBlock(2 * SHARED_BLOCK);
  await rb.sharedBlock(0);
  assert.equal(read.get({ io: 'buffered' }), 4 * SHARED_BLOCK, 'block 0 was evicted by the third');
  rb.clear();
  await rb.sharedBlock(2 * SHARED_BLOCK);
  assert.equal(read.get({ io: 'buffered' }), 5 * SHARED_BLOCK, 'clear() drops every block');
});
