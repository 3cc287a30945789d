/**
 * Real clients against lazily synced repositories served by `pulp-lazy
 * serve`: dnf downloads an RPM, apt-get updates and downloads a .deb. The
 * upstream sees metadata requests at sync time, no package before the
 * client asks, and exactly the requested package after.
 * Apt packages needed: dnf, apt (apt-get), plus the fixture tools
 * (rpm, createrepo-c, dpkg-dev, apt-utils).
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { runCli, startServe } from './helpers/cli.ts';
import { dnfDownload, privateApt } from './helpers/clients.ts';
import { testEnv } from './helpers/env.ts';
import { aptIndexes, buildDeb, buildRpm, createrepo, serveTree } from './helpers/pkgrepos.ts';
import { hitsMatching, startUpstream } from './helpers/upstream.ts';

test('dnf downloads an RPM through pulp-lazy serve: byte-identical, only that package fetched upstream', async () => {
  const env = await testEnv('clientdnf');
  const work = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-dnf-'));
  after(() => rm(work, { recursive: true, force: true }));
  const repoDir = path.join(work, 'upstream');
  const wanted = await buildRpm(path.join(work, 'build'), repoDir, { name: 'plcli-wanted', version: '1.2' });
  await buildRpm(path.join(work, 'build'), repoDir, { name: 'plcli-other', version: '3.4' });
  await createrepo(repoDir);
  const up = await startUpstream();
  await serveTree(up.files, '/el/', repoDir);

  const c = await runCli(['repo', 'create', 'el', '--type', 'yum', '--feed', `${up.url}el/`], {
    env: env.env,
  });
  assert.equal(c.code, 0, c.stderr);
  const s = await runCli(['sync', 'el'], { env: env.env });
  assert.equal(s.code, 0, s.stderr);
  const base = await startServe(env);
  assert.equal(hitsMatching(up, /\.rpm$/), 0, 'no package fetched before the client asked');
  const synced = up.total();

  const { result: r, dl } = await dnfDownload(work, `${base}/pulp/content/el/`, 'plcli-wanted', 300_000);
  assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
  const got = await readdir(dl);
  assert.deepEqual(got, [path.basename(wanted)]);
  assert.deepEqual(
    await readFile(path.join(dl, got[0]!)),
    await readFile(path.join(repoDir, wanted)),
    'byte-identical',
  );
  assert.equal(up.hits.get(`/el/${wanted}`), 1, 'the requested package fetched once');
  assert.equal(hitsMatching(up, /\.rpm$/), 1, 'and nothing else');
  assert.equal(up.total(), synced + 1, 'metadata came from storage, not upstream');
});

test('apt-get update + download through pulp-lazy serve: byte-identical, only that package fetched upstream', async () => {
  const env = await testEnv('clientapt');
  const work = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-apt-'));
  after(() => rm(work, { recursive: true, force: true }));
  const archive = path.join(work, 'upstream');
  const wanted = await buildDeb(path.join(work, 'build'), archive, { name: 'plcli-wanted', version: '1.2' });
  await buildDeb(path.join(work, 'build'), archive, { name: 'plcli-other', version: '3.4', arch: 'amd64' });
  await aptIndexes(archive);
  const up = await startUpstream();
  await serveTree(up.files, '/debian/', archive);

  const c = await runCli(
    ['repo', 'create', 'deb', '--type', 'deb', '--feed', `${up.url}debian/`, '--dists', 'stable'],
    { env: env.env },
  );
  assert.equal(c.code, 0, c.stderr);
  const s = await runCli(['sync', 'deb'], { env: env.env });
  assert.equal(s.code, 0, s.stderr);
  const base = await startServe(env);
  assert.equal(hitsMatching(up, /\/pool\//), 0, 'no package fetched before the client asked');
  const synced = up.total();

  const { apt } = await privateApt(work, `deb [trusted=yes] ${base}/pulp/content/deb/ stable main`, 300_000);
  const u = await apt(['update']);
  assert.equal(u.exitCode, 0, `${u.stdout}\n${u.stderr}`);
  assert.doesNotMatch(`${u.stdout}\n${u.stderr}`, /^(W|E): /m, 'apt update without warnings');
  assert.equal(hitsMatching(up, /\/pool\//), 0, 'apt update fetched no package');
  const d = await apt(['download', 'plcli-wanted'], path.join(work, 'dl'));
  assert.equal(d.exitCode, 0, `${d.stdout}\n${d.stderr}`);
  const got = await readdir(path.join(work, 'dl'));
  assert.deepEqual(got, [path.basename(wanted)]);
  assert.deepEqual(
    await readFile(path.join(work, 'dl', got[0]!)),
    await readFile(path.join(archive, wanted)),
    'byte-identical',
  );
  assert.equal(up.hits.get(`/debian/${wanted}`), 1, 'the requested package fetched once');
  assert.equal(hitsMatching(up, /\/pool\//), 1, 'and nothing else');
  assert.equal(up.total(), synced + 1, 'metadata came from storage, not upstream');
});
