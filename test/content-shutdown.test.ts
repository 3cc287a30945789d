/**
 * `pulp-lazy run content` in the foreground: serves, and on SIGTERM stops
 * accepting, closes idle keep-alive connections and exits 0.
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, symlink, writeFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { after, test } from 'node:test';
import { connect } from '../src/db/index.ts';
import { generateKeys } from '../src/signing/index.ts';
import { ROOT, runCli, runDaemon } from './helpers/cli.ts';
import { request } from './helpers/content.ts';
import { mongoUrl } from './helpers/db.ts';
import { testEnv } from './helpers/env.ts';

test('SIGTERM: graceful stop with an idle keep-alive connection open, exit 0', {
  timeout: 60_000,
}, async () => {
  assert.ok(
    existsSync(path.join(ROOT, 'dist/daemons/content.js')),
    'run "npm run build:ts" before this test',
  );
  const env = await testEnv('content-sigterm', {
    content: { listen: '127.0.0.1:0' },
    log: { level: 'info' },
  });
  after(async () => {
    const d = await connect(mongoUrl(), env.dbName);
    await d.db.dropDatabase().catch(() => {});
    await d.close();
  });
  const { paths } = env.config;
  await generateKeys(paths.keys);
  const file = path.join(paths.storage, 'units/file/ab/cdef/hello.txt');
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, 'hello');
  await mkdir(path.join(paths.published, 'files'), { recursive: true });
  await symlink(file, path.join(paths.published, 'files/hello.txt'));

  const { child, listen, logs, exited } = await runDaemon('content', env.env, 'content daemon listening');
  const port = Number(listen.split(':').pop());

  const hit = await request(port, 'GET', '/pulp/content/files/hello.txt');
  assert.equal(hit.status, 200);
  assert.equal(hit.headers['x-sendfile'], file);

  // An idle keep-alive connection must not hold the shutdown up.
  const agent = new http.Agent({ keepAlive: true });
  after(() => agent.destroy());
  const kept = await new Promise<number>((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/healthz', agent }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      })
      .on('error', reject);
  });
  assert.equal(kept, 200);

  child.kill('SIGTERM');
  const { code, signal } = await exited;
  assert.equal(signal, null);
  assert.equal(code, 0, JSON.stringify(logs));
  assert.ok(logs.some((l) => l.msg === 'shutting down'));
  assert.ok(logs.some((l) => l.msg === 'content daemon stopped'));
  await assert.rejects(request(port, 'GET', '/healthz'), { code: 'ECONNREFUSED' });
});

test('without signing keys the daemon refuses to start with one line and exit 2', {
  timeout: 60_000,
}, async () => {
  const env = await testEnv('content-nokeys', { content: { listen: '127.0.0.1:0' } });
  after(async () => {
    const d = await connect(mongoUrl(), env.dbName);
    await d.db.dropDatabase().catch(() => {});
    await d.close();
  });
  const r = await runCli(['run', 'content'], { env: env.env, timeoutMs: 30_000 });
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /^pulp-lazy: signing key .*signing\.key does not exist/m);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
});
