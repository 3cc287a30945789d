/**
 * Lifecycle of the private Apache and Squid instances (`pulp-lazy proxies
 * start|stop|status`). Configs are rendered into the layout of
 * src/proxies/layout.ts at every start. Both programs daemonize themselves;
 * readiness is "the ports accept", stopped is "the pid is gone (zombies count
 * as gone) and the ports are closed". Squid is stopped with `-k shutdown`,
 * never `-k kill` (that leaves its kid process holding the port).
 * Start order: Squid, then Apache; stop order: Apache, then Squid.
 */

import { existsSync } from 'node:fs';
import { chmod, chown, mkdir, rename, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { healthCheck } from '../authorizer/fastcgi.ts';
import type { Config } from '../config.ts';
import { oneLine } from '../errors.ts';
import type { Logger } from '../log.ts';
import {
  APACHE_CONF,
  type ApachePlatform,
  DEBIAN_APACHE,
  RHEL_APACHE,
  renderAll,
  SQUID_CONF,
} from '../render/index.ts';
import { parseListen } from '../util/listen.ts';
import { checkFastPathOwnership } from './fastpath.ts';
import { proxyLayout } from './layout.ts';
import {
  findBinary,
  ProxyError,
  portOpen,
  processAlive,
  readPid,
  tail,
  userIds,
  waitFor,
} from './process.ts';

export { type ProxyLayout, proxyLayout } from './layout.ts';
export { ProxyError } from './process.ts';

export interface ProxyDeps {
  logger: Logger;
  /** Defaults to the installed one (Debian, else RHEL layout). */
  apache?: ApachePlatform;
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

export interface ProxiesStatus {
  apache: InstanceStatus;
  squid: InstanceStatus;
  authorizer: { address: string; healthy: boolean; error?: string };
}

const START_TIMEOUT_MS = 15_000;
const APACHE_STOP_TIMEOUT_MS = 20_000;
const SQUID_INIT_TIMEOUT_MS = 120_000;

export function detectApachePlatform(): ApachePlatform {
  if (existsSync(DEBIAN_APACHE.modules)) return DEBIAN_APACHE;
  if (existsSync(RHEL_APACHE.modules)) return RHEL_APACHE;
  return DEBIAN_APACHE;
}

/**
 * Renders the configs into the layout, creates the directories, and (when
 * running as root) gives Squid's directories to squid.user. Returns the files written.
 */
export async function writeProxyConfigs(config: Config, apache = detectApachePlatform()): Promise<string[]> {
  const layout = proxyLayout(config.paths);
  const files = renderAll(config, { apache });
  await mkdirs([layout.apacheDir, layout.apacheLogDir]);
  const written = [layout.apacheConf];
  await writeConf(layout.apacheConf, files[APACHE_CONF]!);
  if (files[SQUID_CONF] !== undefined) {
    const squidDirs = [layout.squidDir, layout.squidLogDir, layout.squidCacheDir];
    await mkdirs(squidDirs);
    await writeConf(layout.squidConf, files[SQUID_CONF]);
    written.push(layout.squidConf);
    if (process.getuid?.() === 0) {
      const { uid, gid } = await userIds(config.squid.user);
      for (const d of squidDirs) await chown(d, uid, gid);
      for (const f of ['access.log', 'cache.log'])
        await chown(path.join(layout.squidLogDir, f), uid, gid).catch(() => {});
    }
  }
  return written;
}

async function mkdirs(dirs: string[]): Promise<void> {
  for (const d of dirs) {
    await mkdir(d, { recursive: true, mode: 0o755 });
    await chmod(d, 0o755);
  }
}

async function writeConf(file: string, text: string): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, text, { mode: 0o644 });
  await chmod(tmp, 0o644);
  await rename(tmp, file);
}

function apacheBinary(platform: ApachePlatform): string {
  const bin = findBinary([platform.bin]);
  if (!bin) {
    throw new ProxyError(
      'PL_PROXY_BINARY',
      `${platform.bin} not found (Debian: apt-get install apache2-bin libapache2-mod-xsendfile)`,
    );
  }
  return bin;
}

function squidBinary(): string {
  const bin = findBinary(['squid']);
  if (!bin) throw new ProxyError('PL_PROXY_BINARY', 'squid not found (Debian: apt-get install squid)');
  return bin;
}

function apachePorts(config: Config): Array<{ role: string; host: string; port: number }> {
  const host = config.apache.listen_host || '127.0.0.1';
  return [
    { role: 'content', host, port: config.apache.content_port },
    { role: 'streamer', host, port: config.apache.streamer_port },
  ];
}

function squidPorts(config: Config): Array<{ role: string; host: string; port: number }> {
  return [{ role: 'cache', host: '127.0.0.1', port: config.squid.port }];
}

