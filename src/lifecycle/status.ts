/** One status shape for every component (`status`, `top`). */
import type { Config } from '../config.ts';
import { proxiesStatus } from '../proxies/index.ts';
import type { ComponentName } from './components.ts';
import { type DaemonStatus, daemonStatus, VERSION } from './daemon.ts';

/** A daemon's status without the pid-file detail, for any component (daemons and proxies). */
export type ComponentStatus = Omit<DaemonStatus, 'name' | 'stale_pid_file'> & { name: ComponentName };

export async function componentStatus(config: Config, name: ComponentName): Promise<ComponentStatus> {
  if (name !== 'proxies') {
    const { stale_pid_file: _s, ...s }: DaemonStatus = await daemonStatus(config, name);
    return s;
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
