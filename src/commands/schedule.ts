import { Command } from 'commander';
import { createScheduler } from '../scheduler/index.ts';
import { formatDuration } from '../tasks/progress.ts';
import { recordRunOrWarn, sweepRun } from '../tasks/runs.ts';
import { runSweep } from '../tasks/sweep.ts';
import type { Context } from './context.ts';
import { runForeground } from './run.ts';
import { openTaskDeps } from './task-deps.ts';

/**
 * `pulp-lazy schedule`: runs the sweep every tasks.sweep_interval in the
 * foreground, never two at once, logging each run's summary as a JSON line
 * on stderr. SIGTERM/SIGINT: no new run; the current one stops claiming and
 * may finish until tasks.shutdown_timeout, then it is aborted (its entries
 * are given back); exit 0. See docs/scheduling.md for cron/systemd instead.
 */
export function scheduleCommand(ctx: Context): Command {
  return new Command('schedule')
    .description('run the sweep every tasks.sweep_interval in the foreground (stops cleanly on SIGTERM)')
    .action(() =>
      runForeground(ctx, {
        name: 'schedule',
        description: 'sweep scheduler',
        shutdownDeadlineMs: (c) => c.tasks.shutdown_timeout,
        async start(c, log) {
          const cfg = c.config();
          const deps = await openTaskDeps(c);
          const scheduler = createScheduler({
            intervalMs: cfg.tasks.sweep_interval,
            logger: log,
            run: ({ stop, abort }) => runSweep({ ...deps, logger: log }, { stop, signal: abort }),
            // Each run's summary goes into task_runs (shown by `pulp-lazy top`).
            onRunEnd: ({ summary, startedAt, finishedAt }) =>
              summary && recordRunOrWarn(deps.db, sweepRun(summary, startedAt, finishedAt), log),
          });
          scheduler.start();
          log.info(
            { every: formatDuration(cfg.tasks.sweep_interval / 1000), cron: scheduler.cronTime ?? null },
            'sweeping on schedule',
          );
          return { close: async ({ deadlineMs }) => void (await scheduler.stop({ deadlineMs })) };
        },
      }),
    );
}
