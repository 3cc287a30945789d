/** Streamer happy path: stream + save + verify, then serve from storage; HEAD; catalog misses; health and metrics. */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import { test } from 'node:test';
import {
  addRepo,
  bytes,
  eventually,
  exists,
  fetchRaw,
  seedUnit,
  serve,
  settled,
  sha256,
  startOrigin,
  startStreamer,
  tempFiles,
  urlFor,
} from './helpers/streamer.ts';

test('first request streams the upstream bytes and saves them; the second is served from storage', async () => {
  const fx = await startStreamer('serve');
  const body = bytes(3 * 1024 * 1024 + 17, 1);
  const origin = await startOrigin({
    '/pkg/a-1.0.rpm': serve(body, { etag: '"up1"', connection: 'x-hop', 'x-hop': '1' }),
  });
  await addRepo(fx.db, 'imp-serve');
  const { unitId, paths } = await seedUnit(fx, [
    { name: 'a-1.0.rpm', body, sources: [{ importer: 'imp-serve', url: `${origin.base}/pkg/a-1.0.rpm` }] },
  ]);
  const storagePath = paths[0]!;

  const first = await fetchRaw(urlFor(fx.base, storagePath));
  assert.equal(first.status, 200);
  assert.ok(first.complete);
  assert.equal(sha256(first.body), sha256(body));
  assert.equal(first.headers['content-length'], String(body.length));
  assert.equal(first.headers['cache-control'], 'public, max-age=86400, s-maxage=86400');
  assert.equal(first.headers.etag, '"up1"', 'end-to-end headers are forwarded');
  assert.equal(first.headers['x-hop'], undefined, 'headers named in Connection are not');
  assert.equal(origin.getsOf('/pkg/a-1.0.rpm'), 1);

  await settled(fx);
  assert.equal(sha256(await readFile(storagePath)), sha256(body), 'verified file in storage');
  assert.equal((await fx.db.units.findOne({ _id: unitId }))?.downloaded, true);
  assert.equal(await fx.db.deferred.countDocuments({ unit_id: unitId }), 0);
  assert.deepEqual(await tempFiles(fx), []);

  const second = await fetchRaw(urlFor(fx.base, storagePath));
  assert.equal(second.status, 200);
  assert.ok(second.complete);
  assert.equal(sha256(second.body), sha256(body));
  assert.equal(second.headers['cache-control'], 'public, max-age=86400, s-maxage=86400');
  assert.equal(origin.getsOf('/pkg/a-1.0.rpm'), 1, 'no new upstream GET');
  const { requests } = fx.streamer.metrics;
  await eventually(() => requests.get({ outcome: 'storage' }) === 1, 'one request served from storage');
  assert.equal(requests.get({ outcome: 'streamed' }), 1);
});

test('a miss sends the status and headers once upstream answered, before any body byte arrived', async () => {
  const fx = await startStreamer('early-headers');
  const body = bytes(256 * 1024, 7);
  // Upstream sends its headers, then holds the body until the client has the response headers.
  let releaseBody!: () => void;
  const clientHasHeaders = new Promise<void>((r) => {
    releaseBody = r;
  });
  const origin = await startOrigin({
    '/pkg/early.rpm': (_req, res) => {
      res.writeHead(200, { 'content-type': 'application/x-rpm', 'content-length': body.length });
      res.flushHeaders();
      void clientHasHeaders.then(() => res.end(body));
    },
  });
  await addRepo(fx.db, 'imp-early');
  const { paths } = await seedUnit(fx, [
    { name: 'early.rpm', body, sources: [{ importer: 'imp-early', url: `${origin.base}/pkg/early.rpm` }] },
  ]);
  const got = await new Promise<{ status: number; length: string | undefined; received: Buffer }>(
    (resolve, reject) => {
      const req = http.get(urlFor(fx.base, paths[0]!), (res) => {
        const status = res.statusCode ?? 0;
        const length = res.headers['content-length'];
        releaseBody();
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status, length, received: Buffer.concat(chunks) }));
        res.on('error', reject);
      });
      req.on('error', reject);
      // Without the early headers this request waits for a body upstream never sends: fail, not hang.
      req.setTimeout(10_000, () => req.destroy(new Error('no response headers before the body')));
    },
  );
  assert.equal(got.status, 200);
  assert.equal(got.length, String(body.length));
  assert.equal(sha256(got.received), sha256(body));
  await settled(fx);
});

