import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { loadPrivateKey, PRIVATE_KEY_FILE, PUBLIC_KEY_FILE, signUrl } from '../src/signing/index.ts';
import { type CliResult, runCli } from './helpers/cli.ts';
import { type TestEnv, testEnv } from './helpers/env.ts';

const cli = (env: TestEnv, args: string[]) => runCli(args, { env: env.env });

function oneLineError(r: CliResult, code: number, re: RegExp): void {
  assert.equal(r.code, code, `exit ${r.code}: ${r.stderr}`);
  assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
  assert.match(r.stderr.trim(), re);
}

async function withKeys(label: string, extra: Parameters<typeof testEnv>[1] = {}): Promise<TestEnv> {
  const env = await testEnv(label, extra);
  const r = await cli(env, ['keys', 'generate']);
  assert.equal(r.code, 0, r.stderr);
  return env;
}

test('keys generate: creates the pair (private 0600), then keeps it unless --force', async () => {
  const env = await testEnv('cli-keys');
  const dir = env.config.paths.keys;
  const first = await cli(env, ['keys', 'generate']);
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, new RegExp(`created private key ${path.join(dir, PRIVATE_KEY_FILE)}`));
  assert.match(first.stdout, new RegExp(`created public key ${path.join(dir, PUBLIC_KEY_FILE)}`));
  assert.equal((await stat(path.join(dir, PRIVATE_KEY_FILE))).mode & 0o777, 0o600);
  const pem = await readFile(path.join(dir, PRIVATE_KEY_FILE), 'utf8');

  const again = await cli(env, ['keys', 'generate', '--json']);
  assert.equal(again.code, 0, again.stderr);
  assert.deepEqual(JSON.parse(again.stdout), {
    privatePath: path.join(dir, PRIVATE_KEY_FILE),
    publicPath: path.join(dir, PUBLIC_KEY_FILE),
    created: false,
  });
  assert.equal(await readFile(path.join(dir, PRIVATE_KEY_FILE), 'utf8'), pem);
  const human = await cli(env, ['keys', 'generate']);
  assert.match(human.stdout, /already exist.*--force/);

  const forced = await cli(env, ['keys', 'generate', '--force', '--json']);
  assert.equal(forced.code, 0, forced.stderr);
  assert.equal(JSON.parse(forced.stdout).created, true);
  assert.notEqual(await readFile(path.join(dir, PRIVATE_KEY_FILE), 'utf8'), pem);
});

test('url sign builds the redirect URL from config defaults; url verify accepts it (exit 0)', async () => {
  const env = await withKeys('cli-url-default');
  const s = await cli(env, ['url', 'sign', '/var/lib/pulp-lazy/content/units/a%20b.rpm']);
  assert.equal(s.code, 0, s.stderr);
  const url = s.stdout.trim();
  assert.match(
    url,
    /^http:\/\/127\.0\.0\.1:8081\/streamer\/var\/lib\/pulp-lazy\/content\/units\/a%20b\.rpm\?policy=[\w-]+&signature=[\w-]{86}$/,
  );
  const v = await cli(env, ['url', 'verify', url]);
  assert.equal(v.code, 0, v.stderr);
  const m = /^valid \(expires in (\d+)s\)$/.exec(v.stdout.trim());
  assert.ok(m, v.stdout);
  // signing.ttl defaults to 90 s; the URL cannot have more left than that.
  assert.ok(Number(m[1]) <= 90 && Number(m[1]) > 0, v.stdout);
  // The raw request target (Apache's REQUEST_URI) is accepted too.
  const target = url.slice('http://127.0.0.1:8081'.length);
  assert.equal((await cli(env, ['url', 'verify', target])).code, 0);
});

test('url sign uses redirect.scheme/host/port/path, --ttl and --json; absolute URLs are signed as is', async () => {
  const env = await withKeys('cli-url-redirect', {
    redirect: { scheme: 'https', host: '::1', port: 8443, path: '/stream/' },
  });
  const s = await cli(env, ['url', 'sign', 'a/b.rpm', '--ttl', '3600', '--json']);
  assert.equal(s.code, 0, s.stderr);
  const out = JSON.parse(s.stdout);
  assert.match(out.url, /^https:\/\/\[::1\]:8443\/stream\/a\/b\.rpm\?policy=/);
  // --ttl 3600 replaced the 90 s default.
  const left = out.expiration - Date.now() / 1000;
  assert.ok(left > 600 && left <= 3601, `${left}`);
  assert.equal(out.expiresAt, new Date(out.expiration * 1000).toISOString());
  const v = await cli(env, ['url', 'verify', out.url, '--json']);
  assert.equal(v.code, 0, v.stderr);
  const policy = JSON.parse(v.stdout);
  assert.equal(policy.valid, true);
  assert.equal(policy.resource, '/stream/a/b.rpm');
  assert.ok(policy.expiresIn > 600 && policy.expiresIn <= 3600, `${policy.expiresIn}`);

  const abs = await cli(env, ['url', 'sign', 'http://proxy.test:81/streamer/x?y=1']);
  assert.equal(abs.code, 0, abs.stderr);
  assert.match(
    abs.stdout.trim(),
    /^http:\/\/proxy\.test:81\/streamer\/x\?y=1&policy=[\w-]+&signature=[\w-]+$/,
  );
});

