/**
 * The per-repository upstream settings of `repo update` as every upstream
 * request applies them (src/upstream/): extra headers to the feed's origin
 * only, `max_connections` as undici's per-origin limit (a real upstream
 * counts open responses), `rate_limit` as a token bucket (injected clock, no
 * timing), dispatchers of old settings closed once idle, and the streamer's
 * repository cache, which must hand out a changed repository within two
 * cache periods however long it sat idle.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { test } from 'node:test';
import type { UpstreamSettings } from '../src/db/models.ts';
import { createCatalogLookup } from '../src/streamer/catalog.ts';
import { upstreamGet } from '../src/upstream/client.ts';
import { DispatcherPool, IDLE_CLOSE_MS } from '../src/upstream/dispatcher.ts';
import { RateLimits, TokenBucket } from '../src/upstream/rate.ts';
import { testDatabase } from './helpers/db.ts';
import { addRepo } from './helpers/streamer.ts';
import { startUpstream as startSlowUpstream } from './helpers/tasks.ts';
import { listenForTestFile, startUpstream } from './helpers/upstream.ts';

const TIMEOUTS = { connectMs: 5000, headersMs: 10_000, bodyIdleMs: 10_000 };

function poolFor(test: { after: (fn: () => Promise<void>) => void }, clock?: () => number) {
  const pool = new DispatcherPool(TIMEOUTS, clock ? { clock } : {});
  test.after(() => pool.close());
  return pool;
}

test('token bucket: starts spaced 1/N s apart, never more than ceil(N) in any second; a new rate applies at once', () => {
  const b = new TokenBucket();
  assert.equal(b.reserve(0, 2), 0);
  assert.equal(b.reserve(0, 2), 500);
  assert.equal(b.reserve(100, 2), 900);
  // Idle long enough: the next one starts at once, no burst saved up.
  assert.equal(b.reserve(5000, 2), 0);
  assert.equal(b.reserve(5000, 2), 500);
  // A higher rate: the slots already reserved stay, the next ones are 100 ms apart.
  assert.equal(b.reserve(5000, 10), 1000);
  assert.equal(b.reserve(5000, 10), 1100);

  const rate = 2.5;
  const c = new TokenBucket();
  const starts = Array.from({ length: 50 }, (_, i) => {
    const now = i * 37;
    return now + c.reserve(now, rate);
  });
  for (const t0 of starts) {
    const inWindow = starts.filter((t) => t >= t0 && t < t0 + 1000).length;
    assert.ok(inWindow <= Math.ceil(rate), `${inWindow} starts in the second from ${t0}`);
  }
});

test('rate limits: no rate, no wait; a wait for a slot far ahead is cut by its signal', async () => {
  const limits = new RateLimits(() => 0);
  await limits.wait('https://a', undefined);
  await limits.wait('https://a', 0);
  assert.equal(limits.size, 0);
  await limits.wait('https://a', 0.001); // first slot: now
  const ac = new AbortController();
  const waiting = limits.wait('https://a', 0.001, ac.signal); // next slot: 1000 s ahead
  const reason = new Error('stop waiting');
  ac.abort(reason);
  await assert.rejects(waiting, (err) => err === reason);
  // Another origin has a bucket of its own.
  await limits.wait('https://b', 0.001);
});

test('rate_limit is applied to every request to the feed: the second request of a one-per-1000-s feed waits', async (t) => {
  const up = await startUpstream(new Map([['/r/a', 'A']]));
  const pool = poolFor(t, () => 0);
  // One connection: requests reach the upstream in the order they are handed to the dispatcher.
  const limited = {
    feed: `${up.url}r/`,
    upstream: { tls_verify: true, max_connections: 1, rate_limit: 0.001 },
  };
  const first = await upstreamGet(pool, `${up.url}r/a`, limited);
  assert.equal(await first.body.text(), 'A');
  const ac = new AbortController();
  let waiting = true;
  const second = upstreamGet(pool, `${up.url}r/a`, limited, ac.signal).finally(() => {
    waiting = false;
  });
  // Without the limit, on the same dispatcher, a later request goes at once (and would queue behind the second).
  const free = await upstreamGet(pool, `${up.url}r/a`, {
    ...limited,
    upstream: { tls_verify: true, max_connections: 1 },
  });
  await free.body.dump();
  assert.equal(up.hits.get('/r/a'), 2, 'the second limited request was not sent');
  assert.equal(waiting, true);
  ac.abort(new Error('gave up waiting'));
  await assert.rejects(second, /gave up waiting/);
  assert.equal(up.hits.get('/r/a'), 2);
});

test('headers: the repository headers reach the feed (User-Agent replaceable, identity encoding kept), never another origin', async (t) => {
  const seen: Array<{ path: string; headers: http.IncomingHttpHeaders }> = [];
  const other = http.createServer((req, res) => {
    seen.push({ path: `other${req.url}`, headers: req.headers });
    res.end('elsewhere');
  });
  const otherPort = await listenForTestFile(other);
  const feed = http.createServer((req, res) => {
    seen.push({ path: req.url ?? '', headers: req.headers });
    if (req.url === '/r/moved') res.writeHead(302, { location: `http://127.0.0.1:${otherPort}/x` }).end();
    else res.end('here');
  });
  const feedUrl = `http://127.0.0.1:${await listenForTestFile(feed)}/r/`;
  const pool = poolFor(t);
  const upstream: UpstreamSettings = {
    tls_verify: true,
    headers: [
      { name: 'X-Mirror-Token', value: 'ours' },
      { name: 'User-Agent', value: 'mirror-bot/1' },
      { name: 'Accept-Encoding', value: 'gzip' },
    ],
  };
  const r = await upstreamGet(pool, `${feedUrl}f`, { feed: feedUrl, upstream });
  assert.equal(await r.body.text(), 'here');
  const moved = await upstreamGet(pool, `${feedUrl}moved`, { feed: feedUrl, upstream });
  assert.equal(await moved.body.text(), 'elsewhere');

  const at = (p: string) => seen.find((s) => s.path === p)?.headers;
  assert.equal(at('/r/f')?.['x-mirror-token'], 'ours');
  assert.equal(at('/r/f')?.['user-agent'], 'mirror-bot/1');
  assert.equal(at('/r/f')?.['accept-encoding'], 'identity');
  assert.equal(at('/r/moved')?.['x-mirror-token'], 'ours');
  assert.equal(at('other/x')?.['x-mirror-token'], undefined, 'not sent to another origin');
  assert.equal(at('other/x')?.['user-agent'], 'pulp-lazy');
});

test('max_connections: at most N responses open at once to the feed; the default allows more', async (t) => {
  const up = await startSlowUpstream();
  up.delayMs = 20;
  up.files.set('/r/slow', Buffer.alloc(8 * 1024, 1));
  const pool = poolFor(t);
  const fetchAll = async (upstream: UpstreamSettings) => {
    const feed = `${up.base}/r/`;
    await Promise.all(
      Array.from({ length: 3 }, async () => {
        const r = await upstreamGet(pool, `${feed}slow`, { feed, upstream });
        await r.body.arrayBuffer();
      }),
    );
  };
  await fetchAll({ tls_verify: true, max_connections: 1 });
  assert.equal(up.maxOpen, 1);
  await fetchAll({ tls_verify: true });
  assert.equal(up.maxOpen, 3);
});

/** undici's Agent and ProxyAgent say whether close() was called; the Dispatcher type does not. */
const isClosed = (d: object) => (d as { closed: boolean }).closed;

