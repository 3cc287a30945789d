/**
 * Races decided by unique inserts: correct on MongoDB and on FerretDB, whose
 * conditional updates and $inc are not atomic (docs/ferretdb.md).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { nextRevision } from '../src/catalog/index.ts';
import { acquireSyncLease, buildRepo, createRepo, releaseSyncLease } from '../src/repos/index.ts';
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
