/**
 * The development/test database: an embedded FerretDB (SQLite backend)
 * built from tools/devdb by `npm run build`. Not for production.
 *
 * Its files hold every repository's secrets (client keys, passwords): the
 * data dir is made mode 0700 and the files already in it 0600, whatever
 * created them, so only the user running it can read them.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { chmod, mkdir, readdir } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { PulpLazyError } from './errors.ts';

export const DEVDB_BINARY = path.resolve(
  path.dirname(fileURLToPath(import.meta.url)),
  '../tools/devdb/devdb',
);

export interface DevDb {
  url: string;
  process: ChildProcess;
  stop(): Promise<void>;
}

/** Starts the launcher and resolves once it accepts connections. */
export async function startDevDb(opts: {
  dataDir: string;
  listen?: string;
  binary?: string;
  stderr?: 'inherit' | 'ignore';
}): Promise<DevDb> {
  const binary = opts.binary ?? DEVDB_BINARY;
  if (!existsSync(binary)) {
    throw new PulpLazyError(
      'PL_DEVDB_MISSING',
      `dev database launcher not built (${binary}); run "npm run build"`,
    );
  }
  await privateDir(opts.dataDir);
  const child = spawn(binary, ['-listen', opts.listen ?? '127.0.0.1:0', '-data', opts.dataDir], {
    stdio: ['ignore', 'pipe', opts.stderr ?? 'inherit'],
  });
  const url = await new Promise<string>((resolve, reject) => {
    const rl = createInterface({ input: child.stdout! });
    const onExit = (code: number | null) =>
      reject(new PulpLazyError('PL_DEVDB_FAILED', `dev database exited before it was ready (code ${code})`));
    child.once('exit', onExit);
    child.once('error', reject);
    rl.on('line', (line) => {
      const m = /^READY (\S+)/.exec(line);
      if (m) {
        child.off('exit', onExit);
        rl.close();
        resolve(m[1]!);
      }
    });
  });
  const exited = new Promise<void>((resolve) => {
    if (child.exitCode !== null) resolve();
    else child.once('exit', () => resolve());
  });
  return {
    url,
    process: child,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** Creates `dir` (mode 0700), or narrows an existing one to 0700 and the files in it to 0600. */
async function privateDir(dir: string): Promise<void> {
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await chmod(dir, 0o700);
  for (const e of await readdir(dir, { withFileTypes: true })) {
    if (e.isFile()) await chmod(path.join(dir, e.name), 0o600);
  }
}
