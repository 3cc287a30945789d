/**
 * Starting, stopping and inspecting detached daemons: `node bin/pulp-lazy
 * --config FILE run NAME` (or `schedule`) with stdout/stderr appended to
 * <logs>/NAME.log and the pid in <run>/NAME.pid. Ready = /healthz 200
 * (content, streamer), a FastCGI answer (authorizer), alive after a short
 * settle (scheduler). Stop = SIGTERM, a deadline, then SIGKILL.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';

import type { Config } from '../config.ts';
import { PulpLazyError } from '../errors.ts';
import { BIN_PATH } from '../init/systemd.ts';
import { processAlive, tail, waitFor } from '../proxies/process.ts';
import { type DaemonName, daemonArgs, daemonListen, daemonNodeArgs, stopDeadlineMs } from './components.ts';
import { probeHealth } from './health.ts';
import { logFilePath, pidFilePath, readPidState, removePid, writePid } from './pidfile.ts';

export const VERSION: string = JSON.parse(
  readFileSync(new URL('../../package.json', import.meta.url), 'utf8'),
).version;

export class LifecycleError extends PulpLazyError {
  constructor(code: string, message: string) {
    super(code, message, { exitCode: 1 });
  }
}

export interface StartResult {
  name: DaemonName;
  pid: number;
  /** False when it was running already. */
  started: boolean;
  staleRemoved: boolean;
}

const READY_TIMEOUT_MS = 20_000;
const SCHEDULER_SETTLE_MS = 1500;

/** Starts one daemon detached and waits until it is ready; on failure kills it and quotes its log. */
export async function startDaemon(
  config: Config,
  configPath: string | null,
  name: DaemonName,
  env: NodeJS.ProcessEnv = process.env,
): Promise<StartResult> {
  await mkdir(config.paths.run, { recursive: true });
  await mkdir(config.paths.logs, { recursive: true });
  const pidFile = pidFilePath(config.paths.run, name);
  const logFile = logFilePath(config.paths.logs, name);
  const state = await readPidState(pidFile);
  if (state.alive && state.pid !== null) return { name, pid: state.pid, started: false, staleRemoved: false };
  if (state.stale) await removePid(pidFile);
  const fd = openSync(logFile, 'a');
  const args = [
    ...daemonNodeArgs(name),
    BIN_PATH,
    ...(configPath ? ['--config', configPath] : []),
    ...daemonArgs(name),
  ];
  const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', fd, fd], env });
  closeSync(fd);
  const pid = child.pid;
  if (pid === undefined)
    throw new LifecycleError('PL_START_FAILED', `${name}: could not spawn ${process.execPath}`);
  let exited = false;
  child.once('exit', () => {
    exited = true;
  });
  child.unref();
  await writePid(pidFile, pid);
  const ready = await waitFor(
    async () => {
      if (exited || !processAlive(pid)) return true;
      if (name === 'scheduler') return false;
      return (await probeHealth(config, name))?.healthy === true;
    },
    name === 'scheduler' ? SCHEDULER_SETTLE_MS : READY_TIMEOUT_MS,
    100,
  );
  if (exited || !processAlive(pid) || (!ready && name !== 'scheduler')) {
    if (processAlive(pid)) process.kill(pid, 'SIGKILL');
    await removePid(pidFile);
    const why = exited || !processAlive(pid) ? 'exited' : `not ready within ${READY_TIMEOUT_MS / 1000}s`;
    throw new LifecycleError(
      'PL_START_FAILED',
      `${name} ${why}; last log lines (${logFile}): ${(await tail(logFile, 3)) || '(empty)'}`,
    );
  }
  return { name, pid, started: true, staleRemoved: state.stale };
}

export interface StopResult {
  name: DaemonName;
  pid: number | null;
  /** stopped: SIGTERM worked; killed: SIGKILL after the deadline; not_running; stale: only a stale pid file. */
  outcome: 'stopped' | 'killed' | 'not_running' | 'stale';
}

export async function stopDaemon(config: Config, name: DaemonName, deadlineMs?: number): Promise<StopResult> {
  const pidFile = pidFilePath(config.paths.run, name);
  const state = await readPidState(pidFile);
  if (!state.alive || state.pid === null) {
    if (state.stale) await removePid(pidFile);
    return { name, pid: state.pid, outcome: state.stale ? 'stale' : 'not_running' };
  }
  const pid = state.pid;
  signal(pid, 'SIGTERM');
  const gone = await waitFor(() => !processAlive(pid), deadlineMs ?? stopDeadlineMs(config, name), 100);
  let outcome: StopResult['outcome'] = 'stopped';
  if (!gone) {
    signal(pid, 'SIGKILL');
    await waitFor(() => !processAlive(pid), 5000, 50);
    outcome = 'killed';
  }
  await removePid(pidFile);
  return { name, pid, outcome };
}

function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err;
  }
}

export interface DaemonStatus {
  name: DaemonName;
  running: boolean;
  pid: number | null;
  uptime_s: number | null;
  listen: string | null;
  /** null: no health endpoint (scheduler) or not running. */
  healthy: boolean | null;
  error?: string;
  version: string;
  stale_pid_file: boolean;
}

export async function daemonStatus(config: Config, name: DaemonName): Promise<DaemonStatus> {
  const state = await readPidState(pidFilePath(config.paths.run, name));
  const health = state.alive ? await probeHealth(config, name) : null;
  const s: DaemonStatus = {
    name,
    running: state.alive,
    pid: state.alive ? state.pid : null,
    uptime_s:
      state.alive && state.since
        ? Math.max(0, Math.round((Date.now() - state.since.getTime()) / 1000))
        : null,
    listen: daemonListen(config, name),
    healthy: state.alive ? (health ? health.healthy : true) : null,
    version: VERSION,
    stale_pid_file: state.stale,
  };
  if (health?.error) s.error = health.error;
  return s;
}
