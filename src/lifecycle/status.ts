/** One status shape for every component (`status`, `top`). */
import type { Config } from '../config.ts';
import { connect, type Database } from '../db/index.ts';
import { proxiesStatus } from '../proxies/index.ts';
import { diskStatus, diskWarning, guardedDirs } from '../storage/free-space.ts';
import { type RemoteView, readRemoteHealth } from '../upstream/health.ts';
import type { ComponentName } from './components.ts';
import { type DaemonStatus, daemonStatus, VERSION } from './daemon.ts';

/** A daemon's status without the pid-file detail, for any component (daemons and proxies). */
export type ComponentStatus = Omit<DaemonStatus, 'name' | 'stale_pid_file'> & {
  name: ComponentName;
  /** The streamer's and the scheduler's: free space under storage.min_free (saving and sweep paused). */
  warning?: string;
};

/**
 * The low-disk warning (storage.min_free), measured now from the config's
 * paths with the guard's own function: no daemon needed.
 */
export async function lowDiskWarning(config: Config): Promise<string | undefined> {
  return diskWarning(await diskStatus(guardedDirs(config), config.storage.min_free));
}

/**
 * The upstream origins that are not ok (blocked or failing, src/upstream/health.ts),
 * from the database; undefined when it cannot be reached within a second or two.
 */
export async function remotesStatus(config: Config): Promise<RemoteView[] | undefined> {
  let db: Database | undefined;
  try {
    db = await connect(config.database.url, config.database.name, { timeoutMs: 1500 });
    return (await readRemoteHealth(db)).filter((v) => v.state !== 'ok');
  } catch {
    return undefined;
  } finally {
    await db?.close().catch(() => {});
  }
}

export async function componentStatus(config: Config, name: ComponentName): Promise<ComponentStatus> {
  if (name !== 'proxies') {
    const [{ stale_pid_file: _s, ...s }, warning]: [DaemonStatus, string | undefined] = await Promise.all([
      daemonStatus(config, name),
      name === 'streamer' || name === 'scheduler' ? lowDiskWarning(config) : undefined,
    ]);
    return warning ? { ...s, warning } : s;
  }
  const p = await proxiesStatus(config);
  const ports = [...p.apache.ports, ...(p.squid.enabled ? p.squid.ports : [])];
  const running = p.apache.running && (p.squid.running || !p.squid.enabled);
  const down = ports.filter((x) => !x.listening).map((x) => `${x.role} ${x.address}`);
  const s: ComponentStatus = {
    name,
    running,
    pid: p.apache.pid,
    uptime_s: null,
    listen: ports.map((x) => `${x.role}=${x.address}`).join(' '),
    healthy: running ? down.length === 0 : null,
    version: VERSION,
    // Apache and Squid daemonize themselves; nothing of ours restarts them.
    supervised: false,
    restarts: 0,
    last_exit: null,
  };
  if (running && down.length) s.error = `not listening: ${down.join(', ')}`;
  else if (!p.apache.running && p.squid.running) s.error = 'squid runs, apache does not';
  return s;
}
