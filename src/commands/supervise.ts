/**
 * `pulp-lazy supervise NAME` (hidden): what `pulp-lazy start` runs, detached,
 * for each daemon; it runs the daemon and restarts it when it dies (see
 * src/lifecycle/supervisor.ts). Its log lines go to stdout, which `start`
 * points at the daemon's log file.
 */
import { Command } from 'commander';
import { UsageError } from '../errors.ts';
import { DAEMON_NAMES, type DaemonName } from '../lifecycle/components.ts';
import { supervise } from '../lifecycle/supervisor.ts';
import { createLogger } from '../log.ts';
import type { Context } from './context.ts';
import { exitOnCrash } from './run.ts';

export function superviseCommand(ctx: Context): Command {
  return new Command('supervise')
    .description('run a daemon and restart it when it dies (started by "pulp-lazy start")')
    .argument('<daemon>', DAEMON_NAMES.join(', '))
    .action(async (name: string) => {
      if (!(DAEMON_NAMES as readonly string[]).includes(name))
        throw new UsageError(`unknown daemon "${name}" (one of ${DAEMON_NAMES.join(', ')})`);
      const config = ctx.config();
      const log = createLogger({
        level: config.log.level,
        name: 'pulp-lazy',
        destination: process.stdout,
      }).child({ module: 'supervisor', daemon: name });
      exitOnCrash(log);
      await supervise({ config, configPath: config.source, name: name as DaemonName, log });
    });
}
