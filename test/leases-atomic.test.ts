/**
 * Races decided by unique inserts: correct on MongoDB and on FerretDB, whose
 * conditional updates and $inc are not atomic (docs/ferretdb.md).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { nextRevision } from '../src/catalog/index.ts';
import { syncRepo } from '../src/importers/sync.ts';
import { silentLogger } from '../src/log.ts';
import { claimUnit, releaseUnit } from '../src/queue/index.ts';
import { acquireSyncLease, buildRepo, createRepo, releaseSyncLease } from '../src/repos/index.ts';
import { markDownloadedIfComplete } from '../src/storage/units.ts';
import { DispatcherPool } from '../src/upstream/dispatcher.ts';
import { testDatabase } from './helpers/db.ts';

test('concurrent catalog revisions are all distinct and increasing per caller', async () => {
  const db = await testDatabase('revs');
  for (let round = 0; round < 5; round++) {
    const got = await Promise.all(Array.from({ length: 20 }, () => nextRevision(db, 'imp')));
    assert.equal(new Set(got).size, 20, `round ${round}: ${got.join(',')}`);
  }
  assert.equal(await nextRevision(db, 'imp'), 101);
  assert.equal(await nextRevision(db, 'other'), 1, 'counters are per importer');
});

test('one sync lease per repository, whatever the race; released and expired leases can be taken', async () => {
  const db = await testDatabase('lease');
  await createRepo(db, await buildRepo({ name: 'r', type: 'file', feed: 'http://127.0.0.1:9/' }));
  for (let round = 0; round < 5; round++) {
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, () => acquireSyncLease(db, 'r', 60_000)),
    );
    const won = results.filter((r) => r.status === 'fulfilled');
    assert.equal(won.length, 1, `round ${round}`);
    for (const r of results) {
      if (r.status === 'rejected') assert.equal((r.reason as { code?: string }).code, 'PL_SYNC_IN_PROGRESS');
    }
    await releaseSyncLease(db, 'r', (won[0] as PromiseFulfilledResult<string>).value);
  }
  const short = await acquireSyncLease(db, 'r', 1);
  await new Promise((r) => setTimeout(r, 20));
  const taken = await acquireSyncLease(db, 'r', 60_000);
  assert.notEqual(taken, short, 'an expired lease is taken over');
  await assert.rejects(acquireSyncLease(db, 'nope', 1000), { code: 'PL_REPO_NOT_FOUND' });
});

test('a sync keeps its lease while it runs longer than the lease term', async (t) => {
  const db = await testDatabase('lease-renew');
  const root = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-lease-renew-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  // A manifest that takes 1.5 s to come: five times the lease of 300 ms.
  const upstream = http.createServer((_req, res) => {
    setTimeout(() => res.writeHead(200, { 'content-type': 'text/plain' }).end(''), 1500);
  });
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  t.after(() => {
    upstream.closeAllConnections();
    upstream.close();
  });
  const feed = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/`;
  await createRepo(db, await buildRepo({ name: 'slow', type: 'file', feed }));
  const pool = new DispatcherPool({ connectMs: 5000, headersMs: 5000, bodyIdleMs: 5000 });
  t.after(() => pool.close());
  const sync = syncRepo('slow', {
    db,
    pool,
    storageRoot: path.join(root, 'storage'),
    publishedRoot: path.join(root, 'published'),
    workingDir: path.join(root, 'working'),
    logger: silentLogger,
    leaseMs: 300,
  });
  await new Promise((r) => setTimeout(r, 900));
  await assert.rejects(acquireSyncLease(db, 'slow', 60_000), { code: 'PL_SYNC_IN_PROGRESS' });
  await sync;
  await releaseSyncLease(db, 'slow', await acquireSyncLease(db, 'slow', 60_000));
});

test('a unit claim never undoes the streamer marking the unit downloaded', async (t) => {
  const db = await testDatabase('claim-vs-mark');
  const dir = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-mark-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'f.bin');
  await writeFile(file, 'stored');
  const ROUNDS = 40;
  for (let round = 0; round < ROUNDS; round++) {
    const id = `u${round}`;
    await db.units.insertOne({
      _id: id,
      unit_type_id: 'file',
      unit_key: { round },
      files: [
        { relative_path: 'f.bin', size: 6, checksum: 'x', checksum_algorithm: 'sha256', storage_path: file },
      ],
      downloaded: false,
      download_lease: null,
      created_at: new Date(),
    });
    // The streamer saved the last file (markDownloadedIfComplete) while two tasks claim the unit.
    const [a, b, marked] = await Promise.all([
      claimUnit(db, id, 'w1', 60_000),
      claimUnit(db, id, 'w2', 60_000),
      markDownloadedIfComplete(db, id),
    ]);
    assert.equal(marked, true);
    assert.ok([a, b].filter((c) => c.kind === 'claimed').length <= 1, `round ${round}: one holder at most`);
    for (const c of [a, b]) if (c.kind === 'claimed') await releaseUnit(db, c.lease);
    assert.equal((await db.units.findOne({ _id: id }))!.downloaded, true, `round ${round}: flag kept`);
  }
});