const fmt = (host: string, port: number) => (host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`);

async function alivePid(pidFile: string): Promise<number | undefined> {
  const pid = await readPid(pidFile);
  return pid !== undefined && processAlive(pid) ? pid : undefined;
}

async function refuseBusyPorts(name: string, ports: Array<{ role: string; host: string; port: number }>) {
  for (const p of ports) {
    if (await portOpen(p.host, p.port)) {
      throw new ProxyError(
        'PL_PROXY_PORT_IN_USE',
        `cannot start ${name}: ${fmt(p.host, p.port)} (${p.role}) is already in use by another process`,
      );
    }
  }
}

async function waitReady(
  name: string,
  pidFile: string,
  ports: Array<{ role: string; host: string; port: number }>,
  log: string,
): Promise<number> {
  let pid: number | undefined;
  const ready = await waitFor(async () => {
    pid = await alivePid(pidFile);
    if (pid === undefined) return false;
    for (const p of ports) if (!(await portOpen(p.host, p.port))) return false;
    return true;
  }, START_TIMEOUT_MS);
  if (!ready) {
    throw new ProxyError(
      'PL_PROXY_START',
      `${name} did not become ready within ${START_TIMEOUT_MS / 1000}s (see ${log}: ${await tail(log)})`,
    );
  }
  return pid!;
}

async function waitStopped(
  name: string,
  pid: number,
  ports: Array<{ host: string; port: number }>,
  timeoutMs: number,
): Promise<void> {
  const gone = await waitFor(async () => {
    if (processAlive(pid)) return false;
    for (const p of ports) if (await portOpen(p.host, p.port)) return false;
    return true;
  }, timeoutMs);
  if (!gone) {
    throw new ProxyError(
      'PL_PROXY_STOP',
      `${name} (pid ${pid}) is still running ${timeoutMs / 1000}s after the stop request`,
    );
  }
}

/** Starts Apache unless it is already running; resolves with its pid. */
export async function startApache(
  config: Config,
  deps: ProxyDeps,
): Promise<{ pid: number; started: boolean }> {
  const layout = proxyLayout(config.paths);
  const running = await alivePid(layout.apachePid);
  if (running !== undefined) return { pid: running, started: false };
  const platform = deps.apache ?? detectApachePlatform();
  const bin = apacheBinary(platform);
  const ports = apachePorts(config);
  await checkFastPathOwnership(config);
  await refuseBusyPorts('Apache', ports);
  await rm(layout.apachePid, { force: true });
  // -k start validates the config, then detaches (rc 1 and a message on stderr for a bad config).
  const r = await execa(bin, ['-f', layout.apacheConf, '-k', 'start'], {
    reject: false,
    stdin: 'ignore',
    timeout: START_TIMEOUT_MS,
  });
  if (r.exitCode !== 0) {
    const why = oneLine(`${r.stderr} ${r.stdout}`.trim()) || `exit code ${r.exitCode}`;
    throw new ProxyError('PL_PROXY_START', `Apache did not start: ${why}`);
  }
  const pid = await waitReady('Apache', layout.apachePid, ports, path.join(layout.apacheLogDir, 'error.log'));
  deps.logger.info({ pid, ports: ports.map((p) => fmt(p.host, p.port)) }, 'apache started');
  return { pid, started: true };
}

/** Stops Apache (`-k stop`) and waits until it is gone; a no-op when it is not running. */
export async function stopApache(config: Config, deps: ProxyDeps): Promise<{ stopped: boolean }> {
  const layout = proxyLayout(config.paths);
  const pid = await alivePid(layout.apachePid);
  if (pid === undefined) return { stopped: false };
  const bin = findBinary([(deps.apache ?? detectApachePlatform()).bin]);
  let asked = false;
  if (bin && existsSync(layout.apacheConf)) {
    const r = await execa(bin, ['-f', layout.apacheConf, '-k', 'stop'], {
      reject: false,
      stdin: 'ignore',
      timeout: 30_000,
    });
    asked = r.exitCode === 0;
  }
  // SIGTERM is what -k stop sends; used when the config file is gone.
  if (!asked) process.kill(pid, 'SIGTERM');
  await waitStopped('Apache', pid, apachePorts(config), APACHE_STOP_TIMEOUT_MS);
  deps.logger.info({ pid }, 'apache stopped');
  return { stopped: true };
}

/** Starts Squid (initializing its cache on first start) unless it is already running. */
export async function startSquid(
  config: Config,
  deps: ProxyDeps,
): Promise<{ pid: number; started: boolean }> {
  const layout = proxyLayout(config.paths);
  const running = await alivePid(layout.squidPid);
  if (running !== undefined) return { pid: running, started: false };
  const bin = squidBinary();
  const ports = squidPorts(config);
  await refuseBusyPorts('Squid', ports);
  await rm(layout.squidPid, { force: true });
  const cacheLog = path.join(layout.squidLogDir, 'cache.log');
  if (!existsSync(path.join(layout.squidCacheDir, '00'))) {
    // Without --foreground, -z backgrounds itself and the start below would find its pid file.
    const z = await execa(bin, ['-f', layout.squidConf, '-z', '--foreground'], {
      reject: false,
      stdin: 'ignore',
      timeout: SQUID_INIT_TIMEOUT_MS,
    });
    if (z.exitCode !== 0) {
      throw new ProxyError(
        'PL_PROXY_START',
        `squid -z failed: ${oneLine(z.stderr) || (await tail(cacheLog))}`,
      );
    }
    deps.logger.info({ cache_dir: layout.squidCacheDir }, 'squid cache initialized');
  }
  const r = await execa(bin, ['-f', layout.squidConf], {
    reject: false,
    stdin: 'ignore',
    timeout: START_TIMEOUT_MS,
  });
  if (r.exitCode !== 0) {
    throw new ProxyError(
      'PL_PROXY_START',
      `Squid did not start: ${oneLine(r.stderr) || (await tail(cacheLog))}`,
    );
  }
  const pid = await waitReady('Squid', layout.squidPid, ports, cacheLog);
  deps.logger.info({ pid, port: config.squid.port }, 'squid started');
  return { pid, started: true };
}

/** Stops Squid (`-k shutdown`, never `-k kill`) and waits until it is gone; a no-op when it is not running. */
export async function stopSquid(config: Config, deps: ProxyDeps): Promise<{ stopped: boolean }> {
  const layout = proxyLayout(config.paths);
  const pid = await alivePid(layout.squidPid);
  if (pid === undefined) return { stopped: false };
  const bin = findBinary(['squid']);
  let asked = false;
  if (bin && existsSync(layout.squidConf)) {
    const r = await execa(bin, ['-f', layout.squidConf, '-k', 'shutdown'], {
      reject: false,
      stdin: 'ignore',
      timeout: 30_000,
    });
    asked = r.exitCode === 0;
  }
  // SIGTERM is Squid's shutdown signal too; used when the config file is gone.
  if (!asked) process.kill(pid, 'SIGTERM');
  await waitStopped('Squid', pid, squidPorts(config), config.squid.shutdown_lifetime + 20_000);
  deps.logger.info({ pid }, 'squid stopped');
  return { stopped: true };
}

/** Renders the configs and starts Squid (unless proxy.cache = "none"), then Apache. */
export async function startProxies(config: Config, deps: ProxyDeps): Promise<ProxiesStatus> {
  await writeProxyConfigs(config, deps.apache ?? detectApachePlatform());
  if (config.proxy.cache === 'squid') await startSquid(config, deps);
  await startApache(config, deps);
  return proxiesStatus(config);
}

/** Stops Apache, then Squid. A Squid left over from proxy.cache = "squid" is stopped too. */
export async function stopProxies(config: Config, deps: ProxyDeps): Promise<ProxiesStatus> {
  await stopApache(config, deps);
  await stopSquid(config, deps);
  return proxiesStatus(config);
}

export async function proxiesStatus(config: Config): Promise<ProxiesStatus> {
  const layout = proxyLayout(config.paths);
  const instance = async (
    name: 'apache' | 'squid',
    enabled: boolean,
    pidFile: string,
    conf: string,
    ports: Array<{ role: string; host: string; port: number }>,
  ): Promise<InstanceStatus> => {
    const pid = await alivePid(pidFile);
    return {
      name,
      enabled,
      running: pid !== undefined,
      pid: pid ?? null,
      config: conf,
      ports: await Promise.all(
        ports.map(async (p) => ({
          role: p.role,
          address: fmt(p.host, p.port),
          listening: await portOpen(p.host, p.port),
        })),
      ),
    };
  };
  const auth = parseListen(config.apache.authorizer_listen);
  let authorizer: ProxiesStatus['authorizer'];
  if (auth.kind === 'unix')
    authorizer = { address: config.apache.authorizer_listen, healthy: false, error: 'not TCP' };
  else {
    const address = fmt(auth.host, auth.port);
    authorizer = await healthCheck({ host: auth.host, port: auth.port }, { timeoutMs: 1000 }).then(
      () => ({ address, healthy: true }),
      (err: unknown) => ({ address, healthy: false, error: oneLine(err) }),
    );
  }
  return {
    apache: await instance('apache', true, layout.apachePid, layout.apacheConf, apachePorts(config)),
    squid: await instance(
      'squid',
      config.proxy.cache === 'squid',
      layout.squidPid,
      layout.squidConf,
      squidPorts(config),
    ),
    authorizer,
  };
}
