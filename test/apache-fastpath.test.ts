/**
 * apache.fast_path: the content vhost serves present published files itself.
 * Equivalence with the daemon path (a second Apache without the fast path,
 * same content daemon): status, Content-Type, length, Range and HEAD agree;
 * dangling links, directories, dot entries and protected paths still reach the
 * daemon. Traversal corpus against the fast path: nothing outside the roots is
 * ever answered with a 200, escaping links included (the tree is owned by a
 * non-root service user, as the fast path requires); and `proxies start`
 * refuses the fast path when the roots are owned by root.
 */
import assert from 'node:assert/strict';
import { mkdir, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after, test } from 'node:test';
import { type Config, parseConfig } from '../src/config.ts';
import { createContentDaemon } from '../src/daemons/content.ts';
import { silentLogger } from '../src/log.ts';
import { userIds } from '../src/proxies/configs.ts';
import { startProxies, stopProxies } from '../src/proxies/index.ts';
import { contentConfig, digestOf, insertRepo, makeTree, request } from './helpers/content.ts';
import { mongoUrl, testDatabase } from './helpers/db.ts';
import { toToml } from './helpers/env.ts';
import { chownTree, freePorts, openUp } from './helpers/proxies.ts';

const SERVICE_USER = 'nobody';
const SECRET = 'TOP SECRET OUTSIDE THE ROOTS';

// Stopping Apache needs its pid files, which live in the temp root: this hook is registered
// before makeTree()'s, and hooks run in registration order.
const stops: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const stop of stops.splice(0).reverse()) await stop().catch(() => {});
});

const tree = await makeTree('apache-fastpath');
const db = await testDatabase('apache_fastpath');
await insertRepo(db, 'rhel9', 'rhel9');
await tree.repo('rhel9');
await tree.repo('prot');

const HEX = 'ab12'.repeat(16);
const body = (n: number) => Buffer.from(Array.from({ length: n }, (_, i) => (i * 7 + 3) % 251));
const files: Array<[string, number]> = [
  ['Packages/foo.rpm', 5000],
  ['repodata/primary.xml.gz', 3000],
  ['repodata/repomd.xml', 700],
  ['notes.TXT', 100],
  ['blob.unknownext', 2048],
  [`repodata/${HEX}-primary.xml.gz`, 900],
  ['dists/stable/InRelease', 300],
  [`dists/stable/main/binary-amd64/by-hash/SHA256/${HEX}`, 200],
];
for (const [rel, n] of files) {
  const stored = await tree.store('file', digestOf(rel), path.basename(rel), body(n));
  await tree.link('rhel9', rel, stored);
}
// Only the access-tracking test asks for these (its recorder ignores a file written within 12 h).
const tracked = await tree.store('file', digestOf('tracked'), 'tracked.rpm', body(4000));
await tree.link('rhel9', 'Packages/tracked.rpm', tracked);
const headOnly = await tree.store('file', digestOf('head-only'), 'head-only.rpm', body(4000));
await tree.link('rhel9', 'Packages/head-only.rpm', headOnly);
await tree.link('rhel9', 'Packages/lazy.rpm', tree.storagePath('file', digestOf('lazy'), 'lazy.rpm'));
await tree.link('prot', 'p.rpm', await tree.store('file', digestOf('p'), 'p.rpm', body(500)));

// Outside the roots, owned by root (like /etc/passwd): escaping links must never reach these.
const outside = path.join(tree.root, 'outside');
await mkdir(outside, { recursive: true });
await writeFile(path.join(outside, 'secret.txt'), SECRET);
await tree.link('rhel9', 'escape.txt', path.join(outside, 'secret.txt'));
await tree.link('rhel9', 'escape-rel.txt', '../../../outside/secret.txt');
await tree.link('rhel9', 'escdir', outside);
await tree.link('rhel9', 'passwd', '/etc/passwd');
await tree.link('rhel9', 'chain.txt', path.join(tree.paths.published, 'rhel9', 'escape.txt'));

// The documented deployment: storage and published tree owned by one non-root service user.
const { uid, gid } = await userIds(SERVICE_USER);
await chownTree(tree.paths.storage, uid, gid);
await chownTree(tree.paths.published, uid, gid);
await openUp(tree.root, [tree.paths.storage, tree.paths.published, outside]);

const [contentPort, fastPort, plainPort, streamerA, streamerB, authPort] = await freePorts(6);
const base = contentConfig(tree, { content: { listen: `127.0.0.1:${contentPort}` } });
const daemon = createContentDaemon(base, { db, logger: silentLogger });
await daemon.listen();
stops.push(() => daemon.close({ deadlineMs: 1000 }));
assert.equal((daemon.server.address() as AddressInfo | null)?.port, contentPort);

// The config file the fast path's piped logger (`pulp-lazy access-log`) reads: this database, these paths.
const configFile = path.join(tree.root, 'config.toml');
await writeFile(
  configFile,
  toToml({
    database: { url: mongoUrl(), name: db.db.databaseName },
    paths: { ...tree.paths },
    log: { level: 'warn' },
  }),
);

