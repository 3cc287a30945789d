/**
 * Signed metadata (`repo create/update --gpg-key`): keys made with GnuPG,
 * yum repomd.xml.asc and deb InRelease / Release + Release.gpg signed with
 * them, checked by the real CLI's sync with gpgv. A good signature syncs; a
 * tampered file, a missing signature or another key's signature is a
 * one-line error with the published tree unchanged; without a key nothing
 * is checked.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readlink, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { execa } from 'execa';
import { runCli } from './helpers/cli.ts';
import { generateDebRepo } from './helpers/deb-packages.ts';
import { type TestEnv, testEnv } from './helpers/env.ts';
import { startUpstream, type Upstream } from './helpers/upstream.ts';
import { generateYumRepo } from './helpers/yum-primary.ts';

let work: string;
let home: string;
/** The repository's key, armored; another key, binary (both forms are accepted). */
let goodKey: string;
let otherKey: string;

const gpg = (...args: string[]) => execa('gpg', ['--homedir', home, '--batch', '--yes', ...args]);

before(async () => {
  work = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-signed-'));
  home = path.join(work, 'gnupg');
  await execa('mkdir', ['-m', '700', home]);
  for (const uid of ['good <good@example.test>', 'other <other@example.test>']) {
    await gpg(
      '--passphrase',
      '',
      '--pinentry-mode',
      'loopback',
      '--quick-gen-key',
      uid,
      'ed25519',
      'sign',
      'never',
    );
  }
  goodKey = path.join(work, 'good.asc');
  otherKey = path.join(work, 'other.gpg');
  await gpg('--armor', '--output', goodKey, '--export', 'good@example.test');
  await gpg('--output', otherKey, '--export', 'other@example.test');
});
after(() => rm(work, { recursive: true, force: true }));

/** Signs `text` as `who`: a detached armored signature, or the clearsigned text. */
async function sign(text: string | Buffer, who: 'good' | 'other', mode: 'detach' | 'clear'): Promise<string> {
  const input = path.join(work, `in-${Math.random().toString(36).slice(2)}`);
  await writeFile(input, text);
  const out = `${input}.sig`;
  const how = mode === 'detach' ? ['--armor', '--detach-sign'] : ['--clearsign'];
  await gpg('--local-user', `${who}@example.test`, ...how, '--output', out, input);
  return readFile(out, 'utf8');
}

async function setup(label: string, type: 'yum' | 'deb', files: Map<string, Buffer | string>) {
  const env = await testEnv(label);
  const up = await startUpstream();
  const prefix = `/${type}/`;
  const serve = (f: Map<string, Buffer | string>) => {
    for (const k of [...up.files.keys()]) up.files.delete(k);
    for (const [rel, body] of f) up.files.set(`${prefix}${rel}`, body);
  };
  serve(files);
  const r = await runCli(
    ['repo', 'create', 'r', '--type', type, '--feed', `${up.url}${type}/`, '--gpg-key', goodKey],
    {
      env: env.env,
    },
  );
  assert.equal(r.code, 0, r.stderr);
  after(() => new Promise<void>((resolve) => up.server.close(() => resolve())));
  return { env, up, serve };
}

async function sync(env: TestEnv) {
  return runCli(['sync', 'r'], { env: env.env });
}

/** The published tree's version directory (the top link's target). */
const published = (env: TestEnv) => readlink(path.join(env.config.paths.published, 'r'));

async function refused(env: TestEnv, up: Upstream, pattern: RegExp, what: string) {
  const treeBefore = await published(env);
  const r = await sync(env);
  assert.equal(r.code, 1, `${what}: ${r.stderr}`);
  assert.equal(r.stderr.trim().split('\n').length, 1, `${what}: ${r.stderr}`);
  assert.match(r.stderr, pattern, what);
  assert.equal(await published(env), treeBefore, `${what}: the published tree is unchanged`);
  assert.ok(up.total() > 0);
}

