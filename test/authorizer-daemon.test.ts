/**
 * The authorizer daemon as Apache's mod_authnz_fcgi sees it: valid signed
 * URLs get 200 + Variable-SIG_USER, everything else 403 naming the reason;
 * concurrent checks, malformed input and slow clients do not disturb others;
 * `pulp-lazy run authorizer` exits 0 on SIGTERM.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import net from 'node:net';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import type { Config } from '../src/config.ts';
import { createAuthorizer } from '../src/daemons/authorizer.ts';
import { healthCheck } from '../src/fastcgi/health.ts';
import { silentLogger } from '../src/log.ts';
import { generateKeys, loadPrivateKey, signUrl } from '../src/signing/index.ts';
import { BIN, ROOT } from './helpers/cli.ts';
import { testEnv } from './helpers/env.ts';
import { authorize, beginRequest, exchange, record } from './helpers/fcgi.ts';

const FILE = '/streamer/var/lib/pulp-lazy/content/units/rpm/ab/cdef/foo-1.0-1.x86_64.rpm';
const IP = '192.0.2.10';

async function start(label: string, content: Record<string, unknown> = {}) {
  const env = await testEnv(label, { apache: { authorizer_listen: '127.0.0.1:0' }, content });
  await generateKeys(env.config.paths.keys);
  const auth = createAuthorizer(env.config, { logger: silentLogger });
  const { port } = await auth.listen();
  const privateKey = loadPrivateKey(env.config.paths.keys);
  const sign = (url = FILE, opts: { now?: number; ip?: string | null } = {}) =>
    signUrl(url, {
      privateKey,
      ttlMs: 90_000,
      now: opts.now ?? Date.now(),
      extensions: opts.ip === null ? {} : { remote_ip: opts.ip ?? IP },
    });
  return { env, auth, port, sign };
}

const params = (uri: string, ip = IP) => ({
  REQUEST_URI: uri,
  REMOTE_ADDR: ip,
  REQUEST_METHOD: 'GET',
  FCGI_ROLE: 'AUTHORIZER',
  FCGI_APACHE_ROLE: 'AUTHENTICATOR',
});

test('valid URL: 200 with Variable-SIG_USER; forged, expired, other path, other IP, unsigned: 403 with the reason', async (t) => {
  const { auth, port, sign } = await start('auth-verdicts');
  t.after(() => auth.close());

  const ok = await authorize(port, params(sign()));
  assert.equal(ok.status, 200);
  assert.equal(ok.headers['Variable-SIG_USER'], 'signed');

  const good = sign();
  const sig = /signature=([^&]+)/.exec(good)![1]!;
  const forged = good.replace(sig, (sig[0] === 'A' ? 'B' : 'A') + sig.slice(1));
  const cases: Array<[string, string, string]> = [
    ['forged', forged, 'PL_SIG_BAD_SIGNATURE'],
    ['expired', sign(FILE, { now: Date.now() - 3_600_000 }), 'PL_SIG_EXPIRED'],
    ['other path', good.replace('foo-1.0-1', 'bar-1.0-1'), 'PL_SIG_RESOURCE_MISMATCH'],
    ['unsigned', FILE, 'PL_SIG_NOT_SIGNED'],
    ['garbage policy', `${FILE}?policy=%%%&signature=x`, 'PL_SIG_MALFORMED'],
  ];
  for (const [name, uri, code] of cases) {
    const a = await authorize(port, params(uri));
    assert.equal(a.status, 403, name);
    assert.equal(a.headers['Variable-SIG_USER'], undefined, name);
    assert.ok(a.body.startsWith(`${code} `), `${name}: ${a.body}`);
    assert.ok(!a.body.includes(sig), `${name}: the body never echoes the signature`);
  }
  const otherIp = await authorize(port, params(good, '198.51.100.7'));
  assert.equal(otherIp.status, 403);
  assert.match(otherIp.body, /^PL_SIG_EXTENSION_MISMATCH /);

  const { REQUEST_URI: _omit, ...noUri } = params(good);
  const missing = await authorize(port, noUri);
  assert.equal(missing.status, 403);
  assert.match(missing.body, /^PL_SIG_MALFORMED no REQUEST_URI/);
});

test('with content.bind_remote_ip = false the client address is not checked', async (t) => {
  const { auth, port, sign } = await start('auth-nobind', { bind_remote_ip: false });
  t.after(() => auth.close());
  assert.equal((await authorize(port, params(sign(FILE, { ip: null }), '198.51.100.7'))).status, 200);
  // A URL bound to an address cannot be checked without one: refused.
  assert.equal((await authorize(port, params(sign(FILE), IP))).status, 403);
});

test('concurrent checks on separate connections each get their own verdict', async (t) => {
  const { auth, port, sign } = await start('auth-concurrent');
  t.after(() => auth.close());
  const jobs = Array.from({ length: 60 }, (_, i) => {
    const uri =
      i % 3 === 0
        ? sign(`/streamer/f/${i}.rpm`).replace(`/${i}.rpm`, `/${i + 1}.rpm`)
        : sign(`/streamer/f/${i}.rpm`);
    return authorize(port, params(uri), (i % 5) + 1).then((a) => ({ i, a }));
  });
  for (const { i, a } of await Promise.all(jobs)) {
    assert.equal(a.status, i % 3 === 0 ? 403 : 200, `request ${i}`);
    assert.equal(a.id, (i % 5) + 1);
  }
});

test('malformed records close that connection, a slowloris partial record blocks nobody, close() is prompt', async (t) => {
  const { auth, port, sign } = await start('auth-malformed');
  let closed = false;
  t.after(() => (closed ? undefined : auth.close()));

  const bad = await exchange(port, [Buffer.from([9, 9, 9, 9, 9, 9, 9, 9]), record(4, 1)]);
  assert.equal(bad.closed, true);
  const truncated = await exchange(port, [beginRequest(1), record(4, 1, Buffer.from([0x80])), record(4, 1)]);
  assert.equal(truncated.closed, true);
  assert.equal(truncated.records.length, 0);

  const slow = net.connect({ host: '127.0.0.1', port });
  await once(slow, 'connect');
  slow.write(beginRequest(1));
  slow.write(Buffer.from([1, 4, 0, 1, 0, 200])); // half a PARAMS header, then nothing
  slow.on('error', () => {});
  const answers = await Promise.all(Array.from({ length: 10 }, () => authorize(port, params(sign()))));
  assert.ok(answers.every((a) => a.status === 200));
  assert.equal(slow.destroyed, false, 'the slow client is still connected');

  const t0 = Date.now();
  await auth.close();
  closed = true;
  assert.ok(Date.now() - t0 < 5000, 'close() does not wait for the idle slow client');
  await assert.rejects(healthCheck({ host: '127.0.0.1', port }, { timeoutMs: 500 }), {
    code: 'PL_FCGI_UNHEALTHY',
  });
});

test('a unix socket authorizer_listen is refused (mod_authnz_fcgi is TCP only)', async () => {
  const env = await testEnv('auth-unix', { apache: { authorizer_listen: 'unix:/tmp/x.sock' } });
  const config: Config = env.config;
  assert.throws(() => createAuthorizer(config, { logger: silentLogger }), {
    code: 'PL_CONFIG',
    message: /TCP only/,
  });
});

test('pulp-lazy run authorizer answers health checks and exits 0 on SIGTERM', {
  timeout: 60_000,
}, async () => {
  const env = await testEnv('auth-run', {
    apache: { authorizer_listen: '127.0.0.1:0' },
    log: { level: 'info' },
  });
  await generateKeys(env.config.paths.keys);
  const child = spawn(process.execPath, [BIN, 'run', 'authorizer'], {
    cwd: ROOT,
    env: env.env,
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  const exited = once(child, 'exit');
  // `run` daemons log JSON lines on stdout.
  const lines = createInterface({ input: child.stdout! });
  let port = 0;
  for await (const line of lines) {
    const m = /"address":"127\.0\.0\.1:(\d+)"/.exec(line);
    if (m) {
      port = Number(m[1]);
      break;
    }
  }
  assert.ok(port > 0, 'the authorizer logged its address');
  const values = await healthCheck({ host: '127.0.0.1', port });
  assert.equal(values.get('FCGI_MPXS_CONNS'), '1');
  child.kill('SIGTERM');
  const [code, signal] = await exited;
  assert.deepEqual({ code, signal }, { code: 0, signal: null });
});
