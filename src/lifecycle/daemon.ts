/**
 * Starting, stopping and inspecting detached daemons. `start` runs a
 * supervisor (`node bin/pulp-lazy --config FILE supervise NAME`, detached;
 * src/lifecycle/supervisor.ts) that runs the daemon (`run NAME` or
 * `schedule`), restarts it when it dies, and appends both outputs to
 * <logs>/NAME.log; the daemon's pid is in <run>/NAME.pid. Ready = /healthz
 * 200 (content, streamer), a FastCGI answer (authorizer), alive after a
 * short settle (scheduler); a daemon that exits before it is ready fails the
 * start (no restarts). Stop = the supervisor first (so nothing restarts the
 * daemon), then the daemon: SIGTERM, a deadline, then SIGKILL.
 */
import { spawn } from 'node:child_process';
import { closeSync, openSync, readFileSync } from 'node:fs';
import { mkdir, rm } from 'node:fs/promises';

import type { Config } from '../config.ts';
import { type ErrorCode, PulpLazyError } from '../errors.ts';
import { processAlive, tail, waitFor } from '../util/process.ts';
import { BIN_PATH, type DaemonName, daemonListen, stopDeadlineMs } from './components.ts';
import { probeHealth } from './health.ts';
import {
  logFilePath,
  pidFilePath,
  readPidState,
  removePid,
  stateFilePath,
  supervisorPidPath,
} from './pidfile.ts';
import { type ExitRecord, readSupervisorState } from './supervisor.ts';

export const VERSION: string = JSON.parse(
  readFileSync(new URL('../../package.json', import.meta.url), 'utf8'),
).version;

export class LifecycleError extends PulpLazyError {
  constructor(code: ErrorCode, message: string) {
    super(code, message);
  }
}

export interface StartResult {
  name: DaemonName;
  /** null: supervised, between two runs of the daemon. */
  pid: number | null;
  /** False when it was running (or supervised) already. */
  started: boolean;
  staleRemoved: boolean;
}

const READY_TIMEOUT_MS = 20_000;
const SCHEDULER_SETTLE_MS = 1500;
/** A supervisor exits at once on SIGTERM; this is only a bound. */
const SUPERVISOR_STOP_MS = 5000;

/** Starts one daemon under a detached supervisor and waits until it is ready; on failure stops both and quotes its log. */
export async function startDaemon(
  config: Config,
  configPath: string | null,
  name: DaemonName,
  env: NodeJS.ProcessEnv = process.env,
): Promise<StartResult> {
  const runDir = config.paths.run;
  await mkdir(runDir, { recursive: true });
  await mkdir(config.paths.logs, { recursive: true });
  const pidFile = pidFilePath(runDir, name);
  const supervisorFile = supervisorPidPath(runDir, name);
  const logFile = logFilePath(config.paths.logs, name);
  const [state, supervisor] = await Promise.all([readPidState(pidFile), readPidState(supervisorFile)]);
  const current = state.alive ? state.pid : null;
  // Supervised already, or running without a supervisor (its supervisor was killed): nothing to do.
  if (supervisor.alive || current !== null)
    return { name, pid: current, started: false, staleRemoved: false };
  if (state.stale) await removePid(pidFile);
  if (supervisor.stale) await removePid(supervisorFile);
  // A new start forgets the restarts and the last exit of the previous one.
  await rm(stateFilePath(runDir, name), { force: true });
  const fd = openSync(logFile, 'a');
  const args = [BIN_PATH, ...(configPath ? ['--config', configPath] : []), 'supervise', name];
  const child = spawn(process.execPath, args, { detached: true, stdio: ['ignore', fd, fd], env });
  closeSync(fd);
  const supervisorPid = child.pid;
  if (supervisorPid === undefined)
    throw new LifecycleError('PL_START_FAILED', `${name}: could not spawn ${process.execPath}`);
  let supervisorExited = false;
  child.once('exit', () => {
    supervisorExited = true;
  });
  child.unref();

  let daemonPid: number | null = null;
  let lastExit: ExitRecord | null = null;
  /** True once the daemon exited, or its supervisor did. */
  const failed = async () => {
    const s = await readSupervisorState(runDir, name);
    lastExit = s?.last_exit ?? null;
    daemonPid ??= s?.daemon_pid ?? null;
    return lastExit !== null || supervisorExited || !processAlive(supervisorPid);
  };
  // The supervisor names the daemon's pid as soon as it spawned it.
  await waitFor(async () => (await failed()) || daemonPid !== null, READY_TIMEOUT_MS, 100);
  const ready =
    daemonPid !== null &&
    !(await failed()) &&
    (await waitFor(
      async () =>
        (await failed()) || (name !== 'scheduler' && (await probeHealth(config, name))?.healthy === true),
      name === 'scheduler' ? SCHEDULER_SETTLE_MS : READY_TIMEOUT_MS,
      100,
    ));
  const ok = daemonPid !== null && !(await failed()) && (ready || name === 'scheduler');
  if (!ok) {
    // No restarts after a failed start: the supervisor goes first, then whatever daemon it left.
    if (processAlive(supervisorPid)) signal(supervisorPid, 'SIGKILL');
    const pid = (await readPidState(pidFile)).pid;
    if (pid !== null && processAlive(pid)) signal(pid, 'SIGKILL');
    await Promise.all([removePid(pidFile), removePid(supervisorFile)]);
    const why =
      lastExit !== null || supervisorExited ? 'exited' : `not ready within ${READY_TIMEOUT_MS / 1000}s`;
    throw new LifecycleError(
      'PL_START_FAILED',
      `${name} ${why}; last log lines (${logFile}): ${(await tail(logFile, 3)) || '(empty)'}`,
    );
  }
  return { name, pid: daemonPid, started: true, staleRemoved: state.stale };
}

