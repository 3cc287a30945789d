/**
 * Single-flight across streamers (streamer.share_fetches): two streamers on
 * one database and one storage fetch a cold path from upstream once,
 * whichever of them the clients ask; a holder that does not answer is not
 * waited for. Without share_fetches each streamer fetches on its own (the
 * control: it shows the counting sees a second fetch when there is one).
 */
import assert from 'node:assert/strict';
import type { AddressInfo } from 'node:net';
import { after, test } from 'node:test';
import { createStreamer } from '../src/daemons/streamer.ts';
import { silentLogger } from '../src/log.ts';
import { FETCH_LEASES_COLLECTION } from '../src/streamer/shared-flight.ts';
import { freePorts } from './helpers/proxies.ts';
import {
  addRepo,
  bytes,
  fetchRaw,
  type SeedFile,
  type StreamerFixture,
  seedUnit,
  serveSlowly,
  settled,
  sha256,
  startOrigin,
  startStreamer,
  tempFiles,
  urlFor,
} from './helpers/streamer.ts';

/** A second streamer on the first one's database, storage and config. */
async function secondStreamer(a: StreamerFixture): Promise<StreamerFixture> {
  const s = createStreamer(a.config, { db: a.db, logger: silentLogger });
  const addr = (await s.listen()) as AddressInfo;
  after(() => s.close({ deadlineMs: 1000 }));
  return { ...a, streamer: s, base: `http://127.0.0.1:${addr.port}` };
}

async function twoStreamers(label: string, share: boolean) {
  const a = await startStreamer(label, { share_fetches: share, fetch_lease: '3s' });
  const b = await secondStreamer(a);
  const body = bytes(3 * 1024 * 1024 + 7, 21);
  // Slow enough that every client asks while the fetch runs.
  const origin = await startOrigin({
    '/cold.iso': serveSlowly(body, { headerDelayMs: 300, chunk: 64 * 1024, intervalMs: 20 }),
  });
  await addRepo(a.db, `imp-${label}`);
  const file: SeedFile = {
    name: 'cold.iso',
    body,
    sources: [{ importer: `imp-${label}`, url: `${origin.base}/cold.iso` }],
  };
  const { unitId, paths } = await seedUnit(a, [file]);
  return { a, b, body, origin, unitId, path: paths[0]! };
}

test('share_fetches: 20 clients split over two streamers make one upstream GET and all get the bytes', async () => {
  const { a, b, body, origin, unitId, path } = await twoStreamers('shared-on', true);
  const results = await Promise.all(
    Array.from({ length: 20 }, (_, i) => fetchRaw(urlFor(i % 2 ? b.base : a.base, path))),
  );
  assert.equal(origin.getsOf('/cold.iso'), 1, 'one upstream GET for both streamers');
  for (const r of results) {
    assert.equal(r.status, 200);
    assert.ok(r.complete);
    assert.equal(sha256(r.body), sha256(body));
  }
  const relayed = a.streamer.metrics.sharedRelays.get({ result: 'relayed' });
  const relayedB = b.streamer.metrics.sharedRelays.get({ result: 'relayed' });
  assert.ok(relayed + relayedB > 0, 'the streamer that lost the claim passed its clients on');
  assert.ok(relayed === 0 || relayedB === 0, 'only one streamer held the fetch');
  await settled(a);
  await settled(b);
  assert.equal((await a.db.units.findOne({ _id: unitId }))?.downloaded, true);
  // The lease was released once the file was stored, and nothing is left in the working dir.
  const chain = await a.db.db
    .collection(FETCH_LEASES_COLLECTION)
    .find({}, { projection: { _id: 1 } })
    .toArray();
  assert.deepEqual(chain.map((d) => d._id).sort(), [`p:${path}#1`, `p:${path}#1:released`]);
  assert.deepEqual(await tempFiles(a), []);
  // Later requests on either streamer are served from storage: no more upstream GETs.
  for (const base of [a.base, b.base]) assert.equal((await fetchRaw(urlFor(base, path))).status, 200);
  assert.equal(origin.getsOf('/cold.iso'), 1);
});

test('without share_fetches each streamer fetches the cold path itself (control)', async () => {
  const { a, b, origin, path } = await twoStreamers('shared-off', false);
  const results = await Promise.all(
    Array.from({ length: 10 }, (_, i) => fetchRaw(urlFor(i % 2 ? b.base : a.base, path))),
  );
  for (const r of results) assert.equal(r.status, 200);
  assert.equal(origin.getsOf('/cold.iso'), 2, 'one upstream GET per streamer');
  await settled(a);
  await settled(b);
});

test('share_fetches: a holder that does not answer is not waited for; the streamer fetches itself', async () => {
  const { a, body, origin, unitId, path } = await twoStreamers('shared-dead', true);
  // A live lease of a streamer that died: its URL answers nothing.
  const [deadPort] = await freePorts(1);
  await a.db.db.collection<{ _id: string; [field: string]: unknown }>(FETCH_LEASES_COLLECTION).insertOne({
    _id: `p:${path}#1`,
    path,
    gen: 1,
    owner: 'dead-host:1:x',
    url: `http://127.0.0.1:${deadPort}`,
    expires_at: new Date(Date.now() + 60_000),
  });
  const r = await fetchRaw(urlFor(a.base, path));
  assert.equal(r.status, 200);
  assert.equal(sha256(r.body), sha256(body));
  assert.equal(a.streamer.metrics.sharedRelays.get({ result: 'unreachable' }), 1);
  assert.equal(origin.getsOf('/cold.iso'), 1);
  await settled(a);
  assert.equal((await a.db.units.findOne({ _id: unitId }))?.downloaded, true);
});

test('share_fetches on a wildcard or unix listen address without advertise_url: one clear error', async () => {
  const fx = await startStreamer('shared-cfg');
  const config = {
    ...fx.config,
    streamer: { ...fx.config.streamer, listen: '0.0.0.0:0', share_fetches: true, advertise_url: '' },
  };
  const s = createStreamer(config, { db: fx.db, logger: silentLogger });
  after(() => s.close({ deadlineMs: 100 }));
  await assert.rejects(s.listen(), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'PL_CONFIG');
    assert.match(err.message, /streamer\.advertise_url/);
    return true;
  });
});
