/** Pid files of detached daemons, checked against /proc (zombies count as dead). */
import { readFileSync } from 'node:fs';
import { readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { processAlive } from '../proxies/process.ts';

export function pidFilePath(runDir: string, name: string): string {
  return path.join(runDir, `${name}.pid`);
}

export function logFilePath(logsDir: string, name: string): string {
  return path.join(logsDir, `${name}.log`);
}

export async function writePid(file: string, pid: number): Promise<void> {
  await writeFile(file, `${pid}\n`);
}

export interface PidState {
  pid: number | null;
  alive: boolean;
  /** A pid file named a process that is gone (or a zombie, or not ours). */
  stale: boolean;
  /** When the pid file was written (≈ start time). */
  since: Date | null;
}

/** Reads the pid file; a live pid must also be a pulp-lazy process (pid reuse). */
export async function readPidState(file: string): Promise<PidState> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return { pid: null, alive: false, stale: false, since: null };
  }
  const pid = Number.parseInt(text.trim(), 10);
  const since = await stat(file).then(
    (s) => s.mtime,
    () => null,
  );
  if (!Number.isInteger(pid) || pid <= 0) return { pid: null, alive: false, stale: true, since };
  const alive = processAlive(pid) && isOurs(pid);
  return { pid, alive, stale: !alive, since };
}

function isOurs(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('pulp-lazy');
  } catch {
    return true; // no /proc: trust processAlive's signal probe
  }
}

export async function removePid(file: string): Promise<void> {
  await rm(file, { force: true });
}
