/**
 * The supervisor of one daemon started by `pulp-lazy start` (the hidden
 * command `pulp-lazy supervise NAME`, itself detached): it runs the daemon
 * (`pulp-lazy run NAME`, output appended to <logs>/NAME.log) and, when it
 * fails (a signal or a non-zero exit code), starts it again after a backoff
 * (0.5 s, doubling, at most 5 s). After MAX_RESTARTS restarts within
 * RESTART_WINDOW_MS it gives up: the daemon stays down and the state file
 * says why. A clean exit (code 0: someone sent the daemon SIGTERM) ends the
 * supervision too, as systemd's Restart=on-failure does.
 *
 * Files in paths.run: NAME.pid (the daemon's pid, rewritten at each start:
 * status and uptime read it), NAME.supervisor.pid (its own), NAME.state.json
 * (SupervisorState). On SIGTERM/SIGINT it exits at once without touching the
 * daemon: `stop` stops the supervisor first, then the daemon by its pid file.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { closeSync, openSync } from 'node:fs';
import { mkdir, open, readFile, rm } from 'node:fs/promises';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Config } from '../config.ts';
import type { Logger } from '../log.ts';
import { BIN_PATH, type DaemonName, daemonArgs, daemonNodeArgs } from './components.ts';
import {
  logFilePath,
  pidFilePath,
  stateFilePath,
  supervisorPidPath,
  writeFileAtomic,
  writePid,
} from './pidfile.ts';

/** Restarts allowed within RESTART_WINDOW_MS; one more exit and the supervisor gives up. */
export const MAX_RESTARTS = 5;
export const RESTART_WINDOW_MS = 60_000;
const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 5000;
/** How much of the log's end is read for the last line. */
const LOG_TAIL_BYTES = 4096;
const MAX_LINE_CHARS = 500;

/** How the daemon last ended. */
export interface ExitRecord {
  /** Exit code, or null when a signal ended it. */
  code: number | null;
  signal: string | null;
  /** ISO time. */
  at: string;
  /** How long that run lasted. */
  ran_s: number;
  /** The log file's last line then (cut to 500 characters), null when empty. */
  log_line: string | null;
}

/** NAME.state.json. */
export interface SupervisorState {
  supervisor_pid: number;
  daemon_pid: number | null;
  /** Restarts since `start`. */
  restarts: number;
  last_exit: ExitRecord | null;
  /** Set when it stopped restarting: why. */
  given_up: string | null;
  updated_at: string;
}

/** The command line that runs daemon `name` in the foreground (node options first: V8 reads them at start). */
export function daemonCommand(configPath: string | null, name: DaemonName): string[] {
  return [
    ...daemonNodeArgs(name),
    BIN_PATH,
    ...(configPath ? ['--config', configPath] : []),
    ...daemonArgs(name),
  ];
}

/** The state file, or null when missing or unreadable. */
export async function readSupervisorState(runDir: string, name: string): Promise<SupervisorState | null> {
  try {
    return JSON.parse(await readFile(stateFilePath(runDir, name), 'utf8')) as SupervisorState;
  } catch {
    return null;
  }
}

/** "code 1", "signal SIGKILL". */
export function describeExit(e: Pick<ExitRecord, 'code' | 'signal'>): string {
  return e.signal ? `signal ${e.signal}` : `code ${e.code ?? '?'}`;
}

/** The wait before restart number `n` within the window (0-based): 0.5, 1, 2, 4, 5 s. */
export function restartDelayMs(n: number): number {
  return Math.min(FIRST_DELAY_MS * 2 ** n, MAX_DELAY_MS);
}

/** The last non-empty line of `file`, read from its last 4 KiB (null: none). */
export async function lastLogLine(file: string): Promise<string | null> {
  let fh: Awaited<ReturnType<typeof open>> | undefined;
  try {
    fh = await open(file, 'r');
    const { size } = await fh.stat();
    const length = Math.min(size, LOG_TAIL_BYTES);
    const buf = Buffer.alloc(length);
    await fh.read(buf, 0, length, size - length);
    const lines = buf
      .toString('utf8')
      .split('\n')
      .filter((l) => l.trim() !== '');
    const last = lines.at(-1);
    return last === undefined ? null : last.slice(0, MAX_LINE_CHARS);
  } catch {
    return null;
  } finally {
    await fh?.close();
  }
}