export interface StopResult {
  name: DaemonName;
  pid: number | null;
  /** stopped: SIGTERM worked; killed: SIGKILL after the deadline; not_running; stale: only a stale pid file. */
  outcome: 'stopped' | 'killed' | 'not_running' | 'stale';
}

export async function stopDaemon(config: Config, name: DaemonName, deadlineMs?: number): Promise<StopResult> {
  const runDir = config.paths.run;
  // The supervisor first, so that it does not restart the daemon stopped below.
  const supervisorFile = supervisorPidPath(runDir, name);
  const supervisor = await readPidState(supervisorFile);
  if (supervisor.alive && supervisor.pid !== null) await terminate(supervisor.pid, SUPERVISOR_STOP_MS);
  await removePid(supervisorFile);
  await rm(stateFilePath(runDir, name), { force: true });
  const pidFile = pidFilePath(runDir, name);
  const state = await readPidState(pidFile);
  if (!state.alive || state.pid === null) {
    if (state.stale) await removePid(pidFile);
    return { name, pid: state.pid, outcome: state.stale ? 'stale' : 'not_running' };
  }
  const outcome = await terminate(state.pid, deadlineMs ?? stopDeadlineMs(config, name));
  await removePid(pidFile);
  return { name, pid: state.pid, outcome };
}

/** SIGTERM, then SIGKILL when `pid` is still alive after `deadlineMs`. */
async function terminate(pid: number, deadlineMs: number): Promise<'stopped' | 'killed'> {
  signal(pid, 'SIGTERM');
  if (await waitFor(() => !processAlive(pid), deadlineMs, 100)) return 'stopped';
  signal(pid, 'SIGKILL');
  await waitFor(() => !processAlive(pid), 5000, 50);
  return 'killed';
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
  /** A supervisor (started by `start`) restarts it when it dies. */
  supervised: boolean;
  /** Restarts by the supervisor since `start`. */
  restarts: number;
  /** How it last ended while supervised (null: it has not). */
  last_exit: ExitRecord | null;
  /** Why the supervisor stopped restarting it. */
  given_up?: string;
}

export async function daemonStatus(config: Config, name: DaemonName): Promise<DaemonStatus> {
  const runDir = config.paths.run;
  const [state, supervisor, supervised] = await Promise.all([
    readPidState(pidFilePath(runDir, name)),
    readPidState(supervisorPidPath(runDir, name)),
    readSupervisorState(runDir, name),
  ]);
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
    supervised: supervisor.alive,
    restarts: supervised?.restarts ?? 0,
    last_exit: supervised?.last_exit ?? null,
  };
  if (health?.error) s.error = health.error;
  if (supervised?.given_up) s.given_up = supervised.given_up;
  return s;
}