test('a unit with another file still missing is saved but queued as a deferred download', async () => {
  const fx = await startStreamer('serve-partial');
  const one = bytes(1000, 2);
  const two = bytes(2000, 3);
  const origin = await startOrigin({ '/one': serve(one), '/two': serve(two) });
  await addRepo(fx.db, 'imp-partial');
  const { unitId, paths } = await seedUnit(fx, [
    { name: 'one.bin', body: one, sources: [{ importer: 'imp-partial', url: `${origin.base}/one` }] },
    { name: 'two.bin', body: two, sources: [{ importer: 'imp-partial', url: `${origin.base}/two` }] },
  ]);
  const r = await fetchRaw(urlFor(fx.base, paths[0]!));
  assert.equal(r.status, 200);
  assert.ok(r.body.equals(one));
  await settled(fx);
  assert.ok(await exists(paths[0]!));
  assert.equal((await fx.db.units.findOne({ _id: unitId }))?.downloaded, false);
  const queued = await fx.db.deferred.find({ unit_id: unitId }).toArray();
  assert.equal(queued.length, 1);
  assert.equal(queued[0]!.state, 'pending');
  assert.equal(queued[0]!.attempts, 0);

  // The second file completes the unit: downloaded, queue entry gone.
  const r2 = await fetchRaw(urlFor(fx.base, paths[1]!));
  assert.ok(r2.body.equals(two));
  await settled(fx);
  assert.equal((await fx.db.units.findOne({ _id: unitId }))?.downloaded, true);
  assert.equal(await fx.db.deferred.countDocuments({ unit_id: unitId }), 0);
});

test('HEAD is answered from the catalog without any upstream request or temp file', async () => {
  const fx = await startStreamer('serve-head');
  const body = bytes(4321, 4);
  const origin = await startOrigin({ '/h.rpm': serve(body) });
  await addRepo(fx.db, 'imp-head');
  const { paths } = await seedUnit(fx, [
    { name: 'h.rpm', body, sources: [{ importer: 'imp-head', url: `${origin.base}/h.rpm` }] },
  ]);
  const r = await fetchRaw(urlFor(fx.base, paths[0]!), { method: 'HEAD' });
  assert.equal(r.status, 200);
  assert.equal(r.headers['content-length'], '4321');
  assert.equal(r.headers['content-type'], 'application/x-rpm');
  assert.equal(r.body.length, 0);
  assert.equal(origin.gets.size, 0);
  assert.deepEqual(await tempFiles(fx), []);
  assert.equal(await exists(paths[0]!), false);
});

test('unknown paths are 404 with a JSON error; bad paths 400; other methods 405', async () => {
  const fx = await startStreamer('serve-404');
  const missing = `${fx.config.paths.storage}/units/file/ab/cdef/none.rpm`;
  const r = await fetchRaw(urlFor(fx.base, missing));
  assert.equal(r.status, 404);
  assert.equal(r.headers['cache-control'], 'no-store');
  assert.equal(JSON.parse(r.body.toString()).code, 'PL_NOT_IN_CATALOG');

  const outside = await fetchRaw(`${fx.base}/etc/passwd`);
  assert.equal(outside.status, 404);

  const dotted = await fetchRaw(`${fx.base}${fx.config.paths.storage}/units/%2e%2e/x`);
  assert.equal(dotted.status, 400);
  assert.equal(JSON.parse(dotted.body.toString()).code, 'PL_BAD_PATH');

  const bad = await fetchRaw(`${fx.base}/%E0%A4%A`);
  assert.equal(bad.status, 400);

  const post = await fetchRaw(urlFor(fx.base, missing), { method: 'POST' });
  assert.equal(post.status, 405);
  assert.equal(post.headers.allow, 'GET, HEAD');
});

test('/healthz answers ok and /metrics exposes the counters', async () => {
  const fx = await startStreamer('serve-metrics');
  const h = await fetchRaw(`${fx.base}/healthz`);
  assert.equal(h.status, 200);
  assert.deepEqual(JSON.parse(h.body.toString()), { status: 'ok' });
  await fetchRaw(urlFor(fx.base, `${fx.config.paths.storage}/units/file/00/11/x`));
  const m = await fetchRaw(`${fx.base}/metrics`);
  assert.equal(m.status, 200);
  assert.match(String(m.headers['content-type']), /^text\/plain; version=0\.0\.4/);
  const text = m.body.toString();
  assert.match(text, /^pulp_lazy_streamer_requests_total\{outcome="not_found"\} 1$/m);
  for (const name of [
    'bytes_streamed_total',
    'upstream_fetches_total',
    'single_flight_joins_total',
    'saves_total',
    'checksum_failures_total',
  ]) {
    assert.match(text, new RegExp(`^# TYPE pulp_lazy_streamer_${name} counter$`, 'm'));
  }
});
