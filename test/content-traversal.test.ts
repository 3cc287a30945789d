/**
 * Path traversal regression corpus for the content daemon: encoded dots,
 * backslashes, NUL, double slashes, and symlinks (direct, relative, chained,
 * dangling, looping) that lead outside the storage and published roots. None
 * may ever be answered with a 200 or a redirect.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { contentConfig, digestOf, insertRepo, makeTree, type Reply, startDaemon } from './helpers/content.ts';
import { testDatabase } from './helpers/db.ts';

const tree = await makeTree('content-traversal');
const db = await testDatabase('content_traversal');
await insertRepo(db, 'rhel9', 'rhel9');
const versioned = await tree.repo('rhel9');
const published = path.join(tree.paths.published, 'rhel9');

// Something outside the roots worth stealing, in a sibling temp dir.
const sibling = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-content-sibling-'));
after(() => rm(sibling, { recursive: true, force: true }));
const SECRET = 'TOP SECRET SIBLING';
await writeFile(path.join(sibling, 'secret.txt'), SECRET);
await mkdir(path.join(sibling, 'dir'));
await writeFile(path.join(sibling, 'dir', 'secret.txt'), SECRET);
// A file next to the roots (in the same temp root, but in neither root).
await mkdir(tree.paths.working, { recursive: true });
await writeFile(path.join(tree.paths.working, 'secret.txt'), SECRET);

// The legitimate content (positive controls).
const rpm = await tree.store('rpm', digestOf('foo'), 'foo.rpm', 'RPM BYTES');
await tree.link('rhel9', 'Packages/foo.rpm', rpm);
const lazy = tree.storagePath('rpm', digestOf('lazy'), 'lazy.rpm');
await tree.link('rhel9', 'Packages/lazy.rpm', lazy);

// Escaping links.
await tree.link('rhel9', 'passwd', '/etc/passwd');
await tree.link('rhel9', 'etc', '/etc');
await tree.link('rhel9', 'sibling.txt', path.join(sibling, 'secret.txt'));
await tree.link('rhel9', 'sibling-dir', path.join(sibling, 'dir'));
await tree.link('rhel9', 'rel-out', '../../../../../../../../../../../../etc/passwd');
await tree.link('rhel9', 'work.txt', path.join(tree.paths.working, 'secret.txt'));
await tree.link('rhel9', 'up', path.join(tree.paths.storage, '..'));
// Chains: published → published → outside; published → storage link → outside.
await tree.link('rhel9', 'chain1', path.join(published, 'chain2'));
await tree.link('rhel9', 'chain2', path.join(published, 'chain3'));
await tree.link('rhel9', 'chain3', path.join(sibling, 'secret.txt'));
const storageEscape = tree.storagePath('rpm', digestOf('escape'), 'escape.rpm');
await mkdir(path.dirname(storageEscape), { recursive: true });
await symlink('/etc/passwd', storageEscape);
await tree.link('rhel9', 'Packages/escape.rpm', storageEscape);
// Dangling links whose target is outside the roots: never a redirect.
await tree.link('rhel9', 'dangle-out.rpm', '/nonexistent-pulp-lazy-dir/x.rpm');
await tree.link('rhel9', 'dangle-sibling.rpm', path.join(sibling, 'missing.rpm'));
await tree.link('rhel9', 'dangle-rel.rpm', '../../../../../../../../../../../../tmp/missing.rpm');
await tree.link('rhel9', 'dangle-chain.rpm', path.join(published, 'dangle-sibling.rpm'));
await tree.link('rhel9', 'dangle-in-sibling-dir.rpm', path.join(sibling, 'dir', 'nope', 'missing.rpm'));
const storageDangle = tree.storagePath('rpm', digestOf('dangle'), 'dangle.rpm');
await mkdir(path.dirname(storageDangle), { recursive: true });
await symlink(path.join(sibling, 'missing.rpm'), storageDangle);
await tree.link('rhel9', 'Packages/dangle-via-storage.rpm', storageDangle);
// A storage directory that is a link to outside, with the file missing below it.
const storageDirEscape = path.join(tree.paths.storage, 'units', 'rpm', 'ee');
await mkdir(path.dirname(storageDirEscape), { recursive: true });
await symlink(sibling, storageDirEscape);
await tree.link('rhel9', 'Packages/dir-escape.rpm', path.join(storageDirEscape, 'ffff', 'x.rpm'));
// Loops and over-long chains.
await tree.link('rhel9', 'loop1', 'loop2');
await tree.link('rhel9', 'loop2', 'loop1');
for (let i = 0; i < 12; i++) {
  await tree.link('rhel9', `long${i}`, i === 11 ? lazy : path.join(published, `long${i + 1}`));
}

const PASSWD_LINE = /root:.*:0:0:/;

const corpus = [
  // Dot segments, plain and encoded.
  '/pulp/content/rhel9/../../../../etc/passwd',
  '/pulp/content/rhel9/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd',
  '/pulp/content/rhel9/%2E%2e%2f%2E%2e%2f%2E%2e%2f%2E%2e%2fetc%2fpasswd',
  '/pulp/content/%2E%2e%2f%2E%2e%2fetc/passwd',
  '/pulp/content/rhel9/..%2f..%2f..%2f..%2fetc%2fpasswd',
  '/pulp/content/rhel9/.%2e/.%2e/.%2e/.%2e/etc/passwd',
  '/pulp/content/rhel9/%252e%252e/%252e%252e/%252e%252e/etc/passwd',
  '/pulp/content/rhel9/%252e%252e%252f%252e%252e%252fetc%252fpasswd',
  '/pulp/content/rhel9/%c0%ae%c0%ae/%c0%ae%c0%ae/etc/passwd',
  '/pulp/content/..',
  '/pulp/content/%2e%2e',
  '/pulp/content/rhel9/./Packages/foo.rpm',
  '/pulp/content/rhel9/Packages/./foo.rpm',
  '/pulp/content/rhel9/Packages/%2e/foo.rpm',
  '/pulp/content/rhel9/Packages/../Packages/foo.rpm',
  // Backslashes, plain and encoded.
  '/pulp/content/rhel9\\..\\..\\..\\etc\\passwd',
  '/pulp/content/rhel9/%5c..%5c..%5c..%5cetc%5cpasswd',
  '/pulp/content/rhel9/Packages\\foo.rpm',
  // NUL.
  '/pulp/content/rhel9/Packages/foo.rpm%00',
  '/pulp/content/rhel9/Packages/foo.rpm%00.txt',
  '/pulp/content/rhel9/passwd%00',
  // Double slashes and encoded slashes.
  '/pulp/content//etc/passwd',
  '/pulp/content/rhel9//Packages/foo.rpm',
  '/pulp/content/rhel9/Packages//foo.rpm',
  '/pulp/content/%2fetc/passwd',
  '/pulp/content/rhel9/%2fetc%2fpasswd',
  '/pulp/content/rhel9/Packages%2ffoo.rpm',
  // Publication internals.
  '/pulp/content/.versions/',
  `/pulp/content/.versions/${path.basename(versioned)}/Packages/foo.rpm`,
  // Links escaping the roots.
  '/pulp/content/rhel9/passwd',
  '/pulp/content/rhel9/etc/passwd',
  '/pulp/content/rhel9/etc/',
  '/pulp/content/rhel9/sibling.txt',
  '/pulp/content/rhel9/sibling-dir/secret.txt',
  '/pulp/content/rhel9/sibling-dir/',
  '/pulp/content/rhel9/rel-out',
  '/pulp/content/rhel9/work.txt',
  '/pulp/content/rhel9/up/',
  '/pulp/content/rhel9/up/work/secret.txt',
  '/pulp/content/rhel9/chain1',
  '/pulp/content/rhel9/Packages/escape.rpm',
  '/pulp/content/rhel9/dangle-out.rpm',
  '/pulp/content/rhel9/dangle-sibling.rpm',
  '/pulp/content/rhel9/dangle-rel.rpm',
  '/pulp/content/rhel9/dangle-chain.rpm',
  '/pulp/content/rhel9/dangle-in-sibling-dir.rpm',
  '/pulp/content/rhel9/Packages/dangle-via-storage.rpm',
  '/pulp/content/rhel9/Packages/dir-escape.rpm',
  '/pulp/content/rhel9/loop1',
  '/pulp/content/rhel9/long0',
];

const roots = [await realpath(tree.paths.storage), await realpath(tree.paths.published)];
const within = (p: string) => roots.some((r) => p.startsWith(`${r}/`));

const main = await startDaemon(contentConfig(tree), { db });

function assertRefused(target: string, method: string, r: Reply): void {
  const where = `${method} ${target} → ${r.status}`;
  assert.ok(r.status !== 200 && r.status !== 302, where);
  assert.ok(r.status === 403 || r.status === 404, where);
  assert.equal(r.headers['x-sendfile'], undefined, where);
  assert.equal(r.headers.location, undefined, where);
  assert.ok(!r.body.includes(SECRET) && !PASSWD_LINE.test(r.body), where);
}

test('positive controls: the legitimate file is served and the dangling one redirected', async () => {
  const hit = await main.get('/pulp/content/rhel9/Packages/foo.rpm');
  assert.equal(hit.status, 200);
  assert.equal(hit.headers['x-sendfile'], rpm);
  const miss = await main.get('/pulp/content/rhel9/Packages/lazy.rpm', { Host: 'repo.example' });
  assert.equal(miss.status, 302);
});

test('no entry of the traversal corpus is ever a 200 or a redirect (GET and HEAD)', async () => {
  for (const target of corpus) {
    assertRefused(target, 'GET', await main.get(target, { Host: 'repo.example' }));
    assertRefused(target, 'HEAD', await main.head(target, { Host: 'repo.example' }));
  }
});

test('links leaving the roots are 403, not 404', async () => {
  for (const target of [
    '/pulp/content/rhel9/passwd',
    '/pulp/content/rhel9/sibling.txt',
    '/pulp/content/rhel9/chain1',
    '/pulp/content/rhel9/Packages/escape.rpm',
    '/pulp/content/rhel9/dangle-sibling.rpm',
    '/pulp/content/rhel9/Packages/dir-escape.rpm',
    '/pulp/content/rhel9/loop1',
    '/pulp/content/rhel9/long0',
    '/pulp/content/rhel9/%2e%2e/%2e%2e/etc/passwd',
  ]) {
    assert.equal((await main.get(target, { Host: 'repo.example' })).status, 403, target);
  }
});

test('whatever is served lies inside the roots', async () => {
  // Everything reachable from the repository's own index.
  const seen: string[] = [];
  const walk = async (dir: string) => {
    const r = await main.get(dir);
    for (const m of r.body.matchAll(/href="([^"]+)"/g)) {
      const href = m[1]!;
      if (!href.startsWith(dir) || href === dir) continue;
      if (href.endsWith('/')) await walk(href);
      else seen.push(href);
    }
  };
  await walk('/pulp/content/rhel9/');
  assert.ok(seen.length > 10, `only ${seen.length} entries listed`);
  let served = 0;
  for (const href of seen) {
    const r = await main.get(href, { Host: 'repo.example' });
    if (r.status === 200) {
      served++;
      const file = r.headers['x-sendfile'] as string;
      assert.ok(within(await realpath(decodeURIComponent(file))), `${href} → ${file}`);
    }
    if (r.status === 302) {
      const location = new URL(r.headers.location ?? '');
      const storagePath = decodeURIComponent(location.pathname).slice('/streamer'.length);
      assert.ok(storagePath.startsWith(`${tree.paths.storage}/`), `${href} → ${storagePath}`);
    }
  }
  assert.equal(served, 1);
});
