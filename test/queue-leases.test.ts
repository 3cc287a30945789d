/**
 * The deferred_download queue against the real database: atomic claims,
 * expired leases, failure backoff and parking, retry, stats, and unit
 * download leases.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type Database, newDeferredEntry } from '../src/db/index.ts';
import {
  backoffDelay,
  claimBatch,
  claimUnit,
  completeEntry,
  enqueue,
  failEntry,
  type QueueSettings,
  queueStats,
  releaseEntry,
  releaseUnit,
  renewEntries,
  renewUnit,
  retryEntries,
  TOKENS_COLLECTION,
  workerId,
} from '../src/queue/index.ts';
import { testDatabase } from './helpers/db.ts';

const S: QueueSettings = { leaseMs: 60_000, maxAttempts: 3, backoffBaseMs: 1000, backoffMaxMs: 5000 };

async function fill(db: Database, count: number, now = new Date()): Promise<void> {
  await db.deferred.insertMany(
    Array.from({ length: count }, (_, i) =>
      newDeferredEntry({ unit_id: `u${String(i).padStart(4, '0')}`, unit_type_id: 'file' }, now),
    ),
  );
}

async function insertUnit(db: Database, id: string, downloaded = false): Promise<void> {
  await db.units.insertOne({
    _id: id,
    unit_type_id: 'file',
    unit_key: { id },
    files: [],
    downloaded,
    download_lease: null,
    created_at: new Date(),
  });
}

test('worker ids are host:pid:random and distinct', () => {
  const a = workerId();
  assert.match(a, new RegExp(`^[^:]+:${process.pid}:[0-9a-f]{8}$`));
  assert.notEqual(a, workerId());
});

test('concurrent claimers never get the same entry, and together get all', async () => {
  const db = await testDatabase('q-claim');
  await fill(db, 120);
  const owners = ['w1', 'w2', 'w3'];
  const got = await Promise.all(
    owners.map(async (o) => {
      const mine: string[] = [];
      for (;;) {
        const batch = await claimBatch(db, o, 7, S);
        if (batch.length === 0) return mine;
        for (const e of batch) {
          assert.equal(e.lease_owner, o);
          assert.equal(e.attempts, 1);
          mine.push(e.unit_id);
        }
      }
    }),
  );
  const all = got.flat();
  assert.equal(all.length, 120, 'every entry claimed exactly once');
  assert.equal(new Set(all).size, 120);
  assert.ok(
    got.every((g) => g.length > 0),
    'each worker got some work',
  );
  const docs = await db.deferred.find({}).toArray();
  assert.ok(docs.every((d) => d.lease_owner && d.lease_expires_at! > new Date()));
});

test('an expired lease makes the entry claimable again; a live one does not', async () => {
  const db = await testDatabase('q-expire');
  let now = Date.now();
  await fill(db, 2, new Date(now));
  const clock = () => now;
  const first = await claimBatch(db, 'dead', 10, S, clock);
  assert.equal(first.length, 2);
  assert.equal((await claimBatch(db, 'other', 10, S, clock)).length, 0, 'leased entries are not claimable');
  now += S.leaseMs / 2;
  assert.equal(await renewEntries(db, [first[0]!._id], 'dead', S, clock), 1);
  now += S.leaseMs / 2 + 1;
  const second = await claimBatch(db, 'other', 10, S, clock);
  assert.deepEqual(
    second.map((e) => e.unit_id),
    [first[1]!.unit_id],
    'only the entry whose lease ran out is taken over',
  );
  assert.equal(second[0]!.attempts, 2, 'the dead worker’s claim counted as an attempt');
  assert.equal(await renewEntries(db, [first[1]!._id], 'dead', S, clock), 0, 'the old owner cannot renew it');
});

test('a claimer killed between its claim token and its write does not strand the entry', async () => {
  const db = await testDatabase('q-stranded');
  let now = Date.now();
  const clock = () => now;
  await fill(db, 1, new Date(now - 1000));
  const [entry] = await db.deferred.find({}).toArray();
  // What a claimer leaves when it dies right after winning the token: the token, and the entry unchanged.
  const key = `e:${entry!._id}:0:-:${entry!.next_attempt_at.getTime()}`;
  await db.db
    .collection<{ _id: string; at: Date }>(TOKENS_COLLECTION)
    .insertOne({ _id: key, at: new Date(now) });
  assert.equal((await claimBatch(db, 'w', 1, S, clock)).length, 0, 'a live claim is respected');
  now += S.leaseMs + 1;
  const [got] = await claimBatch(db, 'w', 1, S, clock);
  assert.equal(got?.lease_owner, 'w', 'claimable once the dead claim is older than a lease');
  assert.equal(got?.attempts, 1);
});

test('failures back off exponentially, then park the entry; retry brings it back', async () => {
  const db = await testDatabase('q-fail');
  let now = Date.now();
  await fill(db, 1, new Date(now));
  const clock = () => now;
  const delays: number[] = [];
  for (let attempt = 1; attempt <= S.maxAttempts; attempt++) {
    const [e] = await claimBatch(db, 'w', 1, S, clock);
    assert.ok(e, `claimable for attempt ${attempt}`);
    assert.equal(e.attempts, attempt);
    const r = await failEntry(db, e, 'w', `boom ${attempt}`, S, clock);
    assert.equal(r.result, attempt < S.maxAttempts ? 'retry' : 'parked');
    delays.push(r.next_attempt_at.getTime() - now);
    const doc = await db.deferred.findOne({ _id: e._id });
    assert.equal(doc!.last_error, `boom ${attempt}`);
    assert.equal(doc!.lease_owner, null);
    assert.equal((await claimBatch(db, 'w', 1, S, clock)).length, 0, 'not claimable during the backoff');
    now = r.next_attempt_at.getTime();
  }
  assert.deepEqual(delays.slice(0, 2), [backoffDelay(1, S), backoffDelay(2, S)]);
  assert.deepEqual(
    [backoffDelay(1, S), backoffDelay(2, S), backoffDelay(3, S), backoffDelay(9, S)],
    [1000, 2000, 4000, 5000],
  );
  const parked = await db.deferred.findOne({});
  assert.equal(parked!.state, 'failed');
  now += 10 * S.backoffMaxMs;
  assert.equal((await claimBatch(db, 'w', 1, S, clock)).length, 0, 'a parked entry is never claimed');

  const stats = await queueStats(db, { clock });
  assert.equal(stats.failed, 1);
  assert.equal(stats.failing[0]!.last_error, `boom ${S.maxAttempts}`);

  const r = await retryEntries(db, { unitId: parked!.unit_id }, clock);
  assert.deepEqual(r.units, [parked!.unit_id]);
  const [again] = await claimBatch(db, 'w', 1, S, clock);
  assert.equal(again!.attempts, 1, 'attempts were reset');
  assert.equal(again!.state, 'pending');
});

test('release gives the entry back without counting the attempt; complete deletes it', async () => {
  const db = await testDatabase('q-release');
  await fill(db, 1);
  const [e] = await claimBatch(db, 'w', 1, S);
  assert.equal(await releaseEntry(db, e!, 'someone-else'), false, 'only the owner releases');
  assert.equal(await releaseEntry(db, e!, 'w'), true);
  const doc = await db.deferred.findOne({ _id: e!._id });
  assert.equal(doc!.attempts, 0);
  assert.equal(doc!.lease_owner, null);
  const [e2] = await claimBatch(db, 'w2', 1, S);
  await completeEntry(db, e2!);
  assert.equal(await db.deferred.countDocuments({}), 0);
  assert.equal(await enqueue(db, { unit_id: 'x', unit_type_id: 'file' }), true);
  assert.equal(await enqueue(db, { unit_id: 'x', unit_type_id: 'file' }), false, 'one entry per unit');
});

test('queue stats count by state and name the failing units', async () => {
  const db = await testDatabase('q-stats');
  const now = Date.now();
  const clock = () => now;
  await fill(db, 6, new Date(now - 90_000));
  const claimed = await claimBatch(db, 'w', 3, S, clock);
  await failEntry(db, claimed[0]!, 'w', 'upstream answered 500', S, clock);
  const s = await queueStats(db, { clock });
  assert.equal(s.total, 6);
  assert.equal(s.leased, 2);
  assert.equal(s.waiting, 1);
  assert.equal(s.ready, 3);
  assert.equal(s.failed, 0);
  assert.equal(s.oldest_age_s, 90);
  assert.equal(s.failing_total, 1);
  assert.deepEqual(
    s.failing.map((f) => [f.unit_id, f.last_error]),
    [[claimed[0]!.unit_id, 'upstream answered 500']],
  );
});

test('retry --all skips leased entries and lifts the catalog cool-down of retried units', async () => {
  const db = await testDatabase('q-retry');
  const now = Date.now();
  const clock = () => now;
  await fill(db, 3, new Date(now));
  const [a, b] = await claimBatch(db, 'w', 2, S, clock);
  await failEntry(db, a!, 'w', 'bad checksum', S, clock);
  await db.catalog.insertOne({
    path: '/s/a',
    importer_id: 'i',
    unit_id: a!.unit_id,
    unit_type_id: 'file',
    url: 'http://127.0.0.1:1/a',
    checksum: 'x',
    checksum_algorithm: 'sha256',
    revision: 1,
    failed_until: new Date(now + 60_000),
  });
  const r = await retryEntries(db, { all: true }, clock);
  assert.deepEqual(r.units, [a!.unit_id], 'the leased entry and the fresh one are left alone');
  assert.equal(r.catalog_cleared, 1);
  const leased = await db.deferred.findOne({ _id: b!._id });
  assert.equal(leased!.lease_owner, 'w');
  const cat = await db.catalog.findOne({ path: '/s/a' });
  assert.equal(cat!.failed_until, null);
});

test('unit leases: one holder at a time, downloaded units are not claimed, expiry frees them', async () => {
  const db = await testDatabase('q-units');
  let now = Date.now();
  const clock = () => now;
  await insertUnit(db, 'a');
  await insertUnit(db, 'done', true);
  const c1 = await claimUnit(db, 'a', 'w1', 1000, { clock });
  assert.equal(c1.kind, 'claimed');
  const l1 = c1.kind === 'claimed' ? c1.lease : assert.fail();
  assert.equal(
    (await db.units.findOne({ _id: 'a' }))!.download_lease,
    null,
    'a claim does not write the unit (it could undo a concurrent downloaded: true on FerretDB)',
  );
  const c2 = await claimUnit(db, 'a', 'w2', 1000, { clock });
  assert.equal(c2.kind, 'busy');
  assert.equal(c2.kind === 'busy' && c2.owner, 'w1');
  assert.equal((await claimUnit(db, 'done', 'w2', 1000, { clock })).kind, 'downloaded');
  const d = await claimUnit(db, 'done', 'w2', 1000, { clock, evenIfDownloaded: true });
  assert.equal(d.kind, 'claimed');
  assert.equal((await claimUnit(db, 'nope', 'w2', 1000, { clock })).kind, 'missing');
  assert.equal(await renewUnit(db, l1, 1000, clock), true);
  now += 1001;
  const c3 = await claimUnit(db, 'a', 'w2', 1000, { clock });
  assert.equal(c3.kind, 'claimed', 'expired lease taken over');
  const l3 = c3.kind === 'claimed' ? c3.lease : assert.fail();
  assert.equal(l3.gen, l1.gen + 1);
  assert.equal(await renewUnit(db, l1, 1000, clock), false, 'the old holder has lost it');
  await releaseUnit(db, l3, { downloaded: true, clock });
  const u = await db.units.findOne({ _id: 'a' });
  assert.equal(u!.downloaded, true);
  assert.ok(u!.download_lease!.expires_at.getTime() <= now, 'released: the visible lease is left expired');
  assert.equal(await renewUnit(db, l3, 1000, clock), false, 'a released lease cannot be renewed');
  // A worker that lost its lease may still report verified files, never un-download a unit.
  await releaseUnit(db, l1, { downloaded: false, clock });
  assert.equal((await db.units.findOne({ _id: 'a' }))!.downloaded, true);
  // Released: the next claim is immediate, and sees the flag.
  assert.equal((await claimUnit(db, 'a', 'w3', 1000, { clock })).kind, 'downloaded');
  const c4 = await claimUnit(db, 'a', 'w3', 1000, { clock, evenIfDownloaded: true });
  assert.equal(c4.kind === 'claimed' && c4.lease.gen, l3.gen + 1);
});

test('concurrent unit claims: exactly one winner', async () => {
  const db = await testDatabase('q-unit-race');
  await insertUnit(db, 'r');
  const results = await Promise.all(
    Array.from({ length: 8 }, (_, i) => claimUnit(db, 'r', `w${i}`, 60_000).then((c) => c.kind)),
  );
  assert.equal(results.filter((k) => k === 'claimed').length, 1);
  assert.equal(results.filter((k) => k === 'busy').length, 7);
});
