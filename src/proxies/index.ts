/**
 * Lifecycle of the private Apache and Squid instances (`pulp-lazy proxies
 * start|stop|status`). Configs are rendered into the layout of
 * src/render/layout.ts at every start. Each program is one Instance record
 * (binary, pid file, ports, start and stop arguments, log) run by the one
 * start/stop/status of instance.ts. Squid is stopped with `-k shutdown`,
 * never `-k kill` (that leaves its kid process holding the port).
 * Start order: Squid, then Apache; stop order: Apache, then Squid.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import { execa } from 'execa';
import type { Config } from '../config.ts';
import { oneLine } from '../errors.ts';
import { healthCheck } from '../fastcgi/health.ts';
import type { Logger } from '../log.ts';
import { type ApachePlatform, detectApachePlatform, proxyLayout } from '../render/index.ts';
import { parseListen } from '../util/listen.ts';
import { tail } from '../util/process.ts';
import { writeProxyConfigs } from './configs.ts';
import { ProxyError } from './errors.ts';
import { checkFastPathOwnership } from './fastpath.ts';
import {
  fmt,
  type Instance,
  type InstanceStatus,
  instanceStatus,
  startInstance,
  stopInstance,
} from './instance.ts';

export { type ProxyLayout, proxyLayout } from '../render/index.ts';
export { userIds, writeProxyConfigs } from './configs.ts';
export { ProxyError } from './errors.ts';
export type { InstanceStatus, PortStatus } from './instance.ts';

export interface ProxyDeps {
  logger: Logger;
  /** Defaults to the installed one (Debian, else RHEL layout). */
  apache?: ApachePlatform;
}

export interface ProxiesStatus {
  apache: InstanceStatus;
  squid: InstanceStatus;
  authorizer: { address: string; healthy: boolean; error?: string };
}

const APACHE_STOP_TIMEOUT_MS = 20_000;
const SQUID_INIT_TIMEOUT_MS = 120_000;

export function apacheInstance(config: Config, platform = detectApachePlatform()): Instance {
  const layout = proxyLayout(config.paths);
  const host = config.apache.listen_host || '127.0.0.1';
  return {
    name: 'apache',
    label: 'Apache',
    bin: platform.bin,
    install: 'Debian: apt-get install apache2-bin libapache2-mod-xsendfile',
    enabled: true,
    conf: layout.apacheConf,
    pidFile: layout.apachePid,
    log: path.join(layout.apacheLogDir, 'error.log'),
    ports: [
      { role: 'content', host, port: config.apache.content_port },
      { role: 'streamer', host, port: config.apache.streamer_port },
    ],
    startArgs: ['-f', layout.apacheConf, '-k', 'start'],
    stopArgs: ['-f', layout.apacheConf, '-k', 'stop'],
    stopTimeoutMs: APACHE_STOP_TIMEOUT_MS,
    check: () => checkFastPathOwnership(config),
  };
}

export function squidInstance(config: Config): Instance {
  const layout = proxyLayout(config.paths);
  const log = path.join(layout.squidLogDir, 'cache.log');
  return {
    name: 'squid',
    label: 'Squid',
    bin: 'squid',
    install: 'Debian: apt-get install squid',
    enabled: config.proxy.cache === 'squid',
    conf: layout.squidConf,
    pidFile: layout.squidPid,
    log,
    ports: [{ role: 'cache', host: '127.0.0.1', port: config.squid.port }],
    startArgs: ['-f', layout.squidConf],
    stopArgs: ['-f', layout.squidConf, '-k', 'shutdown'],
    stopTimeoutMs: config.squid.shutdown_lifetime + 20_000,
    init: async (bin, logger) => {
      if (existsSync(path.join(layout.squidCacheDir, '00'))) return;
      // Without --foreground, -z backgrounds itself and the start would find its pid file.
      const z = await execa(bin, ['-f', layout.squidConf, '-z', '--foreground'], {
        reject: false,
        stdin: 'ignore',
        timeout: SQUID_INIT_TIMEOUT_MS,
      });
      if (z.exitCode !== 0) {
        throw new ProxyError('PL_PROXY_START', `squid -z failed: ${oneLine(z.stderr) || (await tail(log))}`);
      }
      logger.info({ cache_dir: layout.squidCacheDir }, 'squid cache initialized');
    },
  };
}

/** Starts Apache unless it is already running; resolves with its pid. */
export function startApache(config: Config, deps: ProxyDeps): Promise<{ pid: number; started: boolean }> {
  return startInstance(apacheInstance(config, deps.apache), deps.logger);
}

/** Stops Apache (`-k stop`) and waits until it is gone; a no-op when it is not running. */
export function stopApache(config: Config, deps: ProxyDeps): Promise<{ stopped: boolean }> {
  return stopInstance(apacheInstance(config, deps.apache), deps.logger);
}

/** Starts Squid (initializing its cache on first start) unless it is already running. */
export function startSquid(config: Config, deps: ProxyDeps): Promise<{ pid: number; started: boolean }> {
  return startInstance(squidInstance(config), deps.logger);
}

/** Stops Squid (`-k shutdown`, never `-k kill`) and waits until it is gone; a no-op when it is not running. */
export function stopSquid(config: Config, deps: ProxyDeps): Promise<{ stopped: boolean }> {
  return stopInstance(squidInstance(config), deps.logger);
}

/** Renders the configs and starts Squid (unless proxy.cache = "none"), then Apache. */
export async function startProxies(config: Config, deps: ProxyDeps): Promise<ProxiesStatus> {
  await writeProxyConfigs(config, deps.apache ?? detectApachePlatform());
  const squid = squidInstance(config);
  if (squid.enabled) await startInstance(squid, deps.logger);
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
    apache: await instanceStatus(apacheInstance(config)),
    squid: await instanceStatus(squidInstance(config)),
    authorizer,
  };
}
