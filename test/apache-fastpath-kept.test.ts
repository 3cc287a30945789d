/**
 * publish.keep_previous on Apache's fast path: a tree published over another
 * by src/publish/ carries the previous tree's dropped files (old hashed
 * metadata, a dropped package); Apache serves them itself, byte for byte,
 * until pruneKept removes them, and never serves the kept manifest
 * (`.versions/<version>.kept`). The stored files and the tree belong to a
 * non-root service user, as the fast path requires.
 */
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { after, test } from 'node:test';
import type { Config } from '../src/config.ts';
import { createContentDaemon } from '../src/daemons/content.ts';
import { silentLogger } from '../src/log.ts';
import { userIds } from '../src/proxies/configs.ts';
import { startProxies, stopProxies } from '../src/proxies/index.ts';
import { pruneKept, publishTree, VERSIONS_DIR } from '../src/publish/index.ts';
import { contentConfig, digestOf, insertRepo, makeTree, request } from './helpers/content.ts';
import { testDatabase } from './helpers/db.ts';
import { request as raw } from './helpers/http.ts';
import { chownTree, freePorts, openUp } from './helpers/proxies.ts';

const stops: Array<() => Promise<unknown>> = [];
after(async () => {
  for (const stop of stops.splice(0).reverse()) await stop().catch(() => {});
});

const tree = await makeTree('apache-kept');
const db = await testDatabase('apache_kept');
await insertRepo(db, 'r', 'r');

const HEX_OLD = 'a1'.repeat(32);
const HEX_NEW = 'b2'.repeat(32);
const bytes = (label: string, n: number) =>
  Buffer.from(Array.from({ length: n }, (_, i) => (i * 13 + label.length * 7 + label.charCodeAt(0)) % 251));
const content = new Map<string, Buffer>([
  ['repomd-1', bytes('repomd-1', 600)],
  ['repomd-2', bytes('repomd-22', 640)],
  ['primary-old', bytes('primary-old', 3000)],
  ['primary-new', bytes('primary-new!', 3100)],
  ['old.rpm', bytes('old.rpm', 5000)],
]);
const stored = new Map<string, string>();
for (const [label, b] of content) stored.set(label, await tree.store('file', digestOf(label), label, b));

const T0 = Date.parse('2026-12-07T12:00:00Z');
const KEEP_MS = 60_000;
await publishTree(
  tree.paths.published,
  'r',
  new Map([
    ['repodata/repomd.xml', stored.get('repomd-1')!],
    [`repodata/${HEX_OLD}-primary.xml.gz`, stored.get('primary-old')!],
    ['Packages/o/old.rpm', stored.get('old.rpm')!],
  ]),
  { keepMs: KEEP_MS, now: () => T0 },
);
const second = await publishTree(
  tree.paths.published,
  'r',
  new Map([
    ['repodata/repomd.xml', stored.get('repomd-2')!],
    [`repodata/${HEX_NEW}-primary.xml.gz`, stored.get('primary-new')!],
  ]),
  { keepMs: KEEP_MS, now: () => T0 + 1000 },
);
assert.equal(second.kept, 2, 'the old primary and the dropped package are carried');

const { uid, gid } = await userIds('nobody');
await chownTree(tree.paths.storage, uid, gid);
await chownTree(tree.paths.published, uid, gid);
await openUp(tree.root, [tree.paths.storage, tree.paths.published]);

const [contentPort, fastPort, streamerPort, authPort] = await freePorts(4);
const base = contentConfig(tree, { content: { listen: `127.0.0.1:${contentPort}` } });
const daemon = createContentDaemon(base, { db, logger: silentLogger });
await daemon.listen();
stops.push(() => daemon.close({ deadlineMs: 1000 }));
const config: Config = {
  ...base,
  paths: { ...base.paths, run: path.join(tree.root, 'run'), logs: path.join(tree.root, 'logs') },
  apache: {
    ...base.apache,
    listen_host: '127.0.0.1',
    content_port: fastPort!,
    streamer_port: streamerPort!,
    authorizer_listen: `127.0.0.1:${authPort}`,
    fast_path: true,
  },
  proxy: { cache: 'none' },
};
stops.push(() => stopProxies(config, { logger: silentLogger }));
await startProxies(config, { logger: silentLogger });

const get = (target: string) => request(fastPort!, 'GET', target);
/** A GET whose body is kept byte for byte (as latin1 text). */
async function send(target: string) {
  const r = await raw(`http://127.0.0.1:${fastPort}${target}`, { method: 'GET' });
  return { ...r, body: r.body.toString('latin1') };
}
/** Apache's ETag is "<size hex>-<mtime hex>"; the daemon's starts with the file's sha256. */
const servedByApache = (etag: string | string[] | undefined) =>
  typeof etag === 'string' && !/^"[0-9a-f]{64}-/.test(etag);
const latin1 = (label: string) => content.get(label)!.toString('latin1');

test('the previous tree’s dropped files are served by Apache itself until they are pruned', async () => {
  const cases: Array<[string, string]> = [
    [`repodata/${HEX_NEW}-primary.xml.gz`, 'primary-new'],
    [`repodata/${HEX_OLD}-primary.xml.gz`, 'primary-old'],
    ['Packages/o/old.rpm', 'old.rpm'],
  ];
  for (const [rel, label] of cases) {
    const r = await send(`/pulp/content/r/${rel}`);
    assert.equal(r.status, 200, rel);
    assert.equal(r.body, latin1(label), `${rel}: the bytes of ${label}`);
    assert.ok(servedByApache(r.headers.etag), `${rel}: served by Apache (ETag ${r.headers.etag})`);
  }
  const repomd = await send('/pulp/content/r/repodata/repomd.xml');
  assert.equal(repomd.body, latin1('repomd-2'), 'the current repomd.xml');

  // The kept manifest lies beside the version dir: never served, on any path Apache offers.
  const manifests = (await readdir(path.join(tree.paths.published, VERSIONS_DIR))).filter((n) =>
    n.endsWith('.kept'),
  );
  assert.equal(manifests.length, 1);
  for (const target of [
    `/pulp/content/${VERSIONS_DIR}/${manifests[0]}`,
    `/pulp/content/r/../${VERSIONS_DIR}/${manifests[0]}`,
    `/pulp/content/r/%2e%2e/${VERSIONS_DIR}/${manifests[0]}`,
  ]) {
    const r = await get(target);
    assert.notEqual(r.status, 200, target);
    assert.doesNotMatch(r.body, /primary\.xml\.gz/, `${target}: no manifest content`);
  }

  const pruned = await pruneKept(tree.paths.published, T0 + 1000 + KEEP_MS + 1);
  assert.equal(pruned.kept, 0);
  for (const [rel] of cases.slice(1)) assert.equal((await get(`/pulp/content/r/${rel}`)).status, 404, rel);
  assert.equal((await send(`/pulp/content/r/repodata/${HEX_NEW}-primary.xml.gz`)).status, 200);
});
