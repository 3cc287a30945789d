/** Runs the built CLI (bin/pulp-lazy → dist/) as a separate process. */

import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import path from 'node:path';
import type { SyncSummary } from '../../src/importers/sync.ts';

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