test('dispatchers: one per settings (max_connections included); one unused for IDLE_CLOSE_MS is closed', () => {
  let now = 0;
  const pool = new DispatcherPool(TIMEOUTS, { clock: () => now });
  const a = pool.get({ tls_verify: true, client_cert: 'A' });
  assert.equal(pool.get({ tls_verify: true, client_cert: 'A' }), a);
  const limited = pool.get({ tls_verify: true, client_cert: 'A', max_connections: 2 });
  assert.notEqual(limited, a);
  now = IDLE_CLOSE_MS / 2;
  assert.equal(pool.get({ tls_verify: true, client_cert: 'A' }), a, 'used again: kept');
  now = IDLE_CLOSE_MS + 1;
  const b = pool.get({ tls_verify: true, client_cert: 'B' });
  assert.equal(isClosed(limited), true, 'idle since 0: closed');
  assert.equal(isClosed(a), false, 'used at IDLE_CLOSE_MS / 2: kept');
  assert.equal(pool.size, 2);
  now = 2 * IDLE_CLOSE_MS;
  pool.get({ tls_verify: true, client_cert: 'B' });
  assert.equal(isClosed(a), true);
  assert.equal(isClosed(b), false);
  return pool.close();
});

test('a dispatcher closed for being idle lets the download still running on it finish', async () => {
  const up = await startSlowUpstream();
  up.delayMs = 10;
  const body = Buffer.alloc(32 * 1024, 7);
  up.files.set('/r/long', body);
  let now = 0;
  const pool = new DispatcherPool(TIMEOUTS, { clock: () => now });
  const feed = `${up.base}/r/`;
  const old = { tls_verify: true, headers: [{ name: 'X-Key', value: 'old' }], max_connections: 3 };
  const running = await upstreamGet(pool, `${feed}long`, { feed, upstream: old });
  now = IDLE_CLOSE_MS + 1;
  const fresh = await upstreamGet(pool, `${feed}long`, { feed, upstream: { ...old, max_connections: 4 } });
  assert.equal(pool.size, 1, 'the old dispatcher left the pool');
  assert.deepEqual(Buffer.from(await running.body.arrayBuffer()), body);
  assert.deepEqual(Buffer.from(await fresh.body.arrayBuffer()), body);
  await pool.close();
});

test('streamer repository cache: a changed repository is used from two cache periods after the change, however idle', async () => {
  const db = await testDatabase('upstream-settings');
  await addRepo(db, 'imp-live', { headers: [{ name: 'X-Version', value: 'old' }] });
  let now = 1_000_000;
  const ttl = 3000;
  const lookup = createCatalogLookup(db, { clock: () => now, ttlMs: ttl });
  const version = async () => (await lookup.repo('imp-live'))?.upstream.headers?.[0]?.value;
  assert.equal(await version(), 'old');
  await db.repos.updateOne(
    { _id: 'imp-live' },
    { $set: { 'upstream.headers': [{ name: 'X-Version', value: 'new' }] } },
  );
  // Within the period: the cached one.
  now += ttl - 1;
  assert.equal(await version(), 'old');
  // Idle for long: the first request after it reads the repository again before using it.
  now += 60 * ttl;
  assert.equal(await version(), 'new');
});
