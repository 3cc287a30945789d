/**
 * The `streamed` download policy (Pulp 3), in the streamer against a local
 * origin and the test database: misses are streamed, still one upstream GET
 * for concurrent requests, but never saved and never queued (not even a
 * verification failure); a file already in storage is served as a hit.
 */
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import {
  addRepo,
  bytes,
  exists,
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

const fx = await startStreamer('policy-streamed');
await addRepo(fx.db, 'imp-streamed');
// As a sync under the streamed policy leaves it: asked for and in force.
await fx.db.repos.updateOne(
  { _id: 'imp-streamed' },
  { $set: { policy: 'streamed', policy_in_force: 'streamed' } },
);

test('streamed: concurrent misses make one upstream GET; nothing stored, nothing queued', async () => {
  const body = bytes(512 * 1024 + 7, 31);
  const origin = await startOrigin({
    '/s.rpm': serveSlowly(body, { headerDelayMs: 300, chunk: 32 * 1024, intervalMs: 10 }),
  });
  const { unitId, paths } = await seedUnit(fx, [
    { name: 's.rpm', body, sources: [{ importer: 'imp-streamed', url: `${origin.base}/s.rpm` }] },
  ]);
  const url = urlFor(fx.base, paths[0]!);
  const results = await Promise.all(Array.from({ length: 8 }, () => fetchRaw(url)));
  for (const r of results) {
    assert.equal(r.status, 200);
    assert.ok(r.complete);
    assert.equal(sha256(r.body), sha256(body));
  }
  assert.equal(origin.getsOf('/s.rpm'), 1, 'one upstream GET for the concurrent misses');
  await settled(fx);
  assert.equal(await exists(paths[0]!), false, 'not saved');
  assert.equal((await fx.db.units.findOne({ _id: unitId }))?.downloaded, false);
  assert.equal(await fx.db.deferred.countDocuments({ unit_id: unitId }), 0, 'not queued');
  assert.deepEqual(await tempFiles(fx), []);

  // Not saved, so the next miss goes upstream again.
  const again = await fetchRaw(url);
  assert.equal(again.status, 200);
  assert.equal(origin.getsOf('/s.rpm'), 2);
  await settled(fx);
  assert.equal(await fx.db.deferred.countDocuments({}), 0);
});

test('streamed: a stored file is a hit; bytes that fail verification queue nothing', async () => {
  const stored = bytes(10_000, 32);
  const bad = bytes(10_000, 33);
  const origin = await startOrigin({ '/stored.rpm': serve(stored), '/bad.rpm': serve(bytes(10_000, 34)) });
  const a = await seedUnit(fx, [
    {
      name: 'stored.rpm',
      body: stored,
      sources: [{ importer: 'imp-streamed', url: `${origin.base}/stored.rpm` }],
    },
  ]);
  await mkdir(path.dirname(a.paths[0]!), { recursive: true });
  await writeFile(a.paths[0]!, stored);
  const hit = await fetchRaw(urlFor(fx.base, a.paths[0]!));
  assert.equal(hit.status, 200);
  assert.ok(hit.body.equals(stored));
  assert.equal(origin.getsOf('/stored.rpm'), 0, 'served from storage');

  const b = await seedUnit(fx, [
    { name: 'bad.rpm', body: bad, sources: [{ importer: 'imp-streamed', url: `${origin.base}/bad.rpm` }] },
  ]);
  const miss = await fetchRaw(urlFor(fx.base, b.paths[0]!));
  assert.equal(miss.complete, false, 'a bad body is never sent complete');
  await settled(fx);
  assert.equal(origin.getsOf('/bad.rpm'), 1);
  assert.ok((await fx.db.catalog.findOne({ unit_id: b.unitId }))?.failed_until, 'the entry cools down');
  assert.equal(await fx.db.deferred.countDocuments({}), 0, 'nothing queued');
  assert.equal(await exists(b.paths[0]!), false);
});

test('a switch to streamed waits for the next sync: until then misses are saved as before', async () => {
  await addRepo(fx.db, 'imp-switched');
  await fx.db.repos.updateOne(
    { _id: 'imp-switched' },
    { $set: { policy: 'streamed', policy_in_force: 'on_demand' } },
  );
  const body = bytes(64 * 1024 + 3, 5);
  const origin = await startOrigin({ '/w.rpm': serve(body) });
  const { unitId, paths } = await seedUnit(fx, [
    { name: 'w.rpm', body, sources: [{ importer: 'imp-switched', url: `${origin.base}/w.rpm` }] },
  ]);
  const r = await fetchRaw(urlFor(fx.base, paths[0]!));
  assert.equal(r.status, 200);
  assert.equal(sha256(r.body), sha256(body));
  await settled(fx);
  assert.equal(await exists(paths[0]!), true, 'saved: on_demand is still in force');
  assert.equal((await fx.db.units.findOne({ _id: unitId }))?.downloaded, true);
});
