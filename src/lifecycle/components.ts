/**
 * The components `pulp-lazy start|stop|status` manage: the four daemons run
 * detached (`pulp-lazy run NAME` / `schedule`) and the proxies (Apache + Squid,
 * which daemonize themselves; see src/proxies/).
 */
import type { Config } from '../config.ts';

export { BIN_PATH } from '../util/bin.ts';

export const DAEMON_NAMES = ['content', 'streamer', 'authorizer', 'scheduler'] as const;
export type DaemonName = (typeof DAEMON_NAMES)[number];
export const COMPONENTS = [...DAEMON_NAMES, 'proxies'] as const;
export type ComponentName = (typeof COMPONENTS)[number];

/** Start order; stop goes the other way. */
export const START_ORDER: readonly ComponentName[] = [
  'content',
  'streamer',
  'authorizer',
  'scheduler',
  'proxies',
];

/** CLI arguments after `--config FILE` that run the daemon in the foreground. */
export function daemonArgs(name: DaemonName): string[] {
  return name === 'scheduler' ? ['schedule'] : ['run', name];
}

/**
 * Node options the daemon runs with, before the script (V8 sizes its heap
 * once, at start). The streamer keeps a 2 MiB young-generation semi-space
 * instead of V8's 16 MiB: its heap is small, many concurrent streams then
 * peak lower, and a large miss is not slower (bench/RESULTS.md, memory and
 * miss).
 */
export function daemonNodeArgs(name: DaemonName): string[] {
  return name === 'streamer' ? ['--max-semi-space-size=2'] : [];
}

/** The daemon's listen address from the config (null: it listens nowhere). */
export function daemonListen(config: Config, name: DaemonName): string | null {
  if (name === 'content') return config.content.listen;
  if (name === 'streamer') return config.streamer.listen;
  if (name === 'authorizer') return config.apache.authorizer_listen;
  return null;
}

/** How long `stop` waits after SIGTERM before SIGKILL. */
export function stopDeadlineMs(config: Config, name: DaemonName): number {
  const grace = 5000;
  if (name === 'streamer') return config.streamer.shutdown_timeout + grace;
  if (name === 'scheduler') return config.tasks.shutdown_timeout + grace;
  return 5000 + grace;
}

export function expandTarget(target: string | undefined): ComponentName[] | undefined {
  if (target === undefined || target === 'all') return [...START_ORDER];
  return (COMPONENTS as readonly string[]).includes(target) ? [target as ComponentName] : undefined;
}
