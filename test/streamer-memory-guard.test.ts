/**
 * The streamer's memory guard (src/streamer/memory-guard.ts): a full
 * collection only past SLACK above the level after the last one, checked
 * every CHECK_EVERY upstream bytes, never twice within MIN_INTERVAL_MS; and
 * the real guard can run V8's collector in this Node.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  CHECK_EVERY,
  FEW_STREAMS,
  HEAP_GROWING_PERCENT,
  MemoryGuard,
  MIN_INTERVAL_MS,
  SLACK,
} from '../src/streamer/memory-guard.ts';

const MiB = 1 << 20;

test('collects only past SLACK above the last level, at CHECK_EVERY bytes, at most once per MIN_INTERVAL_MS', () => {
  let now = 10_000;
  let buffers = 20 * MiB;
  let collected = 0;
  const guard = new MemoryGuard(
    () => {
      collected++;
      buffers = 25 * MiB; // what a collection leaves
    },
    () => now,
    () => buffers,
  );
  // Below the slack: checked, nothing collected.
  buffers = 20 * MiB + SLACK - 1;
  guard.received(CHECK_EVERY);
  assert.equal(collected, 0);
  // Past the slack but fewer than CHECK_EVERY bytes since the last check: not even checked.
  buffers = 20 * MiB + SLACK + MiB;
  guard.received(CHECK_EVERY - 1);
  assert.equal(collected, 0);
  guard.received(1);
  assert.equal(collected, 1);
  const collectedAt = now;
  // The new level is what the collection left: the next one needs SLACK above 25 MiB.
  now = collectedAt + MIN_INTERVAL_MS;
  buffers = 25 * MiB + SLACK - 1;
  guard.received(CHECK_EVERY);
  assert.equal(collected, 1);
  // Past it, but too soon after the last collection; then late enough.
  buffers = 25 * MiB + SLACK + MiB;
  now = collectedAt + MIN_INTERVAL_MS - 1;
  guard.received(CHECK_EVERY);
  assert.equal(collected, 1);
  now = collectedAt + MIN_INTERVAL_MS;
  guard.received(CHECK_EVERY);
  assert.equal(collected, 2);
  assert.equal(guard.runs, 2);
});

test("relaxes V8's heap growth for at most FEW_STREAMS flights, restores V8's default past them, and says so only on a change", () => {
  const set: number[] = [];
  const guard = new MemoryGuard(
    () => {},
    () => 0,
    () => 0,
    (p) => set.push(p),
  );
  assert.deepEqual(set, [HEAP_GROWING_PERCENT], 'relaxed from the start (no flight)');
  for (let n = 1; n <= FEW_STREAMS; n++) guard.streams(n);
  guard.streams(FEW_STREAMS + 1);
  guard.streams(FEW_STREAMS + 50);
  guard.streams(FEW_STREAMS);
  guard.streams(0);
  assert.deepEqual(set, [HEAP_GROWING_PERCENT, 0, HEAP_GROWING_PERCENT]);
  // Without a collector (V8 refused --expose-gc) nothing bounds the garbage: V8's default stays.
  const untouched: number[] = [];
  new MemoryGuard(
    null,
    () => 0,
    () => 0,
    (p) => untouched.push(p),
  ).streams(1);
  assert.deepEqual(untouched, []);
});

test('the real guard is enabled and frees unreferenced Buffers', () => {
  const guard = new MemoryGuard();
  assert.equal(guard.enabled, true, 'V8 refused --expose-gc at run time');
  const before = process.memoryUsage().arrayBuffers;
  // 64 MiB of Buffers, then dropped: garbage until a full collection.
  let keep: Buffer[] = Array.from({ length: 64 }, () => Buffer.alloc(MiB, 1));
  keep = [];
  assert.equal(keep.length, 0);
  const held = process.memoryUsage().arrayBuffers;
  assert.ok(held - before >= 48 * MiB, `allocated: ${(held - before) / MiB} MiB`);
  for (let n = 0; n < CHECK_EVERY; n += MiB) guard.received(MiB);
  assert.equal(guard.runs, 1);
  const after = process.memoryUsage().arrayBuffers;
  assert.ok(held - after >= 48 * MiB, `freed only ${(held - after) / MiB} MiB`);
});