test('yum: a good repomd.xml.asc syncs; tampered, unsigned or signed by another key is refused', async () => {
  const gen = await generateYumRepo(5, work);
  const repomd = String(gen.files.get('repodata/repomd.xml'));
  const files = new Map(gen.files);
  files.set('repodata/repomd.xml.asc', await sign(repomd, 'good', 'detach'));
  const { env, up, serve } = await setup('signed-yum', 'yum', files);
  const ok = await sync(env);
  assert.equal(ok.code, 0, ok.stderr);
  const good = await published(env);
  assert.equal(
    await readFile(path.join(env.config.paths.published, 'r', 'repodata/repomd.xml'), 'utf8'),
    repomd,
  );

  const tampered = repomd.replace('<revision>1</revision>', '<revision>2</revision>');
  assert.notEqual(tampered, repomd);
  serve(new Map([...files, ['repodata/repomd.xml', tampered]]));
  await refused(
    env,
    up,
    /PL_BAD_SIGNATURE|repodata\/repomd\.xml: signature check failed: BAD signature/,
    'tampered',
  );

  const unsigned = new Map(files);
  unsigned.delete('repodata/repomd.xml.asc');
  serve(unsigned);
  await refused(env, up, /repodata\/repomd\.xml: not signed/, 'unsigned');

  serve(new Map([...files, ['repodata/repomd.xml.asc', await sign(repomd, 'other', 'detach')]]));
  await refused(env, up, /signature check failed: .*(No public key|public key not found)/i, 'other key');

  // The refusals come from the key: with the repository's key replaced by the signer's, or none, it syncs.
  serve(new Map([...files, ['repodata/repomd.xml', tampered]]));
  const update = await runCli(['repo', 'update', 'r', '--gpg-key', ''], { env: env.env });
  assert.equal(update.code, 0, update.stderr);
  const unchecked = await sync(env);
  assert.equal(unchecked.code, 0, unchecked.stderr);
  assert.notEqual(await published(env), good);
});

test('deb: InRelease or Release + Release.gpg with a good signature syncs; tampered or unsigned is refused', async () => {
  const gen = generateDebRepo(4);
  const release = gen.files.get('dists/stable/Release')!.toString();
  const indexes = new Map([...gen.files].filter(([k]) => k !== 'dists/stable/Release'));
  const inRelease = await sign(release, 'good', 'clear');
  const withInRelease = new Map<string, Buffer | string>([...indexes, ['dists/stable/InRelease', inRelease]]);
  const { env, up, serve } = await setup('signed-deb', 'deb', withInRelease);
  const ok = await sync(env);
  assert.equal(ok.code, 0, ok.stderr);

  // A hash line changed inside the signed text: gpgv refuses it (the parse of the file alone would not).
  const line = release.split('\n').find((l) => l.includes('Packages.gz'))!;
  const forged = line.replace(/[0-9a-f]{8}/, '00000000');
  serve(new Map([...withInRelease, ['dists/stable/InRelease', inRelease.replace(line, forged)]]));
  await refused(
    env,
    up,
    /dists\/stable\/InRelease: signature check failed: BAD signature/,
    'tampered InRelease',
  );

  const detached = new Map<string, Buffer | string>([
    ...indexes,
    ['dists/stable/Release', release],
    ['dists/stable/Release.gpg', await sign(release, 'good', 'detach')],
  ]);
  serve(detached);
  const ok2 = await sync(env);
  assert.equal(ok2.code, 0, ok2.stderr);

  serve(new Map([...detached, ['dists/stable/Release', release.replace(line, forged)]]));
  await refused(env, up, /dists\/stable\/Release: signature check failed: BAD signature/, 'tampered Release');

  serve(new Map<string, Buffer | string>([...indexes, ['dists/stable/Release', release]]));
  await refused(env, up, /dists\/stable\/Release: not signed/, 'unsigned Release');
});

test('--gpg-key must be an OpenPGP public key: one-line error, exit 2', async () => {
  const env = await testEnv('signed-key');
  const notKey = path.join(work, 'not-a-key.asc');
  await writeFile(
    notKey,
    '-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nbm90IGEga2V5\n-----END PGP PUBLIC KEY BLOCK-----\n',
  );
  for (const [file, re] of [
    [notKey, /is not an OpenPGP public key/],
    [path.join(work, 'missing.asc'), /cannot read --gpg-key/],
  ] as const) {
    const r = await runCli(
      ['repo', 'create', 'k', '--type', 'yum', '--feed', 'http://127.0.0.1:9/', '--gpg-key', file],
      {
        env: env.env,
      },
    );
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, re);
  }
  const binary = await runCli(
    [
      'repo',
      'create',
      'k',
      '--type',
      'yum',
      '--feed',
      'http://127.0.0.1:9/',
      '--gpg-key',
      otherKey,
      '--json',
    ],
    { env: env.env },
  );
  assert.equal(binary.code, 0, binary.stderr);
  assert.equal(JSON.parse(binary.stdout).signed_metadata, true);
});
