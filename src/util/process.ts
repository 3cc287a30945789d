/**
 * Process and port helpers for every process pulp-lazy watches: the detached
 * daemons and their supervisors (src/lifecycle/), Apache and Squid
 * (src/proxies/), temp files of dead writers (src/storage/temp-files.ts). Liveness is
 * read from /proc/PID/stat (a zombie, state Z, counts as gone: daemons
 * re-parented to a slow PID 1 stay zombies for a while, and `kill -0` reports
 * them alive). No execa here: the streamer daemon loads this module.
 */
import { accessSync, constants, readFileSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

/** The pid in a pid file, or undefined when the file is missing or holds no number. */
export async function readPid(file: string): Promise<number | undefined> {
  const text = await readFile(file, 'utf8').catch(() => '');
  const pid = Number.parseInt(text.trim(), 10);
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
}

/** True while `pid` exists and is not a zombie. */
export function processAlive(pid: number): boolean {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      // No such process, or no /proc at all: then fall back to a signal probe.
      if (!procAvailable()) return signalProbe(pid);
      return false;
    }
    return signalProbe(pid);
  }
  // "pid (comm) S ...": comm may contain spaces and parentheses, the state follows the last ')'.
  const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
  return state !== 'Z' && state !== 'X' && state !== 'x';
}

function procAvailable(): boolean {
  try {
    accessSync('/proc/self/stat');
    return true;
  } catch {
    return false;
  }
}

function signalProbe(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** True when something accepts TCP connections on host:port. */
export function portOpen(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host, port });
    const done = (open: boolean) => {
      socket.destroy();
      resolve(open);
    };
    socket.setTimeout(timeoutMs, () => done(false));
    socket.once('connect', () => done(true));
    socket.once('error', () => done(false));
  });
}

/** Polls `cond` until it holds; resolves false after `timeoutMs`. */
export async function waitFor(
  cond: () => boolean | Promise<boolean>,
  timeoutMs: number,
  intervalMs = 50,
): Promise<boolean> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() >= end) return false;
    await sleep(intervalMs);
  }
}

/** The first of `names` found in PATH, /usr/sbin or /sbin (daemons live in sbin, which users' PATH often lacks). */
export function findBinary(names: readonly string[], envPath = process.env.PATH ?? ''): string | undefined {
  const dirs = [...envPath.split(path.delimiter).filter(Boolean), '/usr/sbin', '/sbin', '/usr/local/sbin'];
  for (const name of names) {
    for (const dir of dirs) {
      const file = path.join(dir, name);
      try {
        accessSync(file, constants.X_OK);
        return file;
      } catch {
        // next
      }
    }
  }
  return undefined;
}

/** The last `n` non-empty lines of a log file ('' when unreadable), for error messages. */
export async function tail(file: string, n = 3): Promise<string> {
  const text = await readFile(file, 'utf8').catch(() => '');
  return text
    .split('\n')
    .filter((l) => l.trim() !== '')
    .slice(-n)
    .join(' | ');
}