function apacheConfig(
  name: string,
  port: number,
  streamerPort: number,
  fast: boolean,
): Config & { source: string } {
  return {
    source: configFile,
    ...base,
    paths: {
      ...base.paths,
      run: path.join(tree.root, `run-${name}`),
      logs: path.join(tree.root, `logs-${name}`),
    },
    apache: {
      ...base.apache,
      listen_host: '127.0.0.1',
      content_port: port,
      streamer_port: streamerPort,
      authorizer_listen: `127.0.0.1:${authPort}`,
      fast_path: fast,
      protected_paths: fast ? ['prot'] : [],
    },
    proxy: { cache: 'none' },
  };
}
const fastConfig = apacheConfig('fast', fastPort!, streamerA!, true);
const plainConfig = apacheConfig('plain', plainPort!, streamerB!, false);
stops.push(() => stopProxies(fastConfig, { logger: silentLogger }));
stops.push(() => stopProxies(plainConfig, { logger: silentLogger }));
await startProxies(fastConfig, { logger: silentLogger });
await startProxies(plainConfig, { logger: silentLogger });

const fast = (method: string, target: string, headers = {}) => request(fastPort!, method, target, headers);
const plain = (method: string, target: string, headers = {}) => request(plainPort!, method, target, headers);
/** The daemon's ETag for a stored unit is digest-based; Apache's is "<size hex>-<mtime hex>". */
const servedByApache = (etag: string | string[] | undefined) =>
  typeof etag === 'string' && !/^"[0-9a-f]{64}-/.test(etag);

test('present files: fast path and daemon path agree on status, type, length, Range and HEAD', async () => {
  for (const [rel, n] of files) {
    for (const prefix of ['/pulp/content/rhel9/', '/pulp/repos/rhel9/']) {
      const target = `${prefix}${rel}`;
      for (const [method, headers] of [
        ['GET', {}],
        ['HEAD', {}],
        ['GET', { Range: 'bytes=10-19' }],
        ['GET', { Range: 'bytes=-5' }],
        ['GET', { Range: `bytes=${n + 10}-` }],
      ] as const) {
        const a = await fast(method, target, headers);
        const b = await plain(method, target, headers);
        const what = `${method} ${target} ${JSON.stringify(headers)}`;
        assert.equal(a.status, b.status, what);
        assert.equal(a.headers['content-type'], b.headers['content-type'], what);
        assert.equal(a.headers['content-length'], b.headers['content-length'], what);
        assert.equal(a.headers['content-range'], b.headers['content-range'], what);
        assert.equal(a.headers['content-encoding'], undefined, what);
        assert.equal(a.headers['cache-control'], b.headers['cache-control'], what);
        assert.equal(a.body, b.body, what);
        if (a.status < 300)
          assert.ok(servedByApache(a.headers.etag), `${what}: fast path ETag ${a.headers.etag}`);
        if (b.status < 300)
          assert.ok(!servedByApache(b.headers.etag), `${what}: daemon ETag ${b.headers.etag}`);
      }
    }
  }
  const whole = await fast('GET', '/pulp/content/rhel9/Packages/foo.rpm');
  assert.equal(whole.status, 200);
  assert.equal(whole.headers['content-type'], 'application/x-rpm');
  assert.equal(Buffer.from(whole.body, 'latin1').length > 0, true);
  const gz = await fast('GET', '/pulp/content/rhel9/repodata/primary.xml.gz');
  assert.equal(gz.headers['content-type'], 'application/gzip');
});

test('hits carry the Cache-Control of src/http/cache-control.ts on both Apache paths', async () => {
  const expected: Array<[string, string | undefined]> = [
    ['repodata/repomd.xml', 'no-cache'],
    ['dists/stable/InRelease', 'no-cache'],
    [`repodata/${HEX}-primary.xml.gz`, 'public, max-age=31536000, immutable'],
    [`dists/stable/main/binary-amd64/by-hash/SHA256/${HEX}`, 'public, max-age=31536000, immutable'],
    ['Packages/foo.rpm', 'public, max-age=31536000, immutable'],
    ['repodata/primary.xml.gz', undefined],
    ['notes.TXT', undefined],
  ];
  for (const [rel, value] of expected) {
    for (const get of [fast, plain]) {
      const r = await get('GET', `/pulp/content/rhel9/${rel}`);
      assert.equal(r.status, 200, rel);
      assert.equal(r.headers['cache-control'], value, rel);
    }
    const head = await fast('HEAD', `/pulp/content/rhel9/${rel}`);
    assert.equal(head.headers['cache-control'], value, `HEAD ${rel}`);
  }
});

