/**
 * src/db/by-id.ts on the server the tests use (FerretDB unless MONGODB_URL
 * names another) and, forced, with the other server's strategy: both give
 * the same answers.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { existingIds, type ServerKind, updateOneById } from '../src/db/index.ts';
import { testDatabase } from './helpers/db.ts';

const strategies: ServerKind[] = ['ferretdb', 'mongodb'];

test('existingIds: a few ids in a large collection, many ids in a small one, none, and an empty collection', async () => {
  const db = await testDatabase('by-id-existing');
  const coll = db.db.collection<{ _id: string; n: number }>('things');
  const empty = db.db.collection<{ _id: string; n: number }>('nothing');
  await coll.insertMany(Array.from({ length: 200 }, (_, n) => ({ _id: `t${n}`, n })));
  for (const server of strategies) {
    // 5 ids, 200 documents: more than 4 per id, so reads by _id on FerretDB.
    const few = await existingIds(server, coll, ['t3', 'x1', 't150', 't199', 'x2']);
    assert.deepEqual([...few].sort(), ['t150', 't199', 't3'], server);
    // 100 ids, 200 documents: one scan on FerretDB.
    const many = Array.from({ length: 100 }, (_, i) => (i % 2 ? `t${i * 3}` : `y${i}`));
    const expected = many.filter((id) => id.startsWith('t') && Number(id.slice(1)) < 200);
    assert.deepEqual([...(await existingIds(server, coll, many))].sort(), expected.sort(), server);
    assert.equal((await existingIds(server, coll, [])).size, 0, server);
    assert.equal((await existingIds(server, empty, ['t1', 't2'])).size, 0, server);
  }
});

test('updateOneById: writes only when the condition holds', async () => {
  const db = await testDatabase('by-id-update');
  const coll = db.db.collection<{ _id: string; state: string; n: number }>('things');
  await coll.insertOne({ _id: 'a', state: 'pending', n: 0 });
  for (const server of strategies) {
    assert.equal(
      await updateOneById(server, coll, 'a', { state: 'leased' }, { $inc: { n: 1 } }),
      false,
      server,
    );
    assert.equal(
      await updateOneById(server, coll, 'a', { state: 'pending' }, { $inc: { n: 1 } }),
      true,
      server,
    );
    assert.equal(await updateOneById(server, coll, 'missing', {}, { $inc: { n: 1 } }), false, server);
  }
  assert.equal((await coll.findOne({ _id: 'a' }))?.n, 2);
});
