/**
 * systemd unit files for a host install: one service per daemon
 * (content, streamer, authorizer, scheduler), a oneshot for the proxies,
 * and the sweep as a .timer + .service pair (an alternative to the scheduler).
 */
import type { Config } from '../config.ts';
import { BIN_PATH, type DaemonName, daemonNodeArgs } from '../lifecycle/components.ts';

function exec(configPath: string, args: string, nodeArgs: string[] = []): string {
  return [process.execPath, ...nodeArgs, BIN_PATH, '--config', configPath, args].join(' ');
}

function service(description: string, execStart: string, extra: string[] = []): string {
  return [
    '[Unit]',
    `Description=${description}`,
    'After=network-online.target',
    'Wants=network-online.target',
    '',
    '[Service]',
    ...extra,
    `ExecStart=${execStart}`,
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ].join('\n');
}

/** The long-running services `init` tells the operator to enable (pulp-lazy-sweep.timer replaces the scheduler). */
export const SYSTEMD_SERVICES = [
  'pulp-lazy-content',
  'pulp-lazy-streamer',
  'pulp-lazy-authorizer',
  'pulp-lazy-proxies',
  'pulp-lazy-scheduler',
];

/** File name → contents. */
export function renderUnits(config: Config, configPath: string): Record<string, string> {
  const daemon = (name: DaemonName, what: string, args: string, stopSec: number) =>
    service(`pulp-lazy ${what}`, exec(configPath, args, daemonNodeArgs(name)), [
      'Type=simple',
      `SyslogIdentifier=pulp-lazy-${name}`,
      'KillSignal=SIGTERM',
      `TimeoutStopSec=${stopSec}`,
      'Restart=on-failure',
      'RestartSec=5',
    ]);
  const secs = (ms: number) => Math.ceil(ms / 1000);
  return {
    'pulp-lazy-content.service': daemon('content', 'content daemon', 'run content', 15),
    'pulp-lazy-streamer.service': daemon(
      'streamer',
      'streamer daemon',
      'run streamer',
      secs(config.streamer.shutdown_timeout) + 15,
    ),
    'pulp-lazy-authorizer.service': daemon('authorizer', 'FastCGI authorizer', 'run authorizer', 15),
    'pulp-lazy-scheduler.service': daemon(
      'scheduler',
      'sweep scheduler',
      'run scheduler',
      secs(config.tasks.shutdown_timeout) + 15,
    ),
    'pulp-lazy-proxies.service': service(
      'pulp-lazy private Apache and Squid',
      exec(configPath, 'proxies start'),
      ['Type=oneshot', 'RemainAfterExit=yes', `ExecStop=${exec(configPath, 'proxies stop')}`],
    ),
    'pulp-lazy-sweep.service': [
      '[Unit]',
      'Description=pulp-lazy sweep (one run; use instead of pulp-lazy-scheduler.service)',
      '',
      '[Service]',
      'Type=oneshot',
      `ExecStart=${exec(configPath, 'sweep')}`,
      '',
    ].join('\n'),
    'pulp-lazy-sweep.timer': [
      '[Unit]',
      'Description=pulp-lazy sweep every tasks.sweep_interval',
      '',
      '[Timer]',
      'OnBootSec=5min',
      `OnUnitInactiveSec=${secs(config.tasks.sweep_interval)}s`,
      '',
      '[Install]',
      'WantedBy=timers.target',
      '',
    ].join('\n'),
  };
}
