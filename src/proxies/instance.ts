/**
 * One start, stop and status for a private server that daemonizes itself
 * (Apache, Squid): each is described by an Instance record (index.ts) and
 * polled by its pid file. Ready is "the pid is alive and every port
 * accepts"; stopped is "the pid is gone (zombies count as gone) and the
 * ports are closed".
 */
import { existsSync } from 'node:fs';
import { rm } from 'node:fs/promises';
import { execa } from 'execa';
import { oneLine } from '../errors.ts';
import type { Logger } from '../log.ts';
import { findBinary, portOpen, processAlive, readPid, tail, waitFor } from '../util/process.ts';
import { ProxyError } from './errors.ts';

export interface Port {
  role: string;
  host: string;
  port: number;
}

export interface Instance {
  name: 'apache' | 'squid';
  /** As messages name it: "Apache", "Squid". */
  label: string;
  /** Program name, looked up in PATH and the sbin directories. */
  bin: string;
  /** How to install the program, for the error when it is missing. */
  install: string;
  /** False: not part of this setup (Squid with proxy.cache = "none"), still stopped if running. */
  enabled: boolean;
  conf: string;
  pidFile: string;
  /** Where the program explains a failed start. */
  log: string;
  ports: Port[];
  /** Starts it; the program detaches and writes pidFile. */
  startArgs: string[];
  /** Asks the running program to stop; SIGTERM when the config file is gone. */
  stopArgs: string[];
  stopTimeoutMs: number;
  /** Refuses a start before the port check (Apache: the fast path's ownership rule). */
  check?: () => Promise<void>;
  /** Set-up right before the start (Squid: its cache directories on first start). */
  init?: (bin: string, logger: Logger) => Promise<void>;
}

export interface PortStatus {
  role: string;
  address: string;
  listening: boolean;
}

export interface InstanceStatus {
  name: 'apache' | 'squid';
  enabled: boolean;
  running: boolean;
  pid: number | null;
  config: string;
  ports: PortStatus[];
}

const START_TIMEOUT_MS = 15_000;
const STOP_COMMAND_TIMEOUT_MS = 30_000;

export const fmt = (host: string, port: number) =>
  host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;

/** Starts the instance unless it is already running; resolves with its pid. */
export async function startInstance(
  inst: Instance,
  logger: Logger,
): Promise<{ pid: number; started: boolean }> {
  const running = await alivePid(inst.pidFile);
  if (running !== undefined) return { pid: running, started: false };
  const bin = findBinary([inst.bin]);
  if (!bin) throw new ProxyError('PL_PROXY_BINARY', `${inst.bin} not found (${inst.install})`);
  await inst.check?.();
  await refuseBusyPorts(inst);
  await rm(inst.pidFile, { force: true });
  await inst.init?.(bin, logger);
  // A bad config: rc 1 and a message on stderr (Apache's -k start validates it before it detaches).
  const r = await execa(bin, inst.startArgs, { reject: false, stdin: 'ignore', timeout: START_TIMEOUT_MS });
  if (r.exitCode !== 0) {
    const why =
      oneLine(`${r.stderr} ${r.stdout}`.trim()) || (await tail(inst.log)) || `exit code ${r.exitCode}`;
    throw new ProxyError('PL_PROXY_START', `${inst.label} did not start: ${why}`);
  }
  const pid = await waitReady(inst);
  logger.info({ pid, ports: inst.ports.map((p) => fmt(p.host, p.port)) }, `${inst.name} started`);
  return { pid, started: true };
}

/** Stops the instance and waits until it is gone; a no-op when it is not running. */
export async function stopInstance(inst: Instance, logger: Logger): Promise<{ stopped: boolean }> {
  const pid = await alivePid(inst.pidFile);
  if (pid === undefined) return { stopped: false };
  const bin = findBinary([inst.bin]);
  let asked = false;
  if (bin && existsSync(inst.conf)) {
    const r = await execa(bin, inst.stopArgs, {
      reject: false,
      stdin: 'ignore',
      timeout: STOP_COMMAND_TIMEOUT_MS,
    });
    asked = r.exitCode === 0;
  }
  // SIGTERM is what Apache's -k stop and Squid's -k shutdown send.
  if (!asked) process.kill(pid, 'SIGTERM');
  await waitStopped(inst, pid);
  logger.info({ pid }, `${inst.name} stopped`);
  return { stopped: true };
}

export async function instanceStatus(inst: Instance): Promise<InstanceStatus> {
  const pid = await alivePid(inst.pidFile);
  return {
    name: inst.name,
    enabled: inst.enabled,
    running: pid !== undefined,
    pid: pid ?? null,
    config: inst.conf,
    ports: await Promise.all(
      inst.ports.map(async (p) => ({
        role: p.role,
        address: fmt(p.host, p.port),
        listening: await portOpen(p.host, p.port),
      })),
    ),
  };
}

async function alivePid(pidFile: string): Promise<number | undefined> {
  const pid = await readPid(pidFile);
  return pid !== undefined && processAlive(pid) ? pid : undefined;
}

async function refuseBusyPorts(inst: Instance): Promise<void> {
  for (const p of inst.ports) {
    if (await portOpen(p.host, p.port)) {
      throw new ProxyError(
        'PL_PROXY_PORT_IN_USE',
        `cannot start ${inst.label}: ${fmt(p.host, p.port)} (${p.role}) is already in use by another process`,
      );
    }
  }
}

async function waitReady(inst: Instance): Promise<number> {
  let pid: number | undefined;
  const ready = await waitFor(async () => {
    pid = await alivePid(inst.pidFile);
    if (pid === undefined) return false;
    for (const p of inst.ports) if (!(await portOpen(p.host, p.port))) return false;
    return true;
  }, START_TIMEOUT_MS);
  if (!ready) {
    throw new ProxyError(
      'PL_PROXY_START',
      `${inst.label} did not become ready within ${START_TIMEOUT_MS / 1000}s (see ${inst.log}: ${await tail(inst.log)})`,
    );
  }
  return pid!;
}

async function waitStopped(inst: Instance, pid: number): Promise<void> {
  const gone = await waitFor(async () => {
    if (processAlive(pid)) return false;
    for (const p of inst.ports) if (await portOpen(p.host, p.port)) return false;
    return true;
  }, inst.stopTimeoutMs);
  if (!gone) {
    throw new ProxyError(
      'PL_PROXY_STOP',
      `${inst.label} (pid ${pid}) is still running ${inst.stopTimeoutMs / 1000}s after the stop request`,
    );
  }
}
