/** `pulp-lazy serve` in a child process: serves, and exits 0 on SIGTERM leaving no temp files. */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readdir } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { BIN, runCli } from './helpers/cli.ts';
import { testEnv } from './helpers/env.ts';
import { freePort } from './helpers/proxies.ts';

test('serve: healthz, then SIGTERM → exit 0, no temp files', async () => {
  const env = await testEnv('serve-term');
  assert.equal((await runCli(['keys', 'generate'], { env: env.env })).code, 0);
  const port = await freePort();
  const child = spawn(process.execPath, [BIN, 'serve', '--listen', `127.0.0.1:${port}`], {
    env: env.env,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (c) => {
    stderr += c;
  });
  const exited = once(child, 'exit');
  let health = 0;
  for (let i = 0; i < 200 && health !== 200; i++) {
    await new Promise((r) => setTimeout(r, 50));
    health = await fetch(`http://127.0.0.1:${port}/healthz`).then(
      (r) => r.status,
      () => 0,
    );
  }
  assert.equal(health, 200, stderr);
  assert.equal((await fetch(`http://127.0.0.1:${port}/pulp/content/none/x`)).status, 404);
  child.kill('SIGTERM');
  const [code] = await exited;
  assert.equal(code, 0, stderr);
  const tmp = await readdir(path.join(env.config.paths.working, 'tmp')).catch(() => []);
  assert.deepEqual(tmp, []);
});
