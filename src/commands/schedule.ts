import { Command } from 'commander';
import type { Context } from './context.ts';
import { runForeground, schedulerDaemon } from './run.ts';

/**
 * `pulp-lazy schedule`: the same as `pulp-lazy run scheduler` (the sweep
 * every tasks.sweep_interval in the foreground, never two at once, each
 * run's summary logged as a JSON line on stdout; and the repositories' due
 * syncs, docs/scheduling.md; see schedulerDaemon).
 */
export function scheduleCommand(ctx: Context): Command {
  return new Command('schedule')
    .description(
      'run the sweep every tasks.sweep_interval and the due repository syncs in the foreground (stops cleanly on SIGTERM)',
    )
    .action(() => runForeground(ctx, schedulerDaemon));
}
