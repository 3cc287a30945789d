/**
 * Content daemon: hits (X-Sendfile), misses (302 to a signed URL), 404s,
 * directory indexes, metrics.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, readFile, rm, stat, utimes, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';
import { verifyUrl } from '../src/signing/index.ts';
import { contentConfig, digestOf, insertRepo, makeTree, request, startDaemon } from './helpers/content.ts';
import { testDatabase } from './helpers/db.ts';

const execFileP = promisify(execFile);
const T0 = Date.UTC(2030, 0, 1, 12, 0, 0);
const TTL_MS = 90_000;

const tree = await makeTree('content-serve');
const db = await testDatabase('content_serve');
await insertRepo(db, 'rhel9', 'rhel9');
const versioned = await tree.repo('rhel9');

const rpm = await tree.store('rpm', digestOf('foo'), 'foo-1.0-1.x86_64.rpm', 'RPM BYTES');
const rpm2 = await tree.store('rpm', digestOf('bar'), 'bar-2.0-1.x86_64.rpm', 'OTHER RPM');
const gz = await tree.store('file', digestOf('primary'), 'primary.xml.gz', 'GZIP BYTES');
const deb = await tree.store('deb', digestOf('hello'), 'hello_1.0_amd64.deb', 'DEB');
const json = await tree.store('file', digestOf('json'), 'PULP_MANIFEST.json', '{}');
const odd = await tree.store('file', digestOf('odd'), 'odd 100%+x.bin', 'ODD');
await tree.link('rhel9', 'Packages/f/foo-1.0-1.x86_64.rpm', rpm);
await tree.link('rhel9', 'Packages/b/bar-2.0-1.x86_64.rpm', rpm2);
await tree.link('rhel9', 'repodata/abc-primary.xml.gz', gz);
await tree.link('rhel9', 'pool/hello_1.0_amd64.deb', deb);
await tree.link('rhel9', 'PULP_MANIFEST.json', json);
await tree.link('rhel9', 'odd 100%+x.bin', odd);
// A metadata file written into the published tree itself (no link).
await writeFile(path.join(versioned, 'repodata', 'repomd.xml'), '<repomd/>');

const missing = tree.storagePath('rpm', digestOf('lazy'), 'lazy-3.0-1.noarch.rpm');
await tree.link('rhel9', 'Packages/l/lazy-3.0-1.noarch.rpm', missing);
const missingOdd = tree.storagePath('rpm', digestOf('lazy2'), 'libstdc++ 1:2.rpm');
await tree.link('rhel9', 'Packages/l/libstdc++.rpm', missingOdd);

const main = await startDaemon(contentConfig(tree, { signing: { ttl: '90s' } }), { db, clock: () => T0 });

test('a stored file is a 200 with X-Sendfile (absolute storage path), type and ETag, empty body', async () => {
  const r = await main.get('/pulp/content/rhel9/Packages/f/foo-1.0-1.x86_64.rpm');
  assert.equal(r.status, 200);
  assert.equal(r.headers['x-sendfile'], rpm);
  assert.ok(path.isAbsolute(r.headers['x-sendfile'] as string));
  assert.equal(await readFile(r.headers['x-sendfile'] as string, 'utf8'), 'RPM BYTES');
  assert.equal(r.headers['content-type'], 'application/x-rpm');
  assert.equal(r.headers['content-length'], '0');
  assert.equal(r.body, '');
  assert.equal(r.headers['content-encoding'], undefined);
  assert.match(r.headers.etag ?? '', /^"[0-9a-f]{64}-[0-9a-f]{12}"$/);
  assert.ok(r.headers.etag?.startsWith(`"${digestOf('foo')}`));
  assert.equal(r.headers['last-modified'], (await stat(rpm)).mtime.toUTCString());
  assert.equal(r.headers['cache-control'], 'public, max-age=31536000, immutable');
});

test('the ETag is stable across requests and differs between files', async () => {
  const a1 = await main.get('/pulp/content/rhel9/Packages/f/foo-1.0-1.x86_64.rpm');
  const a2 = await main.get('/pulp/content/rhel9/Packages/f/foo-1.0-1.x86_64.rpm');
  const b = await main.get('/pulp/content/rhel9/Packages/b/bar-2.0-1.x86_64.rpm');
  const c = await main.get('/pulp/content/rhel9/repodata/repomd.xml');
  const c2 = await main.get('/pulp/content/rhel9/repodata/repomd.xml');
  assert.ok(a1.headers.etag);
  assert.equal(a1.headers.etag, a2.headers.etag);
  assert.notEqual(a1.headers.etag, b.headers.etag);
  assert.ok(c.headers.etag);
  assert.equal(c.headers.etag, c2.headers.etag);
  assert.notEqual(c.headers.etag, a1.headers.etag);
});

test('HEAD gives the same headers as GET', async () => {
  for (const p of [
    '/pulp/content/rhel9/Packages/f/foo-1.0-1.x86_64.rpm',
    '/pulp/content/rhel9/repodata/abc-primary.xml.gz',
  ]) {
    const g = await main.get(p);
    const h = await main.head(p);
    assert.equal(h.status, 200);
    for (const name of ['x-sendfile', 'content-type', 'etag', 'last-modified', 'content-length']) {
      assert.equal(h.headers[name], g.headers[name], name);
    }
    assert.equal(h.body, '');
  }
});

test('content types come from the extension; .gz is application/gzip without Content-Encoding', async () => {
  const cases: Array<[string, string]> = [
    ['repodata/abc-primary.xml.gz', 'application/gzip'],
    ['pool/hello_1.0_amd64.deb', 'application/vnd.debian.binary-package'],
    ['PULP_MANIFEST.json', 'application/json'],
    ['repodata/repomd.xml', 'application/xml'],
    ['odd%20100%25+x.bin', 'application/octet-stream'],
  ];
  for (const [p, type] of cases) {
    const r = await main.get(`/pulp/content/rhel9/${p}`);
    assert.equal(r.status, 200, p);
    assert.equal(r.headers['content-type'], type, p);
    assert.equal(r.headers['content-encoding'], undefined, p);
  }
});

test('a file in the published tree itself is served from there', async () => {
  const r = await main.get('/pulp/content/rhel9/repodata/repomd.xml');
  assert.equal(r.status, 200);
  const file = r.headers['x-sendfile'] as string;
  assert.ok(file.startsWith(`${tree.paths.published}/`), file);
  assert.equal(await readFile(file, 'utf8'), '<repomd/>');
});

test('X-Sendfile is percent-encoded where mod_xsendfile would decode it', async () => {
  const r = await main.get('/pulp/content/rhel9/odd%20100%25+x.bin');
  assert.equal(r.status, 200);
  const value = r.headers['x-sendfile'] as string;
  assert.ok(value.endsWith('/odd%20100%25+x.bin'), value);
  assert.equal(decodeURIComponent(value), odd);
});

test('a file rewritten in place is answered with its new ETag and Last-Modified at once', async () => {
  const file = path.join(versioned, 'repodata', 'rewritten.xml');
  await writeFile(file, '<old/>');
  await utimes(file, new Date(T0 - 60_000), new Date(T0 - 60_000));
  const before = await main.get('/pulp/content/rhel9/repodata/rewritten.xml');
  await writeFile(file, '<newer content/>');
  await utimes(file, new Date(T0), new Date(T0));
  const after = await main.get('/pulp/content/rhel9/repodata/rewritten.xml');
  assert.equal(before.status, 200);
  assert.equal(after.status, 200);
  assert.notEqual(after.headers.etag, before.headers.etag);
  assert.equal(after.headers['last-modified'], new Date(T0).toUTCString());
  assert.notEqual(before.headers['last-modified'], after.headers['last-modified']);
});

test('a stored file removed after it was served is a miss (302) on the next request', async () => {
  const stored = await tree.store('rpm', digestOf('gone'), 'gone-1.0-1.noarch.rpm', 'GONE');
  await tree.link('rhel9', 'Packages/g/gone-1.0-1.noarch.rpm', stored);
  const hit = await main.get('/pulp/content/rhel9/Packages/g/gone-1.0-1.noarch.rpm');
  assert.equal(hit.status, 200);
  await rm(stored);
  const miss = await main.get('/pulp/content/rhel9/Packages/g/gone-1.0-1.noarch.rpm');
  assert.equal(miss.status, 302);
  assert.equal(miss.headers['x-sendfile'], undefined);
});

test('a FIFO behind a published link is refused without blocking the daemon', async () => {
  const fifo = tree.storagePath('file', digestOf('fifo'), 'pipe.bin');
  await mkdir(path.dirname(fifo), { recursive: true });
  await execFileP('mkfifo', [fifo]);
  await tree.link('rhel9', 'pipe.bin', fifo);
  // Opening a FIFO for reading would wait for a writer: the answer would never come.
  const r = await main.get('/pulp/content/rhel9/pipe.bin');
  assert.equal(r.status, 403);
  assert.equal((await main.get('/pulp/content/rhel9/Packages/f/foo-1.0-1.x86_64.rpm')).status, 200);
});

test('unknown links and paths are 404', async () => {
  for (const p of [
    '/pulp/content/rhel9/Packages/n/nope.rpm',
    '/pulp/content/nope/x.rpm',
    '/pulp/content/rhel9/Packages/f/foo-1.0-1.x86_64.rpm/',
    '/elsewhere/rhel9/Packages/f/foo-1.0-1.x86_64.rpm',
    '/pulp/content/.versions/',
  ]) {
    const r = await main.get(p);
    assert.equal(r.status, 404, p);
    assert.equal(r.headers['x-sendfile'], undefined);
  }
});

test('a directory is a plain HTML index of its entries', async () => {
  const r = await main.get('/pulp/content/rhel9/Packages/');
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'] ?? '', /^text\/html/);
  assert.match(r.body, /href="\/pulp\/content\/rhel9\/Packages\/f\/">f\/<\/a>/);
  assert.match(r.body, /href="\/pulp\/content\/rhel9\/Packages\/l\/">l\/<\/a>/);
  assert.match(r.body, /href="\/pulp\/content\/rhel9\/">\.\.\/<\/a>/);

  const leaf = await main.get('/pulp/content/rhel9/Packages/l');
  assert.equal(leaf.status, 200);
  assert.match(
    leaf.body,
    /href="\/pulp\/content\/rhel9\/Packages\/l\/lazy-3\.0-1\.noarch\.rpm">lazy-3\.0-1\.noarch\.rpm</,
  );
  assert.match(leaf.body, /href="\/pulp\/content\/rhel9\/Packages\/l\/libstdc\+\+\.rpm"/);

  const root = await main.get('/pulp/content/');
  assert.equal(root.status, 200);
  assert.match(root.body, /href="\/pulp\/content\/rhel9\/">rhel9\/</);
  assert.doesNotMatch(root.body, /\.versions/);

  const head = await main.head('/pulp/content/rhel9/Packages/');
  assert.equal(head.status, 200);
  assert.equal(head.headers['content-length'], r.headers['content-length']);
});

test('a dangling link is a 302 to a signed streamer URL for its storage path, bound to the client', async () => {
  const r = await main.get('/pulp/content/rhel9/Packages/l/lazy-3.0-1.noarch.rpm', {
    Host: 'repo.example:8080',
  });
  assert.equal(r.status, 302);
  assert.equal(r.headers['x-sendfile'], undefined);
  assert.equal(r.headers['cache-control'], 'no-store');
  const location = r.headers.location ?? '';
  // redirect.port 0: the streamer vhost port (apache.streamer_port, 8081), not the request's.
  const unsigned = `http://repo.example:8081/streamer/${missing.slice(1)}`;
  assert.ok(location.startsWith(`${unsigned}?`), location);

  const policy = verifyUrl(location, {
    publicKey: tree.publicKey,
    now: T0,
    extensions: { remote_ip: '127.0.0.1' },
  });
  assert.equal(policy.resource, `/streamer/${missing.slice(1)}`);
  assert.deepEqual(policy.extensions, { remote_ip: '127.0.0.1' });
  assert.throws(
    () => verifyUrl(location, { publicKey: tree.publicKey, now: T0, extensions: { remote_ip: '10.1.2.3' } }),
    { code: 'PL_SIG_EXTENSION_MISMATCH' },
  );

  // HEAD redirects the same way.
  const h = await main.head('/pulp/content/rhel9/Packages/l/lazy-3.0-1.noarch.rpm', {
    Host: 'repo.example:8080',
  });
  assert.equal(h.status, 302);
  assert.equal(h.headers.location, location);
});

test('the signed URL expires after signing.ttl', async () => {
  const r = await main.get('/pulp/content/rhel9/Packages/l/lazy-3.0-1.noarch.rpm', { Host: 'repo.example' });
  const location = r.headers.location ?? '';
  assert.ok(location.startsWith('http://repo.example:8081/streamer/'), location);
  const ext = { remote_ip: '127.0.0.1' };
  verifyUrl(location, { publicKey: tree.publicKey, now: T0 + TTL_MS - 1000, extensions: ext });
  assert.throws(
    () => verifyUrl(location, { publicKey: tree.publicKey, now: T0 + TTL_MS + 1000, extensions: ext }),
    {
      code: 'PL_SIG_EXPIRED',
    },
  );
});

test('storage paths with unusual characters are percent-encoded in the redirect and still verify', async () => {
  const r = await main.get('/pulp/content/rhel9/Packages/l/libstdc++.rpm', { Host: 'repo.example' });
  assert.equal(r.status, 302);
  const location = r.headers.location ?? '';
  const policy = verifyUrl(location, {
    publicKey: tree.publicKey,
    now: T0,
    extensions: { remote_ip: '127.0.0.1' },
  });
  assert.ok(policy.resource.endsWith('/libstdc++%201:2.rpm'), policy.resource);
  assert.equal(decodeURIComponent(policy.resource), `/streamer/${missingOdd.slice(1)}`);
});

test('X-Forwarded-For/-Proto/-Host are honoured from a trusted proxy (last hop)', async () => {
  const r = await main.get('/pulp/content/rhel9/Packages/l/lazy-3.0-1.noarch.rpm', {
    Host: '127.0.0.1:8750',
    'X-Forwarded-For': '198.51.100.1, 203.0.113.7',
    'X-Forwarded-Proto': 'https',
    'X-Forwarded-Host': 'front.example',
  });
  assert.equal(r.status, 302);
  const location = r.headers.location ?? '';
  assert.ok(location.startsWith(`https://front.example:8081/streamer/${missing.slice(1)}?`), location);
  const policy = verifyUrl(location, {
    publicKey: tree.publicKey,
    now: T0,
    extensions: { remote_ip: '203.0.113.7' },
  });
  assert.equal(policy.extensions.remote_ip, '203.0.113.7');
});

test('X-Forwarded-* are ignored when the peer is not a trusted proxy', async () => {
  const other = await startDaemon(contentConfig(tree, { content: { trusted_proxies: ['192.0.2.1'] } }), {
    db,
    clock: () => T0,
  });
  const r = await other.get('/pulp/content/rhel9/Packages/l/lazy-3.0-1.noarch.rpm', {
    Host: 'direct.example:8750',
    'X-Forwarded-For': '203.0.113.7',
    'X-Forwarded-Proto': 'https',
    'X-Forwarded-Host': 'front.example',
  });
  assert.equal(r.status, 302);
  const location = r.headers.location ?? '';
  assert.ok(location.startsWith('http://direct.example:8081/streamer/'), location);
  const policy = verifyUrl(location, {
    publicKey: tree.publicKey,
    now: T0,
    extensions: { remote_ip: '127.0.0.1' },
  });
  assert.equal(policy.extensions.remote_ip, '127.0.0.1');
});

test('bind_remote_ip off: the signed URL carries no extension', async () => {
  const other = await startDaemon(contentConfig(tree, { content: { bind_remote_ip: false } }), {
    db,
    clock: () => T0,
  });
  const r = await other.get('/pulp/content/rhel9/Packages/l/lazy-3.0-1.noarch.rpm', { Host: 'repo.example' });
  assert.equal(r.status, 302);
  const policy = verifyUrl(r.headers.location ?? '', { publicKey: tree.publicKey, now: T0 });
  assert.deepEqual(policy.extensions, {});
});

test('configured redirect scheme, host, port and path win over the request', async () => {
  const other = await startDaemon(
    contentConfig(tree, { redirect: { scheme: 'https', host: 'cdn.example', port: 8443, path: '/lazy/' } }),
    { db, clock: () => T0 },
  );
  const r = await other.get('/pulp/content/rhel9/Packages/l/lazy-3.0-1.noarch.rpm', {
    Host: 'repo.example:8080',
  });
  assert.equal(r.status, 302);
  assert.ok((r.headers.location ?? '').startsWith(`https://cdn.example:8443/lazy/${missing.slice(1)}?`));
});

test('a miss without a usable Host header is a 400, never a redirect', async () => {
  const r = await main.get('/pulp/content/rhel9/Packages/l/lazy-3.0-1.noarch.rpm', { Host: 'bad host!' });
  assert.equal(r.status, 400);
  assert.equal(r.headers.location, undefined);
});

test('other methods are 405', async () => {
  const r = await request(main.port, 'POST', '/pulp/content/rhel9/Packages/f/foo-1.0-1.x86_64.rpm');
  assert.equal(r.status, 405);
  assert.equal(r.headers.allow, 'GET, HEAD');
});

test('/healthz answers and /metrics counts requests by outcome', async () => {
  const h = await main.get('/healthz');
  assert.equal(h.status, 200);
  const before = await main.get('/metrics');
  const count = (text: string, outcome: string) =>
    Number(
      new RegExp(`pulp_lazy_content_requests_total\\{outcome="${outcome}"\\} (\\d+)`).exec(text)?.[1] ?? 0,
    );
  await main.get('/pulp/content/rhel9/Packages/f/foo-1.0-1.x86_64.rpm');
  await main.get('/pulp/content/rhel9/Packages/l/lazy-3.0-1.noarch.rpm', { Host: 'repo.example' });
  await main.get('/pulp/content/rhel9/nothing-here');
  await main.get('/pulp/content/rhel9/../x');
  await main.get('/pulp/content/rhel9/');
  const afterText = (await main.get('/metrics')).body;
  assert.match((await main.get('/metrics')).headers['content-type'] ?? '', /^text\/plain; version=0\.0\.4/);
  for (const outcome of ['hit', 'miss', 'notfound', 'forbidden', 'directory']) {
    assert.equal(count(afterText, outcome), count(before.body, outcome) + 1, outcome);
  }
});
