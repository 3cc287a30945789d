/**
 * Upstream drift (#22): a file every catalog entry of which answers 404 or
 * 410 upstream. Through `serve` (content, then the streamer, in one process)
 * on a synced file repository of a real upstream: concurrent clients all get
 * 404 (PL_UPSTREAM_GONE), the unit is flagged gone upstream with the time and
 * status, one re-sync of the repository is requested however many asked, and
 * `queue` lists it; a later sync that still lists it keeps the flag, and a
 * fetch that succeeds once the file is back clears it. A sweep parks such a
 * unit's entry at once instead of retrying it. And requestSync itself: of
 * concurrent callers, one sets the request.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import type { DeferredDownloadDoc } from '../src/db/index.ts';
import { createLogger } from '../src/log.ts';
import { buildRepo, createRepo, requestSync } from '../src/repos/index.ts';
import type { GoneUpstreamList } from '../src/storage/gone.ts';
import { collectSnapshot } from '../src/tui/data.ts';
import { runCli } from './helpers/cli.ts';
import { testDatabase } from './helpers/db.ts';
import { edgeRepo, manifestOf, serveEdge, sweepEdge, syncEdge } from './helpers/edge-repo.ts';
import { testEnv } from './helpers/env.ts';
import { request } from './helpers/http.ts';
import { bytes } from './helpers/streamer.ts';
import { startUpstream } from './helpers/upstream.ts';

/** A file repository "r" of a, b (and c) on a counting upstream, synced; `streamer`: config overrides. */
async function driftRepo(label: string, streamer: Record<string, unknown> = {}) {
  const files = new Map([
    ['a.bin', bytes(64 * 1024 + 5, 1)],
    ['b.bin', bytes(3000, 2)],
    ['c.bin', bytes(2000, 3)],
  ]);
  const up = await startUpstream(
    new Map<string, Buffer>([
      ['/PULP_MANIFEST', manifestOf(files)],
      ...[...files].map(([n, b]) => [`/${n}`, b] as [string, Buffer]),
    ]),
  );
  const r = await edgeRepo(label, up.url, files, { streamer });
  await syncEdge(r);
  return { r, up, files };
}

const codeOf = (body: Buffer) => (JSON.parse(body.toString()) as { code: string }).code;

test('20 concurrent misses of a file deleted upstream: 20 × 404, the unit flagged, one re-sync; a fetch once it is back clears the flag', async () => {
  const { r, up, files } = await driftRepo('drift-serve');
  const base = await serveEdge(r);
  up.files.delete('/a.bin');

  const replies = await Promise.all(
    Array.from({ length: 20 }, () => request(`${base}/pulp/content/r/a.bin`)),
  );
  assert.deepEqual(
    replies.map((x) => [x.status, codeOf(x.body)]),
    Array.from({ length: 20 }, () => [404, 'PL_UPSTREAM_GONE']),
  );
  const asked = up.hits.get('/a.bin') ?? 0;
  assert.ok(asked >= 1 && asked <= 20, `upstream asked ${asked} times`);

  const a = await r.unitOf('a.bin');
  assert.equal(a?.gone_upstream?.status, 404);
  assert.ok(a.gone_upstream.at instanceof Date);
  const since = a.gone_upstream.at.toISOString();
  const repo = await r.db.repos.findOne({ _id: 'r' });
  assert.match(repo?.sync_requested?.reason ?? '', /upstream drift: .*a\.bin: upstream answered 404/);
  const requestedAt = repo!.sync_requested!.at.toISOString();
  assert.equal(await r.db.locks.countDocuments({ _id: /^resync:r@/ }), 1, 'one request decided');
  assert.equal(await r.db.deferred.countDocuments({}), 0, 'a unit gone upstream is not queued');

  // `queue` lists it (through the CLI, on the same database).
  const env = (await testEnv('drift-cli', { database: { name: r.db.db.databaseName } })).env;
  const q = await runCli(['queue', '--json'], { env });
  assert.equal(q.code, 0, q.stderr);
  const gone = (JSON.parse(q.stdout) as { gone_upstream: GoneUpstreamList }).gone_upstream;
  assert.equal(gone.total, 1);
  assert.deepEqual(gone.units, [
    { unit_id: a._id, unit_type_id: 'file', where: [{ repo: 'r', path: 'a.bin' }], since, status: 404 },
  ]);
  const human = await runCli(['queue'], { env });
  assert.equal(human.code, 0, human.stderr);
  assert.ok(human.stdout.includes(`gone upstream (1):\n  r/a.bin since ${since} (404), unit ${a._id}`));

  // `top` shows it too (its snapshot of the database).
  const top = await collectSnapshot(r.config, r.db);
  assert.deepEqual(top.gone, gone);

  // 410 on another file: flagged with its status; the repository's request is not repeated.
  up.statuses.set('/b.bin', 410);
  const b = await request(`${base}/pulp/content/r/b.bin`);
  assert.deepEqual([b.status, codeOf(b.body)], [404, 'PL_UPSTREAM_GONE']);
  assert.equal((await r.unitOf('b.bin'))?.gone_upstream?.status, 410);
  assert.equal((await r.db.repos.findOne({ _id: 'r' }))?.sync_requested?.at.toISOString(), requestedAt);

  // A sync that still lists a.bin keeps its flag (and its time).
  await syncEdge(r);
  assert.equal((await r.unitOf('a.bin'))?.gone_upstream?.at.toISOString(), since);

  // Back upstream: the next fetch succeeds, stores the file and clears the flag.
  up.files.set('/a.bin', files.get('a.bin')!);
  const back = await request(`${base}/pulp/content/r/a.bin`);
  assert.equal(back.status, 200);
  assert.ok(back.body.equals(files.get('a.bin')!));
  const after = await r.unitOf('a.bin');
  assert.equal(after?.downloaded, true);
  assert.equal(after?.gone_upstream ?? null, null);
  assert.equal((await r.unitOf('b.bin'))?.gone_upstream?.status, 410, 'b.bin is still gone');
});

