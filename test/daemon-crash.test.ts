/**
 * Last resort: a daemon that meets an uncaught exception or an unhandled
 * rejection after it started logs one fatal JSON line on stdout and exits
 * non-zero at once. The fault comes from a preload module (NODE_OPTIONS
 * --import) that throws when the test sends it SIGUSR2, once the daemon serves.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { BIN, runCli } from './helpers/cli.ts';
import { testEnv } from './helpers/env.ts';
import { freePort } from './helpers/proxies.ts';

const PRELOAD = `
process.on('SIGUSR2', () => {
  const err = Object.assign(new Error('boom after start'), { code: 'E_TEST_BOOM' });
  if (process.env.CRASH_MODE === 'rejection') Promise.reject(err);
  else setImmediate(() => { throw err; });
});
`;

async function crashAfterStart(
  label: string,
  mode: 'exception' | 'rejection',
  args: (port: number) => string[],
): Promise<{ code: number | null; lines: string[]; stderr: string }> {
  const port = await freePort();
  const env = await testEnv(label, { streamer: { listen: `127.0.0.1:${port}` } });
  assert.equal((await runCli(['keys', 'generate'], { env: env.env })).code, 0);
  const preload = path.join(env.root, 'crash-preload.mjs');
  await writeFile(preload, PRELOAD);
  const child = spawn(process.execPath, [BIN, ...args(port)], {
    env: { ...env.env, NODE_OPTIONS: `--import=${preload}`, CRASH_MODE: mode },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c) => {
    stdout += c;
  });
  child.stderr.on('data', (c) => {
    stderr += c;
  });
  const exited = once(child, 'exit');
  let health = 0;
  for (let i = 0; i < 400 && health !== 200 && child.exitCode === null; i++) {
    await new Promise((r) => setTimeout(r, 50));
    health = await fetch(`http://127.0.0.1:${port}/healthz`).then(
      (r) => r.status,
      () => 0,
    );
  }
  assert.equal(health, 200, stderr);
  child.kill('SIGUSR2');
  const [code] = (await exited) as [number | null];
  return { code, lines: stdout.split('\n').filter((l) => l.trim() !== ''), stderr };
}

function assertOneFatalLine(lines: string[], stderr: string, what: string): void {
  const parsed = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
  const fatal = parsed.filter((l) => l.level === 60);
  assert.equal(fatal.length, 1, `one fatal line on stdout; stdout: ${lines.join('\n')}; stderr: ${stderr}`);
  const line = fatal[0]!;
  assert.match(String(line.msg), new RegExp(`^${what}`));
  const err = line.err as { message: string; code: string; stack: string };
  assert.equal(err.message, 'boom after start');
  assert.equal(err.code, 'E_TEST_BOOM');
  assert.match(err.stack, /boom after start\n\s+at /);
}

test('run streamer: an uncaught exception after start → one fatal JSON line, exit 1', async () => {
  const r = await crashAfterStart('crash-run', 'exception', () => ['run', 'streamer']);
  assert.equal(r.code, 1, r.stderr);
  assertOneFatalLine(r.lines, r.stderr, 'uncaught exception');
});

test('serve: an unhandled rejection after start → one fatal JSON line, exit 1', async () => {
  const r = await crashAfterStart('crash-serve', 'rejection', (port) => [
    'serve',
    '--listen',
    `127.0.0.1:${port}`,
  ]);
  assert.equal(r.code, 1, r.stderr);
  assertOneFatalLine(r.lines, r.stderr, 'unhandled rejection');
});
