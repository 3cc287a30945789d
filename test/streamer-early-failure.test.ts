/**
 * An upstream body that fails before the flight reads it (a reset right
 * after the headers, while the temp file is being opened) ends the flight
 * with a failure: it must not wait forever for events a failed stream never
 * emits. Found by the faults-chain reliability test hanging once in CI (the
 * upstream reset 20 ms after half the body; Squid then answered 504 for the
 * path until its timeout). The undici response is real; only its body has
 * already failed when the flight gets it, which is the timing CI hit.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, test } from 'node:test';
import type { Dispatcher } from 'undici';
import { catalogEntryId } from '../src/catalog/index.ts';
import { silentLogger } from '../src/log.ts';
import { createCatalogLookup } from '../src/streamer/catalog.ts';
import { Flight } from '../src/streamer/flight.ts';
import { createStreamerMetrics } from '../src/streamer/metrics.ts';
import { WriteBudget } from '../src/streamer/write-budget.ts';
import type { UpstreamClient } from '../src/upstream/client.ts';
import { testDatabase } from './helpers/db.ts';

for (const how of ['errored', 'closed'] as const) {
  test(`a body already ${how} when the flight starts reading: the flight fails, the unit is queued, no temp file`, async () => {
    const db = await testDatabase(`early-${how}`);
    const work = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-early-'));
    after(() => rm(work, { recursive: true, force: true }));
    await db.repos.insertOne({
      _id: 'r',
      type: 'file',
      feed: 'http://127.0.0.1:1/',
      importer_id: 'imp',
      upstream: { tls_verify: true },
      published_path: 'r',
      created_at: new Date(),
    });
    const storagePath = '/storage/file/ab/early.bin';
    const entry = {
      _id: catalogEntryId('imp', 1, storagePath),
      path: storagePath,
      importer_id: 'imp',
      unit_id: 'u-early',
      unit_type_id: 'file',
      url: 'http://127.0.0.1:1/early.bin',
      checksum: '0'.repeat(64),
      checksum_algorithm: 'sha256' as const,
      size: 1000,
      revision: 1,
    };
    // What undici hands over after the headers, once the connection was reset (or closed) meanwhile.
    const body = new Readable({ read() {} });
    body.on('error', () => {});
    body.push(Buffer.alloc(100));
    if (how === 'errored') body.destroy(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }));
    else body.destroy();
    await new Promise((r) => setImmediate(r));
    const pool = {
      get: async () =>
        ({
          statusCode: 200,
          headers: { 'content-length': '1000' },
          body,
        }) as unknown as Dispatcher.ResponseData,
    } as unknown as UpstreamClient;
    const flight = new Flight(
      storagePath,
      [entry],
      {
        db,
        catalog: createCatalogLookup(db, { clock: Date.now }),
        logger: silentLogger,
        clock: Date.now,
        pool,
        budget: new WriteBudget(),
        metrics: createStreamerMetrics(),
        settings: {
          workingDir: work,
          saveToStorage: true,
          cacheTimeoutMs: 60_000,
          failureCooldownMs: 1000,
          orphanSaveTimeoutMs: 5000,
        },
      },
      () => {},
    );
    const client = flight.attach({ streamRequest: false });
    const outcome = await Promise.race([
      flight.settled.then(
        () => 'settled',
        () => 'settled',
      ),
      new Promise((r) => setTimeout(() => r('still waiting after 5 s'), 5000)),
    ]);
    client.detach();
    assert.equal(outcome, 'settled');
    assert.equal(flight.state, 'failed');
    assert.match(flight.error?.message ?? '', how === 'errored' ? /ECONNRESET/ : /closed before the body/);
    await until(async () => (await db.deferred.findOne({ unit_id: 'u-early' })) !== null);
    assert.deepEqual(await readdir(path.join(work, 'tmp')).catch(() => []), [], 'no temp file left');
  });
}

async function until(check: () => Promise<boolean>): Promise<void> {
  for (let waited = 0; !(await check()); waited += 50) {
    assert.ok(waited < 5000, 'the failed miss was not queued');
    await new Promise((r) => setTimeout(r, 50));
  }
}