test('url verify: invalid URLs exit 1 with one line naming the reason, never the signature', async () => {
  const env = await withKeys('cli-url-invalid');
  const s = await cli(env, ['url', 'sign', '/a.rpm', '--remote-ip', '192.0.2.7']);
  const url = s.stdout.trim();
  const sig = /signature=([\w-]+)/.exec(url)![1]!;

  assert.equal((await cli(env, ['url', 'verify', url, '--remote-ip', '192.0.2.7'])).code, 0);
  const cases: Array<[string, string[], RegExp]> = [
    [url, [], /^pulp-lazy: invalid: PL_SIG_EXTENSION_MISMATCH: /],
    [url, ['--remote-ip', '192.0.2.8'], /^pulp-lazy: invalid: PL_SIG_EXTENSION_MISMATCH: .*remote_ip/],
    [url.replace('/a.rpm', '/b.rpm'), ['--remote-ip', '192.0.2.7'], /invalid: PL_SIG_RESOURCE_MISMATCH: /],
    [
      url.replace(sig, `${sig.slice(0, 20)}${sig[20] === 'A' ? 'B' : 'A'}${sig.slice(21)}`),
      [],
      /invalid: PL_SIG_BAD_SIGNATURE/,
    ],
    [url.replace(/&signature=.*/, ''), [], /^pulp-lazy: invalid: PL_SIG_NOT_SIGNED: /],
    [url.slice(0, -3), [], /^pulp-lazy: invalid: PL_SIG_MALFORMED: /],
  ];
  for (const [u, extra, re] of cases) {
    const r = await cli(env, ['url', 'verify', u, ...extra]);
    oneLineError(r, 1, re);
    assert.ok(
      !r.stderr.includes(sig.slice(0, 40)) && !r.stdout.includes(sig.slice(0, 40)),
      'signature echoed',
    );
  }
  const json = await cli(env, ['url', 'verify', url, '--json']);
  assert.equal(json.code, 1);
  assert.deepEqual(Object.keys(JSON.parse(json.stdout)), ['valid', 'code', 'message']);

  // Expired: signed in-process an hour ago with the same key.
  const old = signUrl('/a.rpm', {
    privateKey: loadPrivateKey(env.config.paths.keys),
    ttlMs: 60_000,
    now: Date.now() - 3_600_000,
  });
  oneLineError(
    await cli(env, ['url', 'verify', old]),
    1,
    /^pulp-lazy: invalid: PL_SIG_EXPIRED: URL expired \d+s ago/,
  );
});

test('usage errors exit 2 with one line: bad --ttl, bad --remote-ip, unsignable path, missing keys', async () => {
  const env = await withKeys('cli-url-usage');
  for (const ttl of ['0', '-5', 'abc', '1.5', '', '99999999999999999999']) {
    oneLineError(
      await cli(env, ['url', 'sign', '/a.rpm', `--ttl=${ttl}`]),
      2,
      /--ttl must be a positive whole number/,
    );
  }
  oneLineError(
    await cli(env, ['url', 'sign', '/a.rpm', '--remote-ip', 'nope']),
    2,
    /--remote-ip must be an IP/,
  );
  oneLineError(
    await cli(env, ['url', 'verify', '/a.rpm', '--remote-ip', '1.2.3']),
    2,
    /--remote-ip must be an IP/,
  );
  oneLineError(await cli(env, ['url', 'sign', '/a b.rpm']), 2, /cannot sign .*percent-encode/);
  oneLineError(await cli(env, ['url', 'sign', '/a/../b.rpm']), 2, /cannot sign .*"\.\."/);
  oneLineError(await cli(env, ['url', 'sign']), 2, /missing required argument/);

  const bare = await testEnv('cli-url-nokeys');
  const keyFile = path.join(bare.config.paths.keys, PRIVATE_KEY_FILE);
  oneLineError(
    await cli(bare, ['url', 'sign', '/a.rpm']),
    2,
    new RegExp(`PL_KEY_MISSING|${keyFile}.*does not exist`),
  );
  const pubFile = path.join(bare.config.paths.keys, PUBLIC_KEY_FILE);
  oneLineError(
    await cli(bare, ['url', 'verify', '/a.rpm?policy=a&signature=b']),
    2,
    new RegExp(`${pubFile} does not exist`),
  );
});
