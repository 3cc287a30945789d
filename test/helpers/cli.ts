/** Runs the built CLI (bin/pulp-lazy → dist/) as a separate process. */

import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after } from 'node:test';
import type { SyncSummary } from '../../src/importers/sync.ts';
import { freePort } from './proxies.ts';

export interface RunningDaemon {
  child: ChildProcess;
  /** The address it listens on, from its "listening" log line. */
  listen: string;
  /** Its JSON log lines so far. */
  logs: Array<Record<string, unknown>>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/**
 * `pulp-lazy run NAME` on `env`'s config, resolved once it logs `listeningMsg` (rejected with its
 * stderr and logs if it exits first); killed with SIGKILL after the test file if still running.
 * A stdout line that is not JSON fails the test.
 */
export async function runDaemon(
  name: string,
  env: NodeJS.ProcessEnv,
  listeningMsg: string,
): Promise<RunningDaemon> {
  const child = spawn(process.execPath, [BIN, 'run', name], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  let stderr = '';
  child.stderr!.on('data', (c) => {
    stderr += c;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on('exit', (code, signal) => resolve({ code, signal })),
  );
  const logs: Array<Record<string, unknown>> = [];
  const listening = new Promise<string>((resolve) => {
    createInterface({ input: child.stdout! }).on('line', (line) => {
      let rec: Record<string, unknown>;
      try {
        rec = JSON.parse(line);
      } catch {
        assert.fail(`${name}: not a JSON log line: ${line}`);
      }
      logs.push(rec);
      if (rec.msg === listeningMsg) resolve(String(rec.listen));
    });
  });
  const listen = await Promise.race([
    listening,
    exited.then((e) => {
      throw new Error(`${name} exited early (${JSON.stringify(e)}): ${stderr} ${JSON.stringify(logs)}`);
    }),
  ]);
  return { child, listen, logs, exited };
}

export const ROOT = path.resolve(import.meta.dirname, '../..');
export const BIN = path.join(ROOT, 'bin/pulp-lazy');

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export function runCli(
  args: string[],
  opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number } = {},
): Promise<CliResult> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [BIN, ...args],
      {
        env: opts.env ?? process.env,
        cwd: opts.cwd ?? ROOT,
        timeout: opts.timeoutMs ?? 120_000,
        maxBuffer: 64 << 20,
      },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
        resolve({ code, stdout: String(stdout), stderr: String(stderr) });
      },
    );
  });
}

/** `pulp-lazy sync REPO --json` in `env`, which must succeed; its summary. */
export async function syncJson(env: NodeJS.ProcessEnv, repo: string): Promise<SyncSummary> {
  const r = await runCli(['sync', repo, '--json'], { env });
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as SyncSummary;
}

/** Starts `pulp-lazy serve` and waits until it answers. */
export async function startServe(env: { env: NodeJS.ProcessEnv }): Promise<string> {
  assert.equal((await runCli(['keys', 'generate'], { env: env.env })).code, 0);
  const port = await freePort();
  const child: ChildProcess = spawn(process.execPath, [BIN, 'serve', '--listen', `127.0.0.1:${port}`], {
    env: env.env,
    cwd: ROOT,
    stdio: ['ignore', 'ignore', 'pipe'],
  });
  let stderr = '';
  child.stderr!.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  after(async () => {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
  });
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) assert.fail(`serve exited: ${stderr}`);
    if (stderr.includes('serving on')) break;
    if (Date.now() > deadline) assert.fail(`serve did not start: ${stderr}`);
    await new Promise((r) => setTimeout(r, 50));
  }
  return `http://127.0.0.1:${port}`;
}