/** Runs and restarts daemon `name` until a signal stops the supervisor or it gives up. */
export async function supervise(opts: {
  config: Config;
  configPath: string | null;
  name: DaemonName;
  log: Logger;
  env?: NodeJS.ProcessEnv;
}): Promise<void> {
  const { config, name, log } = opts;
  const runDir = config.paths.run;
  const pidFile = pidFilePath(runDir, name);
  const ownPidFile = supervisorPidPath(runDir, name);
  const logFile = logFilePath(config.paths.logs, name);
  await mkdir(runDir, { recursive: true });
  await mkdir(config.paths.logs, { recursive: true });
  const state: SupervisorState = {
    supervisor_pid: process.pid,
    daemon_pid: null,
    restarts: 0,
    last_exit: null,
    given_up: null,
    updated_at: new Date().toISOString(),
  };
  const save = () => {
    state.updated_at = new Date().toISOString();
    writeFileAtomic(stateFilePath(runDir, name), `${JSON.stringify(state, null, 2)}\n`);
  };
  save();
  writePid(ownPidFile, process.pid);

  const stop = new AbortController();
  const onSignal = (signal: NodeJS.Signals) => {
    log.info({ signal, daemon_pid: state.daemon_pid }, 'supervisor stopping (the daemon is left to stop)');
    stop.abort();
  };
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);

  /** Restart times within the window. */
  let recent: number[] = [];
  try {
    while (!stop.signal.aborted) {
      // The log is opened at each start: a rotated log file is followed.
      const fd = openSync(logFile, 'a');
      let child: ChildProcess;
      try {
        child = spawn(process.execPath, daemonCommand(opts.configPath, name), {
          stdio: ['ignore', fd, fd],
          env: opts.env ?? process.env,
        });
      } finally {
        closeSync(fd);
      }
      const started = Date.now();
      const ended = exitOf(child);
      if (child.pid !== undefined) {
        // In the same tick as the spawn (see writeFileAtomic).
        writePid(pidFile, child.pid);
        state.daemon_pid = child.pid;
        save();
      }
      const exit = await Promise.race([ended, aborted(stop.signal)]);
      if (exit === undefined) {
        // The running daemon must not keep the supervisor alive.
        child.unref();
        break;
      }
      state.daemon_pid = null;
      state.last_exit = {
        ...exit,
        at: new Date().toISOString(),
        ran_s: Math.round((Date.now() - started) / 1000),
        log_line: await lastLogLine(logFile),
      };
      if (exit.code === 0) {
        save();
        await rm(pidFile, { force: true });
        log.info(`${name} exited cleanly: not restarted`);
        break;
      }
      const now = Date.now();
      recent = recent.filter((t) => now - t < RESTART_WINDOW_MS);
      if (recent.length >= MAX_RESTARTS) {
        state.given_up = `exited ${recent.length + 1} times within ${RESTART_WINDOW_MS / 1000} s (last: ${describeExit(exit)}): not restarted`;
        save();
        await rm(pidFile, { force: true });
        log.error({ ...exit, restarts: state.restarts }, `${name} ${state.given_up}`);
        break;
      }
      save();
      const delay = restartDelayMs(recent.length);
      log.warn({ ...exit, restart_in_ms: delay }, `${name} exited (${describeExit(exit)}): restarting`);
      await sleep(delay, undefined, { signal: stop.signal }).catch(() => {});
      if (stop.signal.aborted) break;
      recent.push(Date.now());
      state.restarts++;
    }
  } finally {
    process.off('SIGTERM', onSignal);
    process.off('SIGINT', onSignal);
    await rm(ownPidFile, { force: true });
  }
}

interface Exit {
  code: number | null;
  signal: string | null;
}

/** Resolves when the child ends, or could not be spawned at all. */
function exitOf(child: ChildProcess): Promise<Exit> {
  return new Promise((resolve) => {
    child.once('exit', (code, signal) => resolve({ code, signal }));
    child.once('error', () => {
      if (child.pid === undefined) resolve({ code: null, signal: null });
    });
  });
}

/** Resolves undefined when `signal` aborts. */
function aborted(signal: AbortSignal): Promise<undefined> {
  return new Promise((resolve) => {
    if (signal.aborted) resolve(undefined);
    else signal.addEventListener('abort', () => resolve(undefined), { once: true });
  });
}
