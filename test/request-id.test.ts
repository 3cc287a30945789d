/**
 * Request ids (#21 §3): the safe-token check, the `rid` parameter that a
 * redirect carries unsigned, and one id through `serve` for a miss: the
 * content and streamer log lines, the response and the upstream request.
 */
import assert from 'node:assert/strict';
import { createHash, generateKeyPairSync } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { parseConfig } from '../src/config.ts';
import { createAllInOne } from '../src/daemons/serve.ts';
import { connect } from '../src/db/index.ts';
import { requestIdParam, safeRequestId, withRequestId } from '../src/http/request-id.ts';
import { createLogger } from '../src/log.ts';
import { buildRepo, createRepo } from '../src/repos/index.ts';
import { generateKeys, signUrl, stripSignature, verifyUrl } from '../src/signing/index.ts';
import { mongoUrl } from './helpers/db.ts';
import { testEnv } from './helpers/env.ts';
import { syncIn } from './helpers/sync.ts';
import { startUpstream } from './helpers/upstream.ts';

test('a request id is a safe token of 1 to 64 characters (mod_unique_id ids too)', () => {
  for (const ok of [
    'a',
    'req-1',
    'A.b_c-9',
    'ZXk0@fwAAAEAAF9eAAAAAAAA',
    'x'.repeat(64),
    '0f8c0e4e-7d5a-4c3e-9f57-0c5e2a0b7a11',
  ]) {
    assert.equal(safeRequestId(ok), ok);
  }
  for (const bad of [
    '',
    'x'.repeat(65),
    'a b',
    'a/b',
    'a\nb',
    'é',
    '<script>',
    'a%20b',
    undefined,
    ['a', 'b'],
    7,
  ]) {
    assert.equal(safeRequestId(bad), undefined, JSON.stringify(bad));
  }
});

test('the rid parameter: read when there is one; added before the signature, which stays last', () => {
  assert.equal(requestIdParam('/s/f.iso?policy=p&signature=s&rid=abc'), 'abc');
  assert.equal(requestIdParam('/s/f.iso?rid=abc#frag'), 'abc');
  assert.equal(requestIdParam('/s/f.iso?rid=a&rid=b'), undefined, 'two: neither');
  assert.equal(requestIdParam('/s/f.iso?grid=abc'), undefined);
  assert.equal(requestIdParam('/s/f.iso'), undefined);
  assert.equal(
    withRequestId('http://h/s/f?policy=p&signature=s', 'r1'),
    'http://h/s/f?policy=p&rid=r1&signature=s',
  );
  assert.equal(withRequestId('http://h/s/f', 'r1'), 'http://h/s/f?rid=r1');
});

test('rid is not signed: a signed URL verifies with it, and stripping removes it (the cache key)', () => {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const signed = signUrl('http://h:1/streamer/s/f.iso?v=1', { privateKey, ttlMs: 60_000, now: 1_000_000 });
  const withId = withRequestId(signed, 'req-42');
  assert.equal(
    verifyUrl(withId, { publicKey, now: 1_000_000 }).resource,
    verifyUrl(signed, { publicKey, now: 1_000_000 }).resource,
  );
  assert.equal(stripSignature(withId), stripSignature(signed));
  assert.equal(stripSignature(withId), '/streamer/s/f.iso?v=1');
});

/** A debug logger whose JSON lines land in `lines`. */
function captured() {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { logger: createLogger({ level: 'debug', destination }), lines };
}

test('serve: a miss has one id in content and streamer log lines, the response and the upstream request', async (t) => {
  const env = await testEnv('reqid-serve');
  const config = parseConfig(
    { database: { name: env.dbName }, paths: env.config.paths, serve: { listen: '127.0.0.1:0' } },
    'test',
    { MONGODB_URL: mongoUrl() },
  );
  await generateKeys(config.paths.keys);
  const files = new Map(['a.bin', 'b.bin', 'c.bin'].map((n, i) => [n, Buffer.alloc(50_000 + i, i + 1)]));
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  const up = await startUpstream(
    new Map<string, Buffer | string>([
      ['/repo/PULP_MANIFEST', [...files].map(([n, b]) => `${n},${sha(b)},${b.length}`).join('\n')],
      ...[...files].map(([n, b]): [string, Buffer] => [`/repo/${n}`, b]),
    ]),
  );
  const db = await connect(mongoUrl(), env.dbName);
  t.after(() => db.close());
  await createRepo(db, await buildRepo({ name: 'r', type: 'file', feed: `${up.url}repo/` }));
  await syncIn(db, config.paths, 'r', { timeouts: { connectMs: 5000, headersMs: 5000, bodyIdleMs: 5000 } });
  const { logger, lines } = captured();
  const server = createAllInOne(config, { db, logger });
  const base = `http://127.0.0.1:${((await server.listen()) as AddressInfo).port}`;
  t.after(() => server.close({ deadlineMs: 2000 }));

  const miss = async (name: string, headers: Record<string, string> = {}) => {
    const res = await fetch(`${base}/pulp/content/r/${name}`, { headers });
    assert.equal(res.status, 200);
    assert.deepEqual(Buffer.from(await res.arrayBuffer()), files.get(name));
    const id = res.headers.get('x-request-id') ?? '';
    await new Promise((r) => setTimeout(r, 50)); // the flight's last lines (saved, recorded)
    const mine = lines.filter((l) => l.reqId === id);
    return {
      id,
      mine,
      modules: new Set(mine.map((l) => l.module)),
      upstream: up.requestIds.get(`/repo/${name}`),
    };
  };

  // No id sent: the content daemon makes one, and it goes all the way.
  const a = await miss('a.bin');
  assert.match(a.id, /^[0-9a-f-]{36}$/);
  assert.deepEqual([...a.modules].sort(), ['content', 'streamer'], JSON.stringify(a.mine));
  assert.ok(
    a.mine.some((l) => l.msg === 'miss'),
    'content logged the miss',
  );
  assert.ok(
    a.mine.some((l) => l.msg === 'request' && l.outcome === 'streamed'),
    'streamer logged the request',
  );
  assert.ok(
    a.mine.some((l) => l.msg === 'fetch complete'),
    'the flight logged its fetch',
  );
  assert.deepEqual(a.upstream, [a.id], 'the upstream request carried the id');

  // A safe id from the client is kept; an unsafe one is replaced.
  const b = await miss('b.bin', { 'X-Request-Id': 'client-req.7' });
  assert.equal(b.id, 'client-req.7');
  assert.deepEqual(b.upstream, ['client-req.7']);
  assert.deepEqual([...b.modules].sort(), ['content', 'streamer']);
  const c = await miss('c.bin', { 'X-Request-Id': 'bad id!' });
  assert.match(c.id, /^[0-9a-f-]{36}$/);
  assert.deepEqual(c.upstream, [c.id]);
});