test('dangling links, directories, dot entries and protected paths go to the daemon', async () => {
  const lazy = await fast('GET', '/pulp/content/rhel9/Packages/lazy.rpm');
  assert.equal(lazy.status, 302);
  assert.match(String(lazy.headers.location), /\/streamer\//);
  const dir = await fast('GET', '/pulp/content/rhel9/Packages/');
  assert.equal(dir.status, 200);
  assert.match(dir.body, /foo\.rpm/);
  const versions = await fast('GET', '/pulp/content/.versions/');
  assert.equal(versions.status, 404);
  const prot = await fast('GET', '/pulp/content/prot/p.rpm');
  assert.equal(prot.status, 200);
  assert.ok(!servedByApache(prot.headers.etag), `protected path served by the daemon: ${prot.headers.etag}`);
  const unknown = await fast('GET', '/pulp/content/rhel9/nothing.rpm');
  assert.equal(unknown.status, 404);
});

test('traversal corpus against the fast path: nothing outside the roots is ever served', async () => {
  const corpus = [
    '/pulp/content/rhel9/escape.txt',
    '/pulp/content/rhel9/escape-rel.txt',
    '/pulp/content/rhel9/escdir/secret.txt',
    '/pulp/content/rhel9/chain.txt',
    '/pulp/content/rhel9/passwd',
    '/pulp/repos/rhel9/escape.txt',
    '/pulp/deb/rhel9/escdir/secret.txt',
    '/pulp/content/../outside/secret.txt',
    '/pulp/content/../../outside/secret.txt',
    '/pulp/content/rhel9/../../../outside/secret.txt',
    '/pulp/content/%2e%2e/%2e%2e/outside/secret.txt',
    '/pulp/content/%2E%2E/%2E%2E/%2E%2E/outside/secret.txt',
    '/pulp/content/rhel9/%2e%2e%2f%2e%2e%2f%2e%2e%2foutside/secret.txt',
    '/pulp/content/%252e%252e/%252e%252e/outside/secret.txt',
    '/pulp/content/rhel9/..%5c..%5c..%5coutside%5csecret.txt',
    '/pulp/content/.versions/../../../outside/secret.txt',
    '/pulp/content//rhel9//escape.txt',
    '/pulp/content/rhel9/./escape.txt',
    '/pulp/content/rhel9/escape.txt%00.rpm',
    '/pulp/content/rhel9/passwd/',
    '/pulp/content/../../../../../../etc/passwd',
    '/pulp/content/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd',
  ];
  for (const target of corpus) {
    for (const method of ['GET', 'HEAD']) {
      const r = await fast(method, target);
      assert.notEqual(r.status, 200, `${method} ${target} → ${r.status}`);
      assert.ok(r.status < 300 || r.status >= 400, `${method} ${target} → ${r.status}`);
      assert.ok(!r.body.includes(SECRET) && !r.body.includes('root:x:0:0'), `${method} ${target} leaked`);
    }
  }
  // Positive control: the same fast path does serve a legitimate file.
  assert.equal((await fast('GET', '/pulp/content/rhel9/Packages/foo.rpm')).status, 200);
});

test('proxies start refuses the fast path when the roots are owned by root', async () => {
  const rootOwned = await makeTree('apache-fastpath-root');
  const [c, s, a] = await freePorts(3);
  const config = contentConfig(rootOwned, {
    apache: {
      listen_host: '127.0.0.1',
      content_port: c!,
      streamer_port: s!,
      authorizer_listen: `127.0.0.1:${a}`,
      fast_path: true,
    },
    proxy: { cache: 'none' },
  });
  after(() => stopProxies(config, { logger: silentLogger }));
  await assert.rejects(startProxies(config, { logger: silentLogger }), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'PL_PROXY_FASTPATH');
    assert.match(err.message, /owned by root/);
    return true;
  });
});

test('apache.protected_paths accepts published paths and refuses anything that could break out', () => {
  const parse = (protected_paths: unknown) =>
    parseConfig({ apache: { fast_path: true, protected_paths } }, 't', {}).apache.protected_paths;
  assert.deepEqual(parse(['rhel9', 'a/b-c.d']), ['rhel9', 'a/b-c.d']);
  for (const bad of ['/abs', '../x', 'a/./b', 'a//b', 'a b', 'a"b', 'a\\b', '']) {
    assert.throws(() => parse([bad]), /protected_paths/, bad);
  }
});

test('fast-path hits are recorded in unit_access through the piped logger, without a unit write per hit', async () => {
  const units = await db.units.countDocuments({});
  for (let i = 0; i < 3; i++) {
    const r = await fast('GET', '/pulp/content/rhel9/Packages/tracked.rpm');
    assert.equal(r.status, 200);
    assert.ok(servedByApache(r.headers.etag), 'not served by the fast path');
  }
  assert.equal((await fast('HEAD', '/pulp/content/rhel9/Packages/head-only.rpm')).status, 200);
  const deadline = Date.now() + 20_000;
  while (!(await db.unitAccess.findOne({ _id: tracked }))) {
    assert.ok(Date.now() < deadline, 'the fast-path hit never reached unit_access');
    await new Promise((r) => setTimeout(r, 200));
  }
  assert.equal(await db.unitAccess.findOne({ _id: headOnly }), null, 'a HEAD was recorded');
  assert.equal(await db.units.countDocuments({}), units, 'a hit wrote the units collection');
});
