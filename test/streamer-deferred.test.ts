/** save_to_storage = false: bytes are streamed, nothing is saved, the unit is queued for the download tasks. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  addRepo,
  bytes,
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

const fx = await startStreamer('deferred', { save_to_storage: false });
const body = bytes(200 * 1024, 20);
const origin = await startOrigin({ '/d.deb': serve(body) });
await addRepo(fx.db, 'imp-deferred');

test('two requests stream the bytes and queue exactly one deferred download', {
  timeout: 60_000,
}, async () => {
  const { unitId, paths } = await seedUnit(fx, [
    { name: 'd.deb', body, sources: [{ importer: 'imp-deferred', url: `${origin.base}/d.deb` }] },
  ]);
  for (let i = 0; i < 2; i++) {
    const r = await fetchRaw(urlFor(fx.base, paths[0]!));
    assert.equal(r.status, 200);
    assert.ok(r.complete);
    assert.equal(sha256(r.body), sha256(body));
    await settled(fx);
  }
  assert.equal(origin.getsOf('/d.deb'), 2, 'not saved, so each request goes upstream');
  assert.equal(await exists(paths[0]!), false);
  assert.deepEqual(await tempFiles(fx), []);
  assert.equal((await fx.db.units.findOne({ _id: unitId }))?.downloaded, false);
  const queued = await fx.db.deferred.find({ unit_id: unitId }).toArray();
  assert.equal(queued.length, 1);
  assert.equal(queued[0]!.unit_type_id, 'file');
  assert.equal(queued[0]!.state, 'pending');
  assert.equal(queued[0]!.attempts, 0);
  assert.ok(queued[0]!.next_attempt_at instanceof Date);
  assert.ok(queued[0]!.created_at instanceof Date);
});

test('a request with Pulp-Stream-Request queues nothing', { timeout: 60_000 }, async () => {
  const other = bytes(1234, 21);
  const o2 = await startOrigin({ '/task.deb': serve(other) });
  const { unitId, paths } = await seedUnit(fx, [
    { name: 'task.deb', body: other, sources: [{ importer: 'imp-deferred', url: `${o2.base}/task.deb` }] },
  ]);
  const r = await fetchRaw(urlFor(fx.base, paths[0]!), { headers: { 'Pulp-Stream-Request': 'true' } });
  assert.equal(r.status, 200);
  assert.ok(r.body.equals(other));
  await settled(fx);
  assert.equal(await fx.db.deferred.countDocuments({ unit_id: unitId }), 0);
  assert.deepEqual(await tempFiles(fx), []);
});
