/**
 * Failover across catalog entries (src/streamer/failover.ts), with
 * in-process upstream answers (undici's response shape, a stream body): the
 * entries are asked in order until one answers 200 with a Content-Length the
 * catalog agrees with, and none after it. Which failure is reported when
 * every entry failed. Last, through a flight (real database, no socket): once
 * an entry answered, a failure of its body ends the flight and the next entry
 * is never asked.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { after, test } from 'node:test';
import type { CatalogEntryDoc, RepoDoc } from '../src/db/index.ts';
import { ChecksumMismatch, PulpLazyError, UpstreamError, UpstreamNotFound } from '../src/errors.ts';
import { silentLogger } from '../src/log.ts';
import { createCatalogLookup } from '../src/streamer/catalog.ts';
import { GoneUpstream } from '../src/streamer/drift.ts';
import { type FailoverDeps, firstAnswer, pickFailure } from '../src/streamer/failover.ts';
import { Flight } from '../src/streamer/flight.ts';
import { createStreamerMetrics } from '../src/streamer/metrics.ts';
import { WriteBudget } from '../src/streamer/write-budget.ts';
import type { UpstreamClient } from '../src/upstream/client.ts';
import { testDatabase } from './helpers/db.ts';

const repo = { _id: 'r', importer_id: 'imp' } as RepoDoc;

function entry(name: string, size?: number): CatalogEntryDoc {
  return {
    path: '/storage/file/f.bin',
    importer_id: 'imp',
    unit_id: 'u',
    unit_type_id: 'file',
    url: `http://upstream.invalid/${name}`,
    checksum: '0'.repeat(64),
    checksum_algorithm: 'sha256',
    size,
    revision: 1,
  };
}

type Reply = { status: number; length?: number; body?: Readable; onAsked?: () => void } | Error;

/** An upstream answering each URL's name from `replies`; records the URLs asked, in order. */
function upstream(replies: Record<string, Reply>) {
  const asked: string[] = [];
  const bodies: Readable[] = [];
  const pool = {
    get: async (url: string) => {
      asked.push(url.slice(url.lastIndexOf('/') + 1));
      const r = replies[url.slice(url.lastIndexOf('/') + 1)];
      if (!r) throw new Error(`unexpected request for ${url}`);
      if (r instanceof Error) throw r;
      r.onAsked?.();
      const body = r.body ?? Readable.from([Buffer.alloc(r.length ?? 0)]);
      bodies.push(body);
      return {
        statusCode: r.status,
        headers: r.length === undefined ? {} : { 'content-length': String(r.length) },
        body: Object.assign(body, { dump: async () => {} }),
      } as unknown as Awaited<ReturnType<UpstreamClient['get']>>;
    },
  };
  return { pool, asked, bodies };
}

function deps(pool: FailoverDeps['pool'], over: Partial<FailoverDeps> = {}) {
  const mismatches: string[] = [];
  let before = 0;
  const d: FailoverDeps = {
    catalog: { repo: async () => repo },
    pool,
    metrics: createStreamerMetrics(),
    log: silentLogger,
    clock: Date.now,
    signal: new AbortController().signal,
    beforeRequest: () => {
      before++;
    },
    mismatch: async (e, err) => {
      mismatches.push(`${e.url}: ${err.message}`);
    },
    ...over,
  };
  return { d, mismatches, before: () => before };
}

test('the next entry is tried when one fails before answering 200', async () => {
  const { pool, asked } = upstream({
    a: { status: 500 },
    b: Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }),
    c: { status: 200, length: 10 },
    d: { status: 200, length: 10 },
  });
  const { d, before } = deps(pool);
  const got = await firstAnswer('/p', [entry('a'), entry('b'), entry('c', 10), entry('d')], d);
  assert.equal(got.entry.url, 'http://upstream.invalid/c');
  assert.equal(got.size, 10);
  assert.deepEqual(asked, ['a', 'b', 'c'], 'asked in order, and none after the answer');
  assert.equal(before(), 3, 'the temp file is prepared before each request');
});

test('the first entry that answers is the one: the others are never asked', async () => {
  const { pool, asked } = upstream({ a: { status: 200 }, b: { status: 200 } });
  const { d } = deps(pool);
  const got = await firstAnswer('/p', [entry('a', 5), entry('b', 5)], d);
  assert.equal(got.entry.url, 'http://upstream.invalid/a');
  assert.equal(got.size, 5, 'no Content-Length: the catalog size');
  assert.deepEqual(asked, ['a']);
});