test('a sweep of a unit gone upstream parks its entry after one attempt: flagged, re-sync requested', async () => {
  const { r, up } = await driftRepo('drift-sweep');
  up.files.delete('/c.bin');
  const s = await sweepEdge(r);
  assert.equal(s.stored, 2);
  const c = await r.unitOf('c.bin');
  assert.deepEqual(
    s.failed.map((f) => [f.unit_id, f.parked]),
    [[c?._id, true]],
  );
  const entry = (await r.db.deferred.findOne({ unit_id: c!._id })) as DeferredDownloadDoc;
  assert.equal(entry.state, 'failed');
  assert.match(entry.last_error ?? '', /PL_UPSTREAM_GONE|not found upstream/);
  assert.equal(c?.gone_upstream?.status, 404);
  assert.ok((await r.db.repos.findOne({ _id: 'r' }))?.sync_requested);
  assert.equal(up.hits.get('/c.bin'), 1, 'asked upstream once');
});

test('a streamer that does not save: a fetch that succeeds clears the flag all the same', async () => {
  const { r, up, files } = await driftRepo('drift-nosave', { save_to_storage: false });
  const lines: string[] = [];
  const logs = new Writable({
    write(chunk, _enc, cb) {
      lines.push(String(chunk));
      cb();
    },
  });
  const base = await serveEdge(r, createLogger({ destination: logs }));
  up.files.delete('/b.bin');
  const gone = await request(`${base}/pulp/content/r/b.bin`, { headers: { 'x-request-id': 'drift-rid-1' } });
  assert.equal(gone.status, 404);
  // The drift is logged with the id of the request that met it.
  const logged = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  const line = logged.find((l) => l.event === 'upstream_gone');
  assert.equal(line?.reqId, 'drift-rid-1', JSON.stringify(logged));
  assert.deepEqual(line?.sync_requested, ['r']);
  assert.equal((await r.unitOf('b.bin'))?.gone_upstream?.status, 404);
  up.files.set('/b.bin', files.get('b.bin')!);
  const back = await request(`${base}/pulp/content/r/b.bin`);
  assert.equal(back.status, 200);
  assert.ok(back.body.equals(files.get('b.bin')!));
  const b = await r.unitOf('b.bin');
  assert.equal(b?.downloaded, false, 'not saved');
  assert.equal(b?.gone_upstream ?? null, null);
});

test('requestSync: of concurrent callers exactly one sets the request; none while it is pending or debounced', async () => {
  const db = await testDatabase('drift-request');
  await createRepo(db, await buildRepo({ name: 'r', type: 'file', feed: 'http://127.0.0.1:9/' }));
  const now = new Date();
  const two = await Promise.all([requestSync(db, 'r', 'one', { now }), requestSync(db, 'r', 'two', { now })]);
  assert.deepEqual(two.filter(Boolean).length, 1);
  const many = await Promise.all(Array.from({ length: 10 }, () => requestSync(db, 'r', 'more', { now })));
  assert.ok(
    many.every((x) => !x),
    'pending: no new request',
  );
  const set = await db.repos.findOne({ _id: 'r' });
  assert.ok(set?.sync_requested?.reason === 'one' || set?.sync_requested?.reason === 'two');

  // The scheduler ran the sync and cleared the request: within the debounce window nothing is asked again.
  await db.repos.updateOne({ _id: 'r' }, { $set: { sync_requested: null } });
  assert.equal(await requestSync(db, 'r', 'soon', { now: new Date(now.getTime() + 1000) }), false);
  const later = new Date(now.getTime() + 3_600_000);
  const again = await Promise.all(
    Array.from({ length: 5 }, () => requestSync(db, 'r', 'later', { now: later })),
  );
  assert.equal(again.filter(Boolean).length, 1, 'past the window: one new request');
  assert.equal((await db.repos.findOne({ _id: 'r' }))?.sync_requested?.reason, 'later');
  assert.equal(await requestSync(db, 'nope', 'x'), false, 'no such repository');
});
