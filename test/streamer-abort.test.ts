/** A client that disconnects mid-stream does not cancel the save; an orphaned save is bounded in time. */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import { test } from 'node:test';
import {
  addRepo,
  assertHealthy,
  bytes,
  eventually,
  exists,
  seedUnit,
  serveSlowly,
  settled,
  sha256,
  startOrigin,
  startStreamer,
  tempFiles,
  urlFor,
} from './helpers/streamer.ts';

/** GETs `url`, and destroys the connection as soon as the first body bytes arrive. */
function abortAfterFirstChunk(url: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      res.once('data', (c: Buffer) => {
        req.destroy();
        resolve(c.length);
      });
    });
    req.on('error', (err) => {
      if (!req.destroyed) reject(err);
    });
  });
}

test('client aborts mid-stream: the save completes, the unit is downloaded', {
  timeout: 60_000,
}, async () => {
  const fx = await startStreamer('abort');
  const body = bytes(2 * 1024 * 1024, 30);
  const origin = await startOrigin({ '/slow.rpm': serveSlowly(body, { chunk: 128 * 1024, intervalMs: 40 }) });
  await addRepo(fx.db, 'imp-abort');
  const { unitId, paths } = await seedUnit(fx, [
    { name: 'slow.rpm', body, sources: [{ importer: 'imp-abort', url: `${origin.base}/slow.rpm` }] },
  ]);
  const got = await abortAfterFirstChunk(urlFor(fx.base, paths[0]!));
  assert.ok(got < body.length);
  assert.equal(fx.streamer.metrics.activeFlights.get(), 1, 'the fetch goes on without clients');
  await eventually(
    async () => (await fx.db.units.findOne({ _id: unitId }))?.downloaded === true,
    'unit downloaded',
  );
  assert.equal(sha256(await readFile(paths[0]!)), sha256(body));
  await settled(fx);
  assert.deepEqual(await tempFiles(fx), []);
  assert.equal(origin.getsOf('/slow.rpm'), 1);
  await eventually(
    () => fx.streamer.metrics.requests.get({ outcome: 'client_gone' }) === 1,
    'the request is counted as client_gone',
  );
});

test('an orphaned save is abandoned after orphan_save_timeout, leaving no temp file', {
  timeout: 60_000,
}, async () => {
  const fx = await startStreamer('abort-orphan', { orphan_save_timeout: '300ms' });
  const body = bytes(2 * 1024 * 1024, 31);
  // Takes about 8 s: far longer than the orphan timeout.
  const origin = await startOrigin({
    '/slower.rpm': serveSlowly(body, { chunk: 16 * 1024, intervalMs: 60 }),
  });
  await addRepo(fx.db, 'imp-orphan');
  const { unitId, paths } = await seedUnit(fx, [
    { name: 'slower.rpm', body, sources: [{ importer: 'imp-orphan', url: `${origin.base}/slower.rpm` }] },
  ]);
  await abortAfterFirstChunk(urlFor(fx.base, paths[0]!));
  await settled(fx);
  assert.equal(await exists(paths[0]!), false);
  assert.deepEqual(await tempFiles(fx), []);
  assert.equal((await fx.db.units.findOne({ _id: unitId }))?.downloaded, false);
  await assertHealthy(fx);
});
