/**
 * publish.keep_previous with real clients (#22, "metadata kept through a
 * sync"): dnf and apt-get read a repository's metadata through `pulp-lazy
 * serve`; upstream then drops a package and adds another (new hashed
 * repodata, new Packages indexes) and the repository is synced again. The
 * files the clients' metadata names are still served, byte for byte: the old
 * repomd.xml's hashed repodata, the old Release's by-hash indexes, and the
 * dropped package, which dnf and apt-get download from their pre-sync
 * metadata (lazily: through the streamer, from the older catalog revision).
 * They are links in the published tree (what Apache's fast path serves too).
 * Past keep_previous, the next sync prunes them: 404.
 * Apt packages needed: dnf, apt (apt-get), rpm, createrepo-c, dpkg-dev, apt-utils.
 */
import assert from 'node:assert/strict';
import { lstat, mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { runCli, startServe, syncJson } from './helpers/cli.ts';
import { privateApt, privateDnf } from './helpers/clients.ts';
import { type TestEnv, testEnv } from './helpers/env.ts';
import { request } from './helpers/http.ts';
import {
  aptIndexes,
  buildDeb,
  buildRpm,
  createrepo,
  repomdLocations,
  serveTree,
} from './helpers/pkgrepos.ts';
import { startUpstream, type Upstream } from './helpers/upstream.ts';

const KEEP_MS = 3000;
const TIMEOUT = 300_000;

async function setup(label: string): Promise<{ env: TestEnv; work: string; up: Upstream }> {
  const env = await testEnv(label, { publish: { keep_previous: `${KEEP_MS}ms` } });
  const work = await mkdtemp(path.join(tmpdir(), `pulp-lazy-${label}-`));
  after(() => rm(work, { recursive: true, force: true }));
  return { env, work, up: await startUpstream() };
}

/** GETs each of `paths` under `base`: path → body; every one must answer `status`. */
async function fetchAll(base: string, paths: string[], status: number): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  for (const p of paths) {
    const r = await request(`${base}${p}`);
    assert.equal(r.status, status, `${p}: ${r.status}`);
    out.set(p, r.body);
  }
  return out;
}

/** Each of `paths` is a link in the published tree `dir` that resolves to a stored file (Apache's fast path serves those). */
async function assertStoredLinks(dir: string, paths: string[]): Promise<void> {
  for (const p of paths) {
    assert.ok((await lstat(path.join(dir, p))).isSymbolicLink(), p);
    assert.ok((await stat(path.join(dir, p))).isFile(), `${p} resolves to a stored file`);
  }
}

/**
 * Upstream drops `dropped` from the metadata `regenerate` rewrites in `dir`
 * (the mirror still has the file) and adds a package; `repo` is synced again
 * and keeps links of its previous tree. Returns the dropped package's bytes
 * and when the sync ended.
 */
async function dropAndResync(
  f: { env: TestEnv; up: Upstream },
  repo: string,
  dir: string,
  dropped: string,
  regenerate: () => Promise<void>,
): Promise<{ droppedBytes: Buffer; synced: number }> {
  const droppedBytes = await readFile(path.join(dir, dropped));
  await rm(path.join(dir, dropped));
  await regenerate();
  await serveTree(f.up.files, `/${repo}/`, dir);
  f.up.files.set(`/${repo}/${dropped}`, droppedBytes);
  const s = await syncJson(f.env.env, repo);
  assert.ok(s.tree_changed && s.kept_paths > 0, JSON.stringify(s));
  return { droppedBytes, synced: Date.now() };
}

/** Syncs once keep_previous has passed since `since`: the kept links are pruned. */
async function syncPastKeep(env: TestEnv, repo: string, since: number): Promise<void> {
  await new Promise((r) => setTimeout(r, Math.max(0, since + KEEP_MS + 100 - Date.now())));
  assert.equal((await syncJson(env.env, repo)).kept_paths, 0);
}

