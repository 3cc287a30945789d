/**
 * Pid files of detached daemons and their supervisors, checked against /proc
 * (zombies count as dead), and the supervisors' state files. Files are
 * written atomically (a temp file renamed over the old one): a reader never
 * sees half of one.
 */
import { readFileSync, renameSync, writeFileSync } from 'node:fs';
import { readFile, rm, stat } from 'node:fs/promises';
import path from 'node:path';
import { processAlive } from '../util/process.ts';

export function pidFilePath(runDir: string, name: string): string {
  return path.join(runDir, `${name}.pid`);
}

/** The pid file of the process that supervises daemon `name` (`pulp-lazy supervise NAME`). */
export function supervisorPidPath(runDir: string, name: string): string {
  return path.join(runDir, `${name}.supervisor.pid`);
}

/** The supervisor's state (restarts, last exit, why it gave up): src/lifecycle/supervisor.ts. */
export function stateFilePath(runDir: string, name: string): string {
  return path.join(runDir, `${name}.state.json`);
}

export function logFilePath(logsDir: string, name: string): string {
  return path.join(logsDir, `${name}.log`);
}

/**
 * Writes `text` to `file` through a temp file and a rename. Synchronous, so
 * that a supervisor records its child's pid in the same tick as it spawns it
 * (a SIGTERM handled in between would otherwise leave a daemon no pid file names).
 */
export function writeFileAtomic(file: string, text: string): void {
  const temp = `${file}.${process.pid}.tmp`;
  writeFileSync(temp, text);
  renameSync(temp, file);
}

export function writePid(file: string, pid: number): void {
  writeFileAtomic(file, `${pid}\n`);
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
