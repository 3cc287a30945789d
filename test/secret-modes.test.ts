/**
 * Stored secrets are readable by their owner only (#22): the config `init`
 * writes (it may hold the database password) is 0600 and an older, wider
 * one is narrowed; the keys dir is 0700 even when it existed wider; the dev
 * database's data dir (every repository's client keys and passwords) is
 * 0700 and its files 0600, whatever created them.
 */
import assert from 'node:assert/strict';
import { chmod, mkdir, mkdtemp, readdir, rm, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { connect } from '../src/db/index.ts';
import { startDevDb } from '../src/devdb.ts';
import { runCli } from './helpers/cli.ts';
import { mongoUrl } from './helpers/db.ts';

const modeOf = async (p: string) => (await stat(p)).mode & 0o777;

async function tmpRoot(label: string): Promise<string> {
  const root = await mkdtemp(path.join(tmpdir(), `pulp-lazy-${label}-`));
  after(() => rm(root, { recursive: true, force: true }));
  return root;
}

test('init: config 0600 (an older 0644 one narrowed), keys dir 0700 even when it existed wider', async () => {
  const root = await tmpRoot('modes-init');
  const keys = path.join(root, 'etc/pulp-lazy/keys');
  await mkdir(keys, { recursive: true, mode: 0o755 });
  await chmod(keys, 0o755);
  const args = [
    'init',
    '--root',
    root,
    '--yes',
    '--skip-db',
    '--mongodb-url',
    mongoUrl(),
    '--content-port',
    '28290',
    '--streamer-port',
    '28291',
    '--skip-check',
  ];
  const first = await runCli(args);
  assert.equal(first.code, 0, first.stderr);
  const cfg = path.join(root, 'etc/pulp-lazy/config.toml');
  assert.equal(await modeOf(cfg), 0o600);
  assert.equal(await modeOf(keys), 0o700);
  assert.equal(await modeOf(path.join(keys, 'signing.key')), 0o600);

  await chmod(cfg, 0o644);
  const again = await runCli(args);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /nothing changed/);
  assert.equal(await modeOf(cfg), 0o600);
});

test('dev database: data dir 0700 and its files 0600, also when they were made wider', async () => {
  const root = await tmpRoot('modes-devdb');
  const data = path.join(root, 'devdb');
  const first = await startDevDb({ dataDir: data, stderr: 'ignore' });
  after(() => first.stop());
  const client = await connect(first.url, 'secrets');
  await client.repos.insertOne({ _id: 'x', upstream: { client_key: 'PRIVATE' } } as never);
  await client.close();
  await first.stop();
  assert.equal(await modeOf(data), 0o700);
  const files = await readdir(data);
  assert.ok(files.length > 0, 'the database wrote files');
  // Files of a database created while it ran (secrets.sqlite) too, not only those narrowed at start.
  for (const f of files) assert.equal(await modeOf(path.join(data, f)), 0o600, `made while running: ${f}`);
  // Widened by hand, or left by an older launcher: narrowed at the next start.
  await chmod(data, 0o755);
  for (const f of files) await chmod(path.join(data, f), 0o644);
  const second = await startDevDb({ dataDir: data, stderr: 'ignore' });
  after(() => second.stop());
  assert.equal(await modeOf(data), 0o700);
  for (const f of files) assert.equal(await modeOf(path.join(data, f)), 0o600, f);
});
