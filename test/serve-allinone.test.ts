/**
 * The all-in-one server: a synced file repository, never downloaded, served
 * by one process: miss streams upstream bytes and saves them, second request
 * is a local hit, single-flight, Range on hits and misses, signed URL route.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { test } from 'node:test';
import { parseConfig } from '../src/config.ts';
import { createAllInOne } from '../src/daemons/serve.ts';
import { connect } from '../src/db/index.ts';
import { silentLogger } from '../src/log.ts';
import { buildRepo, createRepo } from '../src/repos/index.ts';
import { generateKeys, loadPrivateKey, signUrl } from '../src/signing/index.ts';
import { unitStoragePath } from '../src/storage/index.ts';
import { mongoUrl } from './helpers/db.ts';
import { testEnv } from './helpers/env.ts';
import { type Reply, request } from './helpers/http.ts';
import { syncIn } from './helpers/sync.ts';

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const body = (n: number, seed: number) => {
  const b = Buffer.alloc(n);
  for (let i = 0; i < n; i++) b[i] = (i * 31 + seed * 7) & 0xff;
  return b;
};

function get(
  base: string,
  p: string,
  headers: http.OutgoingHttpHeaders = {},
  method = 'GET',
): Promise<Reply> {
  return request(`${base}${p}`, { headers, method });
}

async function setup(label: string, files: Map<string, Buffer>, opts: { slowHeadersMs?: number } = {}) {
  const env = await testEnv(label);
  const config = parseConfig(
    { database: { name: env.dbName }, paths: env.config.paths, serve: { listen: '127.0.0.1:0' } },
    'test',
    { MONGODB_URL: mongoUrl() },
  );
  await generateKeys(config.paths.keys);
  // Upstream: the manifest plus the files, counting GETs per path.
  const gets = new Map<string, number>();
  const manifest = [...files].map(([rel, b]) => `${rel},${sha256(b)},${b.length}`).join('\n');
  const upstream = http.createServer((req, res) => {
    const p = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname).replace(/^\/repo\//, '');
    gets.set(p, (gets.get(p) ?? 0) + 1);
    const b = p === 'PULP_MANIFEST' ? Buffer.from(manifest) : files.get(p);
    if (!b) return void res.writeHead(404).end();
    const send = () => {
      res.writeHead(200, { 'content-length': b.length });
      // Two halves, so concurrent clients really overlap with the fetch.
      res.write(b.subarray(0, b.length >> 1));
      setTimeout(() => res.end(b.subarray(b.length >> 1)), 30);
    };
    if (opts.slowHeadersMs && p !== 'PULP_MANIFEST') setTimeout(send, opts.slowHeadersMs);
    else send();
  });
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  const feed = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/repo/`;

  const db = await connect(mongoUrl(), env.dbName);
  await createRepo(db, await buildRepo({ name: 'r', type: 'file', feed }));
  await syncIn(db, config.paths, 'r', { timeouts: { connectMs: 5000, headersMs: 5000, bodyIdleMs: 5000 } });
  gets.clear();

  const server = createAllInOne(config, { db, logger: silentLogger });
  const addr = (await server.listen()) as AddressInfo;
  const base = `http://127.0.0.1:${addr.port}`;
  return {
    config,
    db,
    base,
    gets,
    storagePath: (rel: string) =>
      unitStoragePath(config.paths.storage, 'file', sha256(files.get(rel)!), rel.split('/').pop()!),
    // The upstream and the database close even when the server's close fails, so a failure is
    // reported instead of keeping the test process alive.
    async stop() {
      try {
        await server.close({ deadlineMs: 2000 });
      } finally {
        upstream.closeAllConnections();
        upstream.close();
        await db.close();
      }
    },
  };
}

test('miss streams the upstream bytes and saves them; the next request is a local hit', async (t) => {
  const files = new Map([['pkgs/a.bin', body(300_000, 1)]]);
  const s = await setup('aio-miss', files);
  t.after(() => s.stop());
  const first = await get(s.base, '/pulp/content/r/pkgs/a.bin');
  assert.equal(first.status, 200);
  assert.ok(first.body.equals(files.get('pkgs/a.bin')!));
  assert.equal(s.gets.get('pkgs/a.bin'), 1);
  // Saved and verified; unit downloaded; no deferred entry needed.
  const stored = await readFile(s.storagePath('pkgs/a.bin'));
  assert.ok(stored.equals(files.get('pkgs/a.bin')!));
  const unit = await s.db.units.findOne({ 'files.storage_path': s.storagePath('pkgs/a.bin') });
  assert.equal(unit?.downloaded, true);
  assert.equal(await s.db.deferred.countDocuments({}), 0);

  const second = await get(s.base, '/pulp/content/r/pkgs/a.bin');
  assert.equal(second.status, 200);
  assert.ok(second.body.equals(files.get('pkgs/a.bin')!));
  assert.ok(second.headers.etag, 'hit carries an ETag');
  assert.equal(s.gets.get('pkgs/a.bin'), 1, 'no second upstream GET');
  const head = await get(s.base, '/pulp/content/r/pkgs/a.bin', {}, 'HEAD');
  assert.equal(head.status, 200);
  assert.equal(head.headers['content-length'], '300000');
  const cond = await get(s.base, '/pulp/content/r/pkgs/a.bin', { 'if-none-match': second.headers.etag! });
  assert.equal(cond.status, 304);
  assert.equal((await get(s.base, '/pulp/content/r/nothing-here')).status, 404);
  assert.equal((await get(s.base, '/pulp/content/r/%2e%2e/%2e%2e/etc/passwd')).status, 403);
});

test('hits carry the Cache-Control of their path, 304s too, and so do misses streamed under the content URL', async (t) => {
  const files = new Map([
    ['repodata/repomd.xml', body(500, 2)],
    ['Packages/x.rpm', body(700, 3)],
    ['other.bin', body(300, 4)],
  ]);
  const s = await setup('aio-cache', files);
  t.after(() => s.stop());
  for (const [rel, value] of [
    ['repodata/repomd.xml', 'no-cache'],
    ['Packages/x.rpm', 'public, max-age=31536000, immutable'],
    ['other.bin', undefined],
  ] as const) {
    const miss = await get(s.base, `/pulp/content/r/${rel}`);
    assert.equal(miss.status, 200, rel);
    // Not the streamer's day-long max-age: a cache would keep repomd.xml for a day.
    assert.equal(miss.headers['cache-control'], value, `miss ${rel}`);
    const hit = await get(s.base, `/pulp/content/r/${rel}`);
    assert.equal(hit.status, 200, rel);
    assert.equal(s.gets.get(rel), 1, `${rel}: the second request is a hit`);
    assert.equal(hit.headers['cache-control'], value, rel);
    const cond = await get(s.base, `/pulp/content/r/${rel}`, { 'if-none-match': hit.headers.etag! });
    assert.equal(cond.status, 304, rel);
    assert.equal(cond.headers['cache-control'], value, `304 ${rel}`);
  }
});

test('50 concurrent first requests: exactly 1 upstream GET, 50 correct bodies', async (t) => {
  const files = new Map([['big.iso', body(2_000_000, 2)]]);
  const s = await setup('aio-flight', files, { slowHeadersMs: 300 });
  t.after(() => s.stop());
  const all = await Promise.all(Array.from({ length: 50 }, () => get(s.base, '/pulp/content/r/big.iso')));
  for (const r of all) {
    assert.equal(r.status, 200);
    assert.ok(r.body.equals(files.get('big.iso')!));
  }
  assert.equal(s.gets.get('big.iso'), 1);
});

test('Range on misses and on hits: single, suffix, unsatisfiable', async (t) => {
  const files = new Map([
    ['m1.bin', body(100_000, 3)],
    ['m2.bin', body(100_000, 4)],
    ['m3.bin', body(100_000, 5)],
  ]);
  const s = await setup('aio-range', files);
  t.after(() => s.stop());
  const check = async (rel: string, range: string, status: number, slice?: [number, number]) => {
    const r = await get(s.base, `/pulp/content/r/${rel}`, { range });
    assert.equal(r.status, status, `${rel} ${range}`);
    if (slice) {
      assert.ok(r.body.equals(files.get(rel)!.subarray(slice[0], slice[1])), `${rel} ${range} bytes`);
      assert.equal(r.headers['content-range'], `bytes ${slice[0]}-${slice[1] - 1}/100000`);
    } else {
      assert.equal(r.headers['content-range'], 'bytes */100000');
    }
  };
  // Misses (each file's first request carries the Range).
  await check('m1.bin', 'bytes=100-199', 206, [100, 200]);
  await check('m2.bin', 'bytes=-500', 206, [99_500, 100_000]);
  await check('m3.bin', 'bytes=200000-', 416);
  // Each miss still saved the whole file.
  for (const rel of ['m1.bin', 'm2.bin']) {
    const stored = await readFile(s.storagePath(rel));
    assert.ok(stored.equals(files.get(rel)!));
  }
  // Hits.
  await check('m1.bin', 'bytes=0-0', 206, [0, 1]);
  await check('m1.bin', 'bytes=-10', 206, [99_990, 100_000]);
  await check('m1.bin', 'bytes=99990-', 206, [99_990, 100_000]);
  await check('m1.bin', 'bytes=100000-100001', 416);
});

