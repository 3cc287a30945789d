/** Single-flight: concurrent requests share one upstream fetch; each client reads at its own pace. */
import assert from 'node:assert/strict';
import type http from 'node:http';
import { test } from 'node:test';
import {
  addRepo,
  bytes,
  eventually,
  fetchRaw,
  seedUnit,
  serve,
  serveSlowly,
  settled,
  sha256,
  startOrigin,
  startStreamer,
  tempFiles,
  urlFor,
} from './helpers/streamer.ts';

test('50 concurrent first requests make exactly one upstream GET and all get the right bytes', async () => {
  const fx = await startStreamer('sf-50');
  const body = bytes(1024 * 1024 + 3, 10);
  const origin = await startOrigin({
    '/big.iso': serveSlowly(body, { headerDelayMs: 400, chunk: 64 * 1024, intervalMs: 15 }),
  });
  await addRepo(fx.db, 'imp-sf');
  const { unitId, paths } = await seedUnit(fx, [
    { name: 'big.iso', body, sources: [{ importer: 'imp-sf', url: `${origin.base}/big.iso` }] },
  ]);
  const url = urlFor(fx.base, paths[0]!);
  const results = await Promise.all(Array.from({ length: 50 }, () => fetchRaw(url)));
  assert.equal(origin.getsOf('/big.iso'), 1);
  const want = sha256(body);
  for (const r of results) {
    assert.equal(r.status, 200);
    assert.ok(r.complete);
    assert.equal(sha256(r.body), want);
  }
  await eventually(() => fx.streamer.metrics.joins.get() === 49, '49 requests joined the first fetch');
  await settled(fx);
  assert.equal((await fx.db.units.findOne({ _id: unitId }))?.downloaded, true);
  assert.deepEqual(await tempFiles(fx), []);
});

test('a slow client does not hold back a fast client on the same cold file', async () => {
  const fx = await startStreamer('sf-slow');
  const body = bytes(48 * 1024 * 1024, 11);
  const origin = await startOrigin({ '/huge.img': serve(body) });
  await addRepo(fx.db, 'imp-slow');
  const { paths } = await seedUnit(fx, [
    { name: 'huge.img', body, sources: [{ importer: 'imp-slow', url: `${origin.base}/huge.img` }] },
  ]);
  const url = urlFor(fx.base, paths[0]!);

  // The slow client stops reading after its first chunk and only resumes once the fast one is done.
  let slowReceived = 0;
  let slowRes: http.IncomingMessage | undefined;
  let firstChunk!: () => void;
  const gotFirstChunk = new Promise<void>((resolve) => {
    firstChunk = resolve;
  });
  const slow = fetchRaw(url, {
    onResponse: (res) => {
      slowRes = res;
      res.on('data', (c: Buffer) => {
        slowReceived += c.length;
        if (slowReceived === c.length) {
          res.pause();
          firstChunk();
        }
      });
    },
  });
  await gotFirstChunk;
  const fast = await fetchRaw(url);
  const slowAtFastEnd = slowReceived;
  assert.equal(fast.status, 200);
  assert.ok(fast.complete);
  assert.equal(sha256(fast.body), sha256(body));
  assert.ok(
    slowAtFastEnd < body.length / 2,
    `slow client had ${slowAtFastEnd} bytes when the fast one finished`,
  );

  slowRes!.resume();
  const s = await slow;
  assert.ok(s.complete);
  assert.equal(sha256(s.body), sha256(body));
  assert.equal(origin.getsOf('/huge.img'), 1);
  await settled(fx);
  assert.deepEqual(await tempFiles(fx), []);
});
