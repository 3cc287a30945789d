/**
 * `repo create` / `repo update` settings through the CLI against the test
 * database: each setting changes what it names and nothing else, bad values
 * are one-line errors that change nothing, and `repo show --json` never
 * holds a private key, a password or a credential header's value.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { connect, type Database } from '../src/db/index.ts';
import { selfSigned } from './helpers/chain.ts';
import { runCli } from './helpers/cli.ts';
import { mongoUrl } from './helpers/db.ts';
import { type TestEnv, testEnv } from './helpers/env.ts';

const te: TestEnv = await testEnv('repo-update');
let db: Database;
let certFile: string;
let keyFile: string;
let keyPem: string;

before(async () => {
  db = await connect(mongoUrl(), te.dbName);
  await selfSigned(te.root, 'client');
  certFile = path.join(te.root, 'client.pem');
  keyFile = path.join(te.root, 'client.key');
  keyPem = await readFile(keyFile, 'utf8');
});
after(async () => {
  await db.db.dropDatabase().catch(() => {});
  await db.close();
});

async function cli(...args: string[]) {
  return runCli(args, { env: te.env });
}

async function show(name: string): Promise<Record<string, unknown>> {
  const r = await cli('repo', 'show', name, '--json');
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

test('create takes the new settings; show reports them with defaults', async () => {
  let r = await cli('repo', 'create', 'plain', '--type', 'file', '--feed', 'http://127.0.0.1:9/plain/');
  assert.equal(r.code, 0, r.stderr);
  const plain = await show('plain');
  assert.equal(plain.policy, 'on_demand');
  assert.equal(plain.sync_interval, 'off');
  assert.deepEqual((plain.upstream as Record<string, unknown>).headers, []);

  r = await cli(
    'repo',
    'create',
    'tuned',
    '--type',
    'yum',
    '--feed',
    'http://127.0.0.1:9/el/',
    '--policy',
    'background',
    '--sync-interval',
    '6h',
    '--header',
    'X-Mirror: ours',
    '--max-connections',
    '4',
    '--rate-limit',
    '2.5',
  );
  assert.equal(r.code, 0, r.stderr);
  const tuned = await show('tuned');
  assert.equal(tuned.policy, 'background');
  assert.equal(tuned.sync_interval, '6h');
  const up = tuned.upstream as Record<string, unknown>;
  assert.deepEqual(up.headers, ['X-Mirror: ours']);
  assert.equal(up.max_connections, 4);
  assert.equal(up.rate_limit, 2.5);
  const doc = await db.repos.findOne({ _id: 'tuned' });
  assert.equal(doc?.sync_interval_ms, 6 * 3_600_000);
});

test('update changes what it names and keeps the rest; secrets never shown', async () => {
  let r = await cli(
    'repo',
    'create',
    'u',
    '--type',
    'deb',
    '--feed',
    'http://127.0.0.1:9/debian',
    '--dists',
    'stable',
    '--basic-auth',
    'mirror:s3cret-pass',
    '--header',
    'X-Keep: yes',
  );
  assert.equal(r.code, 0, r.stderr);
  const before = await db.repos.findOne({ _id: 'u' });

  r = await cli(
    'repo',
    'update',
    'u',
    '--client-cert',
    certFile,
    '--client-key',
    keyFile,
    '--header',
    'Authorization: Bearer tok-123',
    '--policy',
    'immediate',
    '--components',
    'main,contrib',
    '--json',
  );
  assert.equal(r.code, 0, r.stderr);
  for (const secret of ['PRIVATE KEY', 's3cret-pass', 'tok-123'])
    assert.ok(!r.stdout.includes(secret), secret);
  const after = await db.repos.findOne({ _id: 'u' });
  assert.ok(after && before);
  assert.equal(after.upstream.client_key, keyPem);
  assert.ok(after.upstream.client_cert?.includes('BEGIN CERTIFICATE'));
  assert.deepEqual(after.upstream.headers, [
    { name: 'X-Keep', value: 'yes' },
    { name: 'Authorization', value: 'Bearer tok-123' },
  ]);
  assert.equal(after.policy, 'immediate');
  assert.deepEqual(after.options, { dists: ['stable'], components: ['main', 'contrib'] });
  // Untouched: feed, credentials, importer id (so the catalog stays), published path.
  assert.equal(after.feed, before.feed);
  assert.deepEqual(after.upstream.basic_auth, before.upstream.basic_auth);
  assert.equal(after.importer_id, before.importer_id);
  assert.equal(after.published_path, before.published_path);

  const shown = JSON.stringify(await show('u'));
  for (const secret of ['PRIVATE KEY', 's3cret-pass', 'tok-123']) assert.ok(!shown.includes(secret), secret);
  assert.match(shown, /Authorization: \*\*\*/);

  // Removing and clearing: a header by 'Name:', the client certificate by '', the feed replaced.
  r = await cli(
    'repo',
    'update',
    'u',
    '--header',
    'authorization:',
    '--client-cert',
    '',
    '--client-key',
    '',
    '--basic-auth',
    '',
    '--feed',
    'http://127.0.0.1:9/debian2',
    '--sync-interval',
    '30m',
  );
  assert.equal(r.code, 0, r.stderr);
  const cleared = await db.repos.findOne({ _id: 'u' });
  assert.deepEqual(cleared?.upstream.headers, [{ name: 'X-Keep', value: 'yes' }]);
  assert.equal(cleared?.upstream.client_cert, undefined);
  assert.equal(cleared?.upstream.client_key, undefined);
  assert.equal(cleared?.upstream.basic_auth, undefined);
  assert.equal(cleared?.feed, 'http://127.0.0.1:9/debian2/');
  assert.equal(cleared?.sync_interval_ms, 30 * 60_000);
  assert.equal(cleared?.importer_id, before.importer_id);

  r = await cli('repo', 'update', 'u', '--sync-interval', 'off', '--max-connections', '0');
  assert.equal(r.code, 0, r.stderr);
  assert.equal((await show('u')).sync_interval, 'off');
});

test('bad update input: one-line error, exit 2, nothing changed', async () => {
  const r0 = await cli('repo', 'create', 'b', '--type', 'file', '--feed', 'http://127.0.0.1:9/b/');
  assert.equal(r0.code, 0, r0.stderr);
  const before = await db.repos.findOne({ _id: 'b' });
  const cases: Array<[string[], RegExp]> = [
    [['--policy', 'eager'], /argument 'eager' is invalid|bad --policy/],
    [['--sync-interval', 'soon'], /bad --sync-interval/],
    [['--sync-interval', '10s'], /at least 1m/],
    [['--max-connections', '2.5'], /bad --max-connections/],
    [['--rate-limit', '-1'], /bad --rate-limit/],
    [['--header', 'no colon'], /bad --header/],
    [['--header', 'Host: evil'], /cannot set Host/],
    [['--client-cert', certFile], /go together/],
    [['--client-key', certFile, '--client-cert', certFile], /client key .* is not a valid PEM/],
    [['--feed', 'ftp://x/'], /only http and https/],
    [[], /nothing to change/],
  ];
  for (const [args, re] of cases) {
    const r = await cli('repo', 'update', 'b', ...args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, re);
  }
  const missing = await cli('repo', 'update', 'nope', '--policy', 'streamed');
  assert.notEqual(missing.code, 0);
  assert.match(missing.stderr, /nope/);
  assert.deepEqual(await db.repos.findOne({ _id: 'b' }), before);
});