test('signed streamer URLs: valid accepted, forged and expired refused', async (t) => {
  const files = new Map([['s.bin', body(10_000, 6)]]);
  const s = await setup('aio-signed', files);
  t.after(() => s.stop());
  const key = loadPrivateKey(s.config.paths.keys);
  const target = `/streamer${s.storagePath('s.bin')}`;
  const ok = signUrl(`${s.base}${target}`, {
    privateKey: key,
    ttlMs: 60_000,
    extensions: { remote_ip: '127.0.0.1' },
  });
  const good = await get(s.base, ok.slice(s.base.length));
  assert.equal(good.status, 200);
  assert.ok(good.body.equals(files.get('s.bin')!));
  // A signed URL names one stored file, which never changes: the streamer's freshness, for Squid.
  assert.match(good.headers['cache-control'] ?? '', /^public, max-age=\d+, s-maxage=\d+$/);
  const forged = ok.replace(
    /signature=([A-Za-z0-9_-])/,
    (_m, c: string) => `signature=${c === 'A' ? 'B' : 'A'}`,
  );
  assert.equal((await get(s.base, forged.slice(s.base.length))).status, 403);
  const otherIp = signUrl(`${s.base}${target}`, {
    privateKey: key,
    ttlMs: 60_000,
    extensions: { remote_ip: '10.9.9.9' },
  });
  assert.equal((await get(s.base, otherIp.slice(s.base.length))).status, 403);
  const expired = signUrl(`${s.base}${target}`, {
    privateKey: key,
    ttlMs: 1000,
    now: Date.now() - 60_000,
    extensions: { remote_ip: '127.0.0.1' },
  });
  assert.equal((await get(s.base, expired.slice(s.base.length))).status, 403);
  assert.equal((await get(s.base, target)).status, 403, 'unsigned');
});
