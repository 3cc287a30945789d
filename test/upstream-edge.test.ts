/**
 * Upstream answers node:http would never send, from the raw-socket edge
 * upstream (test/helpers/edge-upstream.ts), through a sync (PULP_MANIFEST),
 * a miss through `serve` and a sweep: bodies delimited by EOF (HTTP/1.0,
 * HTTP/1.1 with Connection: close), chunked, a large body followed at once by
 * the end of the connection while the client is slow, Content-Encoding: gzip
 * on a .gz file (the bytes as stored), and failures that must store nothing:
 * a body shorter than its Content-Length, a reset and a stall mid-body.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { edgeRepo, manifestOf, serveEdge, sweepEdge, syncEdge } from './helpers/edge-repo.ts';
import {
  chunked,
  closeAfter,
  type EdgeRoute,
  gzipLabelled,
  redirect,
  resetMidBody,
  shortBody,
  sized,
  stall,
  startEdgeUpstream,
  untilEof,
} from './helpers/edge-upstream.ts';
import { bytes, eventually, exists, fetchRaw } from './helpers/streamer.ts';
import { generateYumRepo } from './helpers/yum-primary.ts';

const dir = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-edge-'));
after(() => rm(dir, { recursive: true, force: true }));
const edge = await startEdgeUpstream(dir);

const BIG = 8 << 20;
const files = new Map<string, Buffer>();
const routes = new Map<string, (b: Buffer) => EdgeRoute>([
  ['eof10.bin', (b) => untilEof(b, '1.0')],
  ['eof11.bin', (b) => untilEof(b, '1.1')],
  ['chunked.bin', (b) => chunked(b, 7000)],
  ['big.bin', (b) => closeAfter(b)],
  ['repodata.xml.gz', (b) => gzipLabelled(b)],
  ['short.bin', (b) => shortBody(b, b.length - 1000)],
  ['reset.bin', (b) => resetMidBody(b, 64 * 1024)],
  ['stall.bin', (b) => stall(b, 64 * 1024)],
]);
const GOOD = ['eof10.bin', 'eof11.bin', 'chunked.bin', 'big.bin', 'repodata.xml.gz'];
const BAD = ['short.bin', 'reset.bin', 'stall.bin'];
let seed = 1;
for (const name of routes.keys()) {
  const size = name === 'big.bin' ? BIG : 200_000 + seed;
  files.set(name, name.endsWith('.gz') ? gzipSync(bytes(size, seed)) : bytes(size, seed));
  seed++;
}
for (const [name, route] of routes) edge.routes.set(`/e/${name}`, route(files.get(name)!));
const manifest = manifestOf(files);
edge.routes.set('/e/PULP_MANIFEST', untilEof(manifest, '1.0'));
const body = (name: string) => files.get(name)!;
// A short body idle timeout, so that the stall ends in a failure soon.
const streamer = { body_idle_timeout: '2s' };

test('sync: a manifest delimited by EOF (HTTP/1.0 and 1.1) or chunked is read whole', async () => {
  edge.routes.set('/e11/PULP_MANIFEST', untilEof(manifest, '1.1'));
  edge.routes.set('/ec/PULP_MANIFEST', chunked(manifest, 100));
  for (const prefix of ['/e', '/e11', '/ec']) {
    const repo = await edgeRepo(`edge-sync${prefix.slice(1)}`, `${edge.base}${prefix}/`, files);
    const s = await syncEdge(repo);
    assert.equal(s.units, files.size, prefix);
    assert.deepEqual(await repo.temps(), []);
  }
});

test('sync: a manifest cut short, reset or stalled mid-body fails with FeedUnreachable, nothing synced', async () => {
  const long = Buffer.concat([manifest, Buffer.from('\n'.repeat(200_000))]);
  const cases: Array<[string, EdgeRoute, RegExp]> = [
    ['/ms', shortBody(long, 100_000), /cannot fetch .*\/ms\/PULP_MANIFEST: /],
    [
      '/mr',
      resetMidBody(long, 100_000),
      /cannot fetch .*\/mr\/PULP_MANIFEST: .*ECONNRESET|other side closed/,
    ],
    ['/mt', stall(long, 100_000), /cannot fetch .*\/mt\/PULP_MANIFEST: .*UND_ERR_BODY_TIMEOUT/],
  ];
  for (const [prefix, route, why] of cases) {
    edge.routes.set(`${prefix}/PULP_MANIFEST`, route);
    const repo = await edgeRepo(`edge-syncbad${prefix.slice(1)}`, `${edge.base}${prefix}/`, files);
    await assert.rejects(
      syncEdge(repo, { connectMs: 5000, headersMs: 5000, bodyIdleMs: 1000 }),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'PL_FEED_UNREACHABLE', prefix);
        assert.match(err.message, why);
        return true;
      },
    );
    assert.equal(await repo.db.units.countDocuments({}), 0);
    assert.deepEqual(await repo.temps(), []);
  }
});

test('miss through serve: every framing streams and saves the bytes as sent; broken bodies store nothing', async () => {
  const repo = await edgeRepo('edge-serve', `${edge.base}/e/`, files, { streamer });
  await syncEdge(repo);
  const base = await serveEdge(repo);
  for (const name of GOOD.filter((n) => n !== 'big.bin')) {
    const got = await fetchRaw(`${base}/pulp/content/r/${name}`);
    assert.equal(got.status, 200, name);
    assert.ok(got.complete && got.body.equals(body(name)), `${name}: the bytes as upstream sent them`);
    assert.equal(got.headers['content-encoding'], undefined, `${name}: no Content-Encoding for the client`);
    assert.ok((await readFile(repo.storagePath(name))).equals(body(name)), `${name}: saved as sent`);
    assert.equal((await repo.unitOf(name))?.downloaded, true, name);
  }
  for (const name of BAD) {
    const got = await fetchRaw(`${base}/pulp/content/r/${name}`);
    assert.equal(got.complete, false, `${name}: the client's response is cut, never complete`);
    assert.ok(got.body.length < body(name).length, name);
    await eventually(async () => (await repo.temps()).length === 0, `${name}: temp file removed`);
    assert.equal(await exists(repo.storagePath(name)), false, `${name}: nothing saved`);
    assert.equal((await repo.unitOf(name))?.downloaded, false, name);
  }
  const again = await fetchRaw(`${base}/pulp/content/r/eof10.bin`);
  assert.equal(again.status, 200, 'serve still answers');
});

test('miss through serve: 8 MiB then Connection: close while the client does not read; the client gets every byte', async () => {
  const repo = await edgeRepo('edge-big', `${edge.base}/e/`, files, { streamer });
  await syncEdge(repo);
  const base = await serveEdge(repo);
  const got = await new Promise<Buffer>((resolve, reject) => {
    http
      .get(`${base}/pulp/content/r/big.bin`, { agent: false }, (res) => {
        assert.equal(res.statusCode, 200);
        res.pause();
        // The slow client: reads nothing until upstream sent everything and closed, and the file is saved.
        eventually(async () => (await repo.unitOf('big.bin'))?.downloaded === true, 'big.bin saved').then(
          () => {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.on('end', () => resolve(Buffer.concat(chunks)));
            res.on('error', reject);
            res.resume();
          },
          reject,
        );
      })
      .on('error', reject);
  });
  assert.equal(got.length, BIG);
  assert.ok(got.equals(body('big.bin')));
  assert.ok((await readFile(repo.storagePath('big.bin'))).equals(body('big.bin')));
  assert.deepEqual(await repo.temps(), []);
});

test('sweep: every framing stored as sent; broken bodies fail their units and store nothing', async () => {
  const repo = await edgeRepo('edge-sweep', `${edge.base}/e/`, files, { streamer });
  await syncEdge(repo);
  const s = await sweepEdge(repo);
  const idOf = async (name: string) => (await repo.unitOf(name))!._id;
  assert.deepEqual(s.failed.map((f) => f.unit_id).sort(), (await Promise.all(BAD.map(idOf))).sort());
  assert.equal(s.stored, GOOD.length);
  for (const name of GOOD) {
    assert.ok((await readFile(repo.storagePath(name))).equals(body(name)), `${name}: saved as sent`);
    assert.equal((await repo.unitOf(name))?.downloaded, true, name);
  }
  for (const name of BAD) {
    assert.equal(await exists(repo.storagePath(name)), false, `${name}: nothing saved`);
    assert.equal((await repo.unitOf(name))?.downloaded, false, name);
  }
  assert.deepEqual(await repo.temps(), [], 'no temp file left');
});

test('yum sync: repomd.xml and primary.xml.gz redirected to another host, the .gz labelled Content-Encoding: gzip: verified and stored as sent', async () => {
  const yum = await generateYumRepo(5, dir);
  for (const [rel, b] of yum.files) {
    const served = Buffer.from(b);
    edge.routes.set(`/y/${rel}`, redirect(rel.endsWith('.xml') ? 302 : 307, `${edge.other}/ymirror/${rel}`));
    edge.routes.set(`/ymirror/${rel}`, rel.endsWith('.gz') ? gzipLabelled(served) : sized(served));
  }
  const from = edge.requests.length;
  const repo = await edgeRepo('edge-yum', `${edge.base}/y/`, files, { type: 'yum', basicAuth: 'joe:s3cret' });
  const s = await syncEdge(repo);
  assert.equal(await repo.db.units.countDocuments({ unit_type_id: 'rpm' }), 5, JSON.stringify(s));
  for (const [rel, b] of yum.files) {
    const published = await readFile(path.join(repo.config.paths.published, 'r', rel));
    assert.ok(published.equals(Buffer.from(b)), `${rel}: stored byte-identical`);
  }
  const reqs = edge.requests.slice(from);
  assert.ok(reqs.some((q) => q.listener === 'other' && q.path.endsWith('-primary.xml.gz')));
  for (const q of reqs) {
    assert.equal(q.headers['accept-encoding'], 'identity');
    assert.equal(q.headers.authorization === undefined, q.listener !== 'base', `${q.listener} ${q.path}`);
  }
  assert.deepEqual(await repo.temps(), []);
});
