/**
 * Fan-out of upstream chunks to live clients (src/streamer/fan-out.ts), with
 * in-memory writables in place of responses: a client gets the queued bytes
 * from its position on joining, then each chunk once per event-loop turn in
 * one corked burst, never the held-back tail; a client whose socket fills up
 * leaves (and the others keep getting chunks); a closed one is dropped.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { setImmediate as turn } from 'node:timers/promises';
import { FanOut, LIVE_BUFFER, type LiveClient } from '../src/streamer/fan-out.ts';

/** A response that takes every write at once (fast) or never completes one (stuck). */
class Sink extends Writable {
  readonly got: Buffer[] = [];
  corks = 0;
  constructor(private readonly stuck = false) {
    super({ highWaterMark: LIVE_BUFFER });
  }
  override _write(chunk: Buffer, _enc: BufferEncoding, done: (err?: Error | null) => void): void {
    this.got.push(chunk);
    if (!this.stuck) done();
  }
  override cork(): void {
    this.corks++;
    super.cork();
  }
  bytes(): Buffer {
    return Buffer.concat(this.got);
  }
}

function client(res: Sink, pos = 0): LiveClient & { left: number; counted: number } {
  const c = {
    res,
    pos,
    left: 0,
    counted: 0,
    onBytes: (n: number) => {
      c.counted += n;
    },
    leave: () => {
      c.left++;
    },
  };
  return c;
}

/** Body bytes 0..n-1 as byte values. */
const body = Buffer.from(Array.from({ length: 4096 }, (_, i) => i % 256));

test('joining sends the queued bytes from the client position; chunks then go out once per turn, corked, up to the hold-back', async () => {
  let hold = 3000;
  const fan = new FanOut(() => hold);
  const res = new Sink();
  // Received 0..1000: 0..200 on file (the client has read them), 200..1000 still queued.
  const c = client(res, 200);
  assert.ok(fan.join(c, [body.subarray(200, 600), body.subarray(600, 1000)], 200, 1000));
  assert.equal(fan.size, 1);
  assert.equal(c.pos, 1000);
  fan.add(body.subarray(1000, 2000), 1000);
  fan.add(body.subarray(2000, 3500), 2000);
  assert.equal(c.pos, 1000, 'nothing is sent before the turn ends');
  await turn();
  assert.equal(res.corks, 1, 'one corked burst for both chunks');
  assert.equal(c.pos, 3000, 'the held-back tail is not sent');
  assert.equal(c.counted, 2800);
  assert.deepEqual(res.bytes(), body.subarray(200, 3000));
  hold = 4096;
  fan.end();
  assert.equal(c.left, 1, 'leaves once at the end');
  assert.equal(fan.size, 0);
});

test('a client that has not caught up with what was received cannot join', () => {
  const fan = new FanOut(() => 4095);
  const c = client(new Sink(), 0);
  assert.equal(fan.join(c, [], 1000, 1000), false, 'bytes 0..1000 are on file, not queued: read them first');
  assert.equal(fan.size, 0);
});

test('a client whose socket fills up leaves, and the other clients keep getting chunks', async () => {
  const big = Buffer.alloc(LIVE_BUFFER / 2, 1);
  const fan = new FanOut(() => Number.MAX_SAFE_INTEGER);
  const slow = client(new Sink(true));
  const fast = client(new Sink());
  assert.ok(fan.join(slow, [], 0, 0));
  assert.ok(fan.join(fast, [], 0, 0));
  for (let i = 0; i < 4; i++) fan.add(big, i * big.length);
  await turn();
  assert.equal(slow.left, 1, 'the slow client left');
  assert.ok(slow.pos < 4 * big.length, 'and did not get every chunk');
  assert.equal(fan.size, 1);
  assert.equal(fast.pos, 4 * big.length);
  fan.add(big, 4 * big.length);
  await turn();
  assert.equal(fast.pos, 5 * big.length, 'the fast client still gets chunks');
  assert.equal(slow.left, 1, 'leave is called once');
});

test('a client whose response was destroyed is dropped without leave(); drop() stops sending', async () => {
  const fan = new FanOut(() => Number.MAX_SAFE_INTEGER);
  const gone = client(new Sink());
  const dropped = client(new Sink());
  fan.join(gone, [], 0, 0);
  fan.join(dropped, [], 0, 0);
  (gone.res as Sink).destroy();
  fan.drop(dropped);
  fan.add(body, 0);
  await turn();
  assert.equal(fan.size, 0);
  assert.equal(gone.left + dropped.left, 0);
  assert.equal(dropped.pos, 0);
});