test('dnf: the previous repodata and a dropped package are served after a sync, and gone past keep_previous', async () => {
  const { env, work, up } = await setup('keepdnf');
  const repoDir = path.join(work, 'upstream');
  const build = path.join(work, 'build');
  await buildRpm(build, repoDir, { name: 'plkeep-stays', version: '1.0' });
  const dropped = await buildRpm(build, repoDir, { name: 'plkeep-dropped', version: '1.0' });
  await createrepo(repoDir);
  await serveTree(up.files, '/el/', repoDir);
  const c = await runCli(['repo', 'create', 'el', '--type', 'yum', '--feed', `${up.url}el/`], {
    env: env.env,
  });
  assert.equal(c.code, 0, c.stderr);
  await syncJson(env.env, 'el');
  const url = `${await startServe(env)}/pulp/content/el/`;

  // dnf reads the metadata, and keeps it (metadata_expire=-1: it will not read repomd.xml again).
  const client = path.join(work, 'dnf');
  const dnf = await privateDnf(client, url, TIMEOUT, { metadataExpire: '-1' });
  const mc = await dnf(['makecache']);
  assert.equal(mc.exitCode, 0, `${mc.stdout}\n${mc.stderr}`);
  // dnf's cache (under its installroot): the repomd.xml it read.
  const repomd = (await readdir(client, { recursive: true })).filter((p) =>
    p.endsWith('/repodata/repomd.xml'),
  );
  assert.equal(repomd.length, 1, repomd.join());
  const read = [...repomdLocations(await readFile(path.join(client, repomd[0]!), 'utf8')).values()];
  const before = await fetchAll(url, read, 200);

  const { droppedBytes, synced } = await dropAndResync({ env, up }, 'el', repoDir, dropped, async () => {
    await buildRpm(build, repoDir, { name: 'plkeep-new', version: '2.0' });
    await createrepo(repoDir);
  });
  const now = repomdLocations((await request(`${url}repodata/repomd.xml`)).body.toString());
  assert.ok(
    read.every((p) => ![...now.values()].includes(p)),
    'the new repomd.xml names other files',
  );

  // What dnf read is still served, unchanged, and is in the tree Apache's fast path serves from.
  assert.deepEqual(await fetchAll(url, read, 200), before);
  await assertStoredLinks(path.join(env.config.paths.published, 'el'), read);
  // dnf downloads the dropped package from its pre-sync metadata (lazily, from the older catalog revision).
  const dl = path.join(work, 'dl');
  const d = await dnf(['--downloadonly', `--downloaddir=${dl}`, 'install', 'plkeep-dropped']);
  assert.equal(d.exitCode, 0, `${d.stdout}\n${d.stderr}`);
  assert.deepEqual(await readFile(path.join(dl, path.basename(dropped))), droppedBytes, 'byte-identical');

  await syncPastKeep(env, 'el', synced);
  await fetchAll(url, [...read, dropped], 404);
});

/** The by-hash paths of the Packages indexes a Release lists (SHA256). */
function byHashPaths(release: string): string[] {
  const sha256 = release.split(/^SHA256:\n/m)[1]!.split(/^\S/m)[0]!;
  return [...sha256.matchAll(/^ ([0-9a-f]{64}) +\d+ (main\/binary-amd64)\/Packages\S*$/gm)].map(
    (m) => `dists/stable/${m[2]}/by-hash/SHA256/${m[1]}`,
  );
}

test('apt-get: the previous by-hash indexes and a dropped package are served after a sync, and gone past keep_previous', async () => {
  const { env, work, up } = await setup('keepapt');
  const archive = path.join(work, 'upstream');
  const build = path.join(work, 'build');
  await buildDeb(build, archive, { name: 'plkeep-stays', version: '1.0' });
  const dropped = await buildDeb(build, archive, { name: 'plkeep-dropped', version: '1.0' });
  await aptIndexes(archive);
  await serveTree(up.files, '/deb/', archive);
  const c = await runCli(
    ['repo', 'create', 'deb', '--type', 'deb', '--feed', `${up.url}deb/`, '--dists', 'stable'],
    { env: env.env },
  );
  assert.equal(c.code, 0, c.stderr);
  await syncJson(env.env, 'deb');
  const url = `${await startServe(env)}/pulp/content/deb/`;

  const client = path.join(work, 'apt');
  const { apt, dl } = await privateApt(client, `deb [trusted=yes] ${url} stable main`, TIMEOUT);
  const u = await apt(['update']);
  assert.equal(u.exitCode, 0, `${u.stdout}\n${u.stderr}`);
  const lists = path.join(client, 'state/lists');
  const [releaseFile] = (await readdir(lists)).filter((n) => n.endsWith('_dists_stable_Release'));
  const read = byHashPaths(await readFile(path.join(lists, releaseFile!), 'utf8'));
  assert.ok(read.length > 0, 'the Release apt read lists Packages indexes');
  const before = await fetchAll(url, read, 200);

  const { droppedBytes, synced } = await dropAndResync({ env, up }, 'deb', archive, dropped, async () => {
    await buildDeb(build, archive, { name: 'plkeep-new', version: '2.0' });
    await aptIndexes(archive);
  });
  const now = byHashPaths((await request(`${url}dists/stable/Release`)).body.toString());
  assert.ok(
    read.every((p) => !now.includes(p)),
    'the new Release names other indexes',
  );

  assert.deepEqual(await fetchAll(url, read, 200), before);
  await assertStoredLinks(path.join(env.config.paths.published, 'deb'), read);
  // apt-get downloads the dropped package from its pre-sync lists (no update in between).
  const d = await apt(['download', 'plkeep-dropped'], dl);
  assert.equal(d.exitCode, 0, `${d.stdout}\n${d.stderr}`);
  assert.deepEqual(await readFile(path.join(dl, path.basename(dropped))), droppedBytes, 'byte-identical');

  await syncPastKeep(env, 'deb', synced);
  await fetchAll(url, [...read, dropped], 404);
});
