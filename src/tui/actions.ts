/** What the keys of `pulp-lazy top` do: start a sweep detached, retry failed entries. */
import { spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../config.ts';
import type { Database } from '../db/index.ts';
import { BIN_PATH } from '../lifecycle/components.ts';
import { retryEntries } from '../queue/index.ts';

/** Spawns `pulp-lazy sweep` detached (output appended to <logs>/sweep.log); returns its pid. */
export function spawnSweep(config: Config, configPath: string | null): { pid: number; log: string } {
  const log = path.join(config.paths.logs, 'sweep.log');
  const fd = openSync(log, 'a');
  try {
    const child = spawn(
      process.execPath,
      [BIN_PATH, ...(configPath ? ['--config', configPath] : []), 'sweep'],
      {
        detached: true,
        stdio: ['ignore', fd, fd],
      },
    );
    child.unref();
    return { pid: child.pid ?? 0, log };
  } finally {
    closeSync(fd);
  }
}

export async function retryAll(db: Database): Promise<number> {
  return (await retryEntries(db, { all: true })).units.length;
}
