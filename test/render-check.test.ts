/**
 * The rendered configs pass Apache's and Squid's own parsers (`apache2 -t`,
 * `squid -k parse`), for the default, TLS and cache-less variants, and the
 * `pulp-lazy config render|check|show` commands work end to end.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { type Config, parseConfig, rootedPaths } from '../src/config.ts';
import { checkConfigs } from '../src/render/check.ts';
import { selfSigned } from './helpers/chain.ts';
import { runCli } from './helpers/cli.ts';
import { testEnv } from './helpers/env.ts';

async function config(raw: Record<string, Record<string, unknown>>): Promise<Config> {
  const root = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-render-'));
  after(() => rm(root, { recursive: true, force: true }));
  return parseConfig({ paths: rootedPaths(root), ...raw }, 't', {});
}

test('default config: apache2 -t and squid -k parse accept it', async () => {
  const results = await checkConfigs(await config({}));
  assert.deepEqual(
    results.map((r) => [r.file, r.ok]),
    [
      ['httpd.conf', true],
      ['squid.conf', true],
    ],
    JSON.stringify(results),
  );
});

test('TLS (with and without a client CA) and proxy.cache = "none" with unix sockets pass apache2 -t', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-tls-'));
  after(() => rm(dir, { recursive: true, force: true }));
  const { cert, key } = await selfSigned(dir, 'localhost');
  for (const apache of [
    { tls_cert: cert, tls_key: key, tls_ca: cert },
    { tls_cert: cert, tls_key: key },
  ]) {
    const results = await checkConfigs(await config({ apache }));
    assert.equal(results.find((r) => r.file === 'httpd.conf')?.ok, true, JSON.stringify(results));
  }
  const none = await checkConfigs(
    await config({
      proxy: { cache: 'none' },
      streamer: { listen: 'unix:/run/pulp-lazy/streamer.sock' },
      content: { listen: 'unix:/run/pulp-lazy/content.sock' },
    }),
  );
  assert.deepEqual(
    none.map((r) => [r.file, r.ok]),
    [['httpd.conf', true]],
  );
});

test('apache.fast_path with protected paths passes apache2 -t', async () => {
  const results = await checkConfigs(
    await config({
      apache: { fast_path: true, protected_paths: ['rhel9-entitled', 'a/b'] },
      proxy: { cache: 'none' },
    }),
  );
  assert.deepEqual(
    results.map((r) => [r.file, r.ok]),
    [['httpd.conf', true]],
    JSON.stringify(results),
  );
});

test('a config Apache refuses is reported as failed with its message', async () => {
  const results = await checkConfigs(
    await config({ apache: { tls_cert: '/nonexistent/c.pem', tls_key: '/nonexistent/k.pem' } }),
  );
  const httpd = results.find((r) => r.file === 'httpd.conf')!;
  assert.equal(httpd.ok, false);
  assert.match(httpd.message, /nonexistent\/c\.pem/);
});

test('pulp-lazy config render --out, render, check, show', { timeout: 120_000 }, async () => {
  const env = await testEnv('config-cmd', { squid: { shutdown_lifetime: '0s' } });
  const out = path.join(env.root, 'rendered');
  const r = await runCli(['config', 'render', '--out', out], { env: env.env });
  assert.equal(r.code, 0, r.stderr);
  assert.deepEqual(r.stdout.trim().split('\n'), [path.join(out, 'httpd.conf'), path.join(out, 'squid.conf')]);
  const squid = await readFile(path.join(out, 'squid.conf'), 'utf8');
  assert.match(squid, /shutdown_lifetime 0 seconds/);
  assert.match(squid, new RegExp(`cache_dir ufs ${env.config.paths.cache}/squid `));

  const printed = await runCli(['config', 'render'], { env: env.env });
  assert.equal(printed.code, 0, printed.stderr);
  assert.match(printed.stdout, /^# ==> httpd\.conf <==\n/);
  assert.match(printed.stdout, /\n# ==> squid\.conf <==\n/);

  const check = await runCli(['config', 'check'], { env: env.env });
  assert.equal(check.code, 0, check.stderr + check.stdout);
  assert.match(check.stdout, /^httpd\.conf: ok \(apache2 -t\)$/m);
  assert.match(check.stdout, /^squid\.conf: ok \(squid -k parse\)$/m);

  const show = await runCli(['config', 'show', '--json'], { env: env.env });
  assert.equal(show.code, 0, show.stderr);
  const shown = JSON.parse(show.stdout);
  assert.equal(shown.source, env.configPath);
  assert.equal(shown.config.squid.shutdown_lifetime, 0);
  assert.equal(shown.config.paths.cache, env.config.paths.cache);

  const text = await runCli(['config', 'show'], { env: env.env });
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, /^\[signing\]\nttl = "90000ms"$/m);
  assert.match(text.stdout, /^port = 3128$/m);
});

test('config check fails with exit 1 when Apache refuses the config', { timeout: 60_000 }, async () => {
  const env = await testEnv('config-bad', {
    apache: { tls_cert: '/nonexistent/c.pem', tls_key: '/nonexistent/k.pem' },
  });
  const r = await runCli(['config', 'check'], { env: env.env });
  assert.equal(r.code, 1);
  assert.match(r.stdout, /^httpd\.conf: FAILED/m);
  assert.match(r.stderr, /^pulp-lazy: httpd\.conf failed the syntax check$/m);
});