test('a Content-Length the catalog contradicts is a verification failure: recorded, its body dropped, next entry', async () => {
  const { pool, asked, bodies } = upstream({
    a: { status: 200, length: 99 },
    b: { status: 200, length: 10 },
  });
  const { d, mismatches } = deps(pool);
  const got = await firstAnswer('/p', [entry('a', 10), entry('b', 10)], d);
  assert.equal(got.entry.url, 'http://upstream.invalid/b');
  assert.deepEqual(asked, ['a', 'b']);
  assert.equal(mismatches.length, 1);
  assert.match(mismatches[0]!, /\/a: .*Content-Length 99, expected 10/);
  assert.ok(bodies[0]!.destroyed);
});

test('an entry whose repository is gone is skipped without a request', async () => {
  const { pool, asked } = upstream({ b: { status: 200 } });
  const { d } = deps(pool, {
    catalog: { repo: async (id) => (id === 'gone' ? null : repo) },
  });
  const gone = { ...entry('a'), importer_id: 'gone' };
  const got = await firstAnswer('/p', [gone, entry('b')], d);
  assert.equal(got.entry.url, 'http://upstream.invalid/b');
  assert.deepEqual(asked, ['b']);
});

test('every entry failed: 404 only when all were missing, else the last other failure', async () => {
  const { pool } = upstream({
    a: { status: 404 },
    b: { status: 410 },
    c: { status: 503 },
    d: { status: 404 },
  });
  const { d } = deps(pool);
  await assert.rejects(firstAnswer('/p', [entry('a'), entry('b')], d), (err) => {
    assert.ok(err instanceof GoneUpstream, 'every entry answered 404 or 410: gone upstream');
    assert.equal(err.status, 404);
    assert.match(err.message, /not found upstream .*\/a: .*404.*\/b: .*410/);
    assert.deepEqual(
      err.sources.map((s) => [s.repo, s.status]),
      [
        ['r', 404],
        ['r', 410],
      ],
    );
    return true;
  });
  // An entry whose repository is gone was not asked: 404, but nothing says the file left upstream.
  const noRepo = { ...entry('b'), importer_id: 'gone' };
  const partly = deps(pool, { catalog: { repo: async (id) => (id === 'gone' ? null : repo) } }).d;
  await assert.rejects(firstAnswer('/p', [entry('a'), noRepo], partly), (err) => {
    assert.ok(err instanceof UpstreamNotFound);
    return true;
  });
  await assert.rejects(firstAnswer('/p', [entry('a'), entry('c'), entry('d')], d), (err) => {
    assert.ok(err instanceof UpstreamError);
    assert.match(err.message, /\/c: upstream answered 503/);
    return true;
  });
  assert.equal(pickFailure('/p', []).status, 404);
});

test('an aborted fetch asks no further entry and fails with the abort reason', async () => {
  const ac = new AbortController();
  const reason = new PulpLazyError('PL_SHUTTING_DOWN', 'shutting down', { status: 503 });
  const { pool, asked } = upstream({
    a: { status: 500, onAsked: () => ac.abort(reason) },
    b: { status: 200 },
  });
  const { d } = deps(pool, { signal: ac.signal });
  await assert.rejects(firstAnswer('/p', [entry('a'), entry('b')], d), (err) => err === reason);
  assert.deepEqual(asked, ['a']);
});

test('after the first answer, a failure of the body ends the flight: the next entry is not asked', async () => {
  const db = await testDatabase('failover-after-first-byte');
  const work = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-failover-'));
  after(() => rm(work, { recursive: true, force: true }));
  const broken = new Readable({ read() {} });
  broken.push(Buffer.alloc(100));
  setTimeout(() => broken.destroy(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })), 50);
  const { pool, asked } = upstream({ a: { status: 200, length: 1000, body: broken }, b: { status: 200 } });
  const flight = new Flight(
    '/storage/file/f.bin',
    [entry('a', 1000), entry('b', 1000)],
    {
      db,
      catalog: { ...createCatalogLookup(db, { clock: Date.now }), repo: async () => repo },
      logger: silentLogger,
      clock: Date.now,
      pool: pool as unknown as UpstreamClient,
      budget: new WriteBudget(),
      metrics: createStreamerMetrics(),
      settings: {
        workingDir: work,
        saveToStorage: false,
        cacheTimeoutMs: 60_000,
        failureCooldownMs: 1000,
        orphanSaveTimeoutMs: 5000,
      },
    },
    () => {},
  );
  const client = flight.attach({ streamRequest: true });
  await flight.ready;
  await flight.settled;
  client.detach();
  assert.equal(flight.state, 'failed');
  assert.match(flight.error?.message ?? '', /ECONNRESET/);
  assert.deepEqual(asked, ['a'], 'no failover once the entry answered');
  assert.ok(!(flight.error instanceof ChecksumMismatch));
});
