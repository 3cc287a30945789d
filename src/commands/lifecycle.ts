/**
 * `pulp-lazy start|stop|restart|status [content|streamer|authorizer|scheduler|proxies|all]`:
 * the daemons run detached under a supervisor that restarts them (pid and
 * state files in paths.run, logs in paths.logs), the proxies through
 * src/proxies/. See src/lifecycle/.
 */
import { Command } from 'commander';
import { oneLine, PulpLazyError, UsageError } from '../errors.ts';
import {
  COMPONENTS,
  type ComponentName,
  type ComponentStatus,
  componentStatus,
  type DaemonName,
  describeExit,
  expandTarget,
  remotesStatus,
  startDaemon,
  stopDaemon,
} from '../lifecycle/index.ts';
import { startProxies, stopProxies } from '../proxies/index.ts';
import { describeRemote } from '../upstream/health.ts';
import { type Context, withJson } from './context.ts';

const TARGET_HELP = `one of ${COMPONENTS.join(', ')}, all (default: all)`;

function targets(t: string | undefined): ComponentName[] {
  const list = expandTarget(t);
  if (!list) throw new UsageError(`unknown component "${t}" (${TARGET_HELP})`);
  return list;
}

export function lifecycleCommands(ctx: Context): Command[] {
  const start = new Command('start')
    .description('start daemons detached and the proxies; wait until they answer')
    .argument('[component]', TARGET_HELP)
    .action(async (t: string | undefined) => startAll(ctx, targets(t)));
  const stop = new Command('stop')
    .description('stop daemons (SIGTERM, then SIGKILL after their deadline) and the proxies')
    .argument('[component]', TARGET_HELP)
    .action(async (t: string | undefined) => stopAll(ctx, targets(t)));
  const restart = new Command('restart')
    .description('stop, then start')
    .argument('[component]', TARGET_HELP)
    .action(async (t: string | undefined) => {
      await stopAll(ctx, targets(t));
      await startAll(ctx, targets(t));
    });
  const status = withJson(
    new Command('status')
      .description('pid, uptime, listen address, health, version and restarts of each component')
      .argument('[component]', TARGET_HELP),
  ).action(async (t: string | undefined, o: { json?: boolean }) => {
    const config = ctx.config();
    const names = targets(t);
    // Blocked or failing upstream origins (src/upstream/health.ts): what the streamer and the sweep skip.
    const [list, remotes] = await Promise.all([
      Promise.all(names.map((n) => componentStatus(config, n))),
      names.some((n) => n === 'streamer' || n === 'scheduler') ? remotesStatus(config) : undefined,
    ]);
    if (o.json)
      return ctx.out.json(
        remotes?.length
          ? list.map((s) => (s.name === 'streamer' || s.name === 'scheduler' ? { ...s, remotes } : s))
          : list,
      );
    for (const s of list) ctx.out.line(statusLine(s));
    for (const w of new Set(list.flatMap((s) => (s.warning ? [s.warning] : []))))
      ctx.out.line(`warning: ${w}`);
    if (remotes?.length) {
      ctx.out.line('remotes:');
      for (const r of remotes) ctx.out.line(`  ${r.origin}  ${describeRemote(r)}`);
    }
    if (list.some((s) => s.running && s.healthy === false)) process.exitCode = 1;
  });
  return [start, stop, restart, status];
}

/** One line of `status`: state, pid, uptime, listen address, version, restarts, errors. */
function statusLine(s: ComponentStatus): string {
  const state = s.running
    ? s.healthy === false
      ? 'UNHEALTHY'
      : 'running'
    : s.supervised
      ? 'restarting'
      : 'stopped';
  const exit = s.last_exit;
  const parts = [
    `${s.name.padEnd(10)} ${state.padEnd(10)}`,
    s.pid !== null ? `pid ${s.pid}` : '',
    s.uptime_s !== null ? `up ${s.uptime_s}s` : '',
    s.listen ? s.listen : '',
    s.running ? `v${s.version}` : '',
    s.restarts > 0 ? `restarts ${s.restarts}` : '',
    exit ? `last exit: ${describeExit(exit)} at ${exit.at}` : '',
    s.given_up ? `(gave up: ${s.given_up})` : '',
    s.error ? `(${s.error})` : '',
  ];
  return parts.filter(Boolean).join('  ').trimEnd();
}

async function startAll(ctx: Context, names: ComponentName[]): Promise<void> {
  const config = ctx.config();
  const failures: string[] = [];
  for (const name of names) {
    try {
      if (name === 'proxies') {
        await startProxies(config, { logger: ctx.logger() });
        ctx.out.line('proxies: running');
        continue;
      }
      const r = await startDaemon(config, config.source, name as DaemonName);
      if (r.staleRemoved) ctx.out.line(`${name}: removed a stale pid file`);
      ctx.out.line(
        r.started
          ? `${name}: started (pid ${r.pid})`
          : r.pid === null
            ? `${name}: already supervised (restarting)`
            : `${name}: already running (pid ${r.pid})`,
      );
    } catch (err) {
      failures.push(name);
      ctx.out.err(`${name}: ${oneLine(err)}`);
    }
  }
  if (failures.length) throw new PulpLazyError('PL_START_FAILED', `could not start: ${failures.join(', ')}`);
}

async function stopAll(ctx: Context, names: ComponentName[]): Promise<void> {
  const config = ctx.config();
  const failures: string[] = [];
  for (const name of [...names].reverse()) {
    try {
      if (name === 'proxies') {
        await stopProxies(config, { logger: ctx.logger() });
        ctx.out.line('proxies: stopped');
        continue;
      }
      const r = await stopDaemon(config, name as DaemonName);
      const msg = {
        stopped: `stopped (pid ${r.pid})`,
        killed: `did not stop in time: killed with SIGKILL (pid ${r.pid})`,
        not_running: 'not running',
        stale: `not running (removed a stale pid file for pid ${r.pid ?? '?'})`,
      }[r.outcome];
      ctx.out.line(`${name}: ${msg}`);
    } catch (err) {
      failures.push(name);
      ctx.out.err(`${name}: ${oneLine(err)}`);
    }
  }
  if (failures.length) throw new PulpLazyError('PL_STOP_FAILED', `could not stop: ${failures.join(', ')}`);
}
