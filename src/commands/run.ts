/**
 * `pulp-lazy run <daemon>`: runs one daemon in the foreground (for systemd
 * or a terminal). Connects the database, starts the daemon, logs JSON lines
 * on stdout (what journald and log shippers read; one-line errors from the
 * CLI itself stay on stderr); on SIGTERM/SIGINT closes it with a deadline
 * and exits 0; a second signal exits at once (code 1). An exception nothing
 * caught or a rejection nobody handled ends it at once (code 1) after one
 * fatal JSON line: never half-alive (`start`'s supervisor or systemd restarts it).
 *
 * To add a daemon: write a DaemonSpec and append it to DAEMONS. Each spec
 * loads its daemon's modules when it starts, so a process carries only its own.
 */
import { Command } from 'commander';
import type { Config } from '../config.ts';
import { crashLogger, createLogger, type Logger } from '../log.ts';
import type { Context } from './context.ts';

/** A started daemon, as the foreground runner sees it. */
export interface RunningDaemon {
  close(opts: { deadlineMs: number }): Promise<void>;
}

export interface DaemonSpec {
  name: string;
  description: string;
  /** How long running work may go on after SIGTERM. */
  shutdownDeadlineMs(config: Config): number;
  /** Creates the daemon and binds its listen address. */
  start(ctx: Context, log: Logger): Promise<RunningDaemon>;
}

export const streamerDaemon: DaemonSpec = {
  name: 'streamer',
  description:
    'the streamer daemon: fetches missing files upstream, streams and saves them (config streamer.*)',
  shutdownDeadlineMs: (config) => config.streamer.shutdown_timeout,
  async start(ctx, log) {
    const { createStreamer } = await import('../daemons/streamer.ts');
    const streamer = createStreamer(ctx.config(), { db: await ctx.db(), logger: log });
    await streamer.listen();
    return streamer;
  },
};

export const authorizerDaemon: DaemonSpec = {
  name: 'authorizer',
  description: "the FastCGI signature check for Apache's streamer vhost (config apache.authorizer_listen)",
  // Checks are synchronous and short: nothing to drain.
  shutdownDeadlineMs: () => 5000,
  async start(ctx, log) {
    const { createAuthorizer } = await import('../daemons/authorizer.ts');
    const authorizer = createAuthorizer(ctx.config(), { logger: log });
    await authorizer.listen();
    return authorizer;
  },
};

export const contentDaemon: DaemonSpec = {
  name: 'content',
  description:
    'the content daemon behind /pulp/content/: X-Sendfile hits, signed redirects for misses (config content.*)',
  // Requests are answered from one open + fstat + readlink: nothing long to drain.
  shutdownDeadlineMs: () => 5000,
  async start(ctx, log) {
    const { createContentDaemon } = await import('../daemons/content.ts');
    const content = createContentDaemon(ctx.config(), { db: await ctx.db(), logger: log });
    await content.listen();
    return content;
  },
};

/**
 * The sweep scheduler (also `pulp-lazy schedule`): a sweep every
 * tasks.sweep_interval, never two at once. On SIGTERM no new run starts;
 * the current one stops claiming and may finish until tasks.shutdown_timeout,
 * then it is aborted (its entries are given back). See docs/scheduling.md
 * for cron/systemd timers instead.
 */
export const schedulerDaemon: DaemonSpec = {
  name: 'scheduler',
  description:
    'the scheduler: a deferred-downloads sweep every tasks.sweep_interval, and the due repository syncs (config sync.*)',
  shutdownDeadlineMs: (config) => config.tasks.shutdown_timeout,
  async start(ctx, log) {
    const cfg = ctx.config();
    const [
      { createScheduler },
      { formatDuration },
      { recordRunOrWarn, sweepRun },
      { runSweep },
      { openTaskDeps },
      { startSyncScheduling },
      { pruneKept },
      { startProbing },
    ] = await Promise.all([
      import('../scheduler/index.ts'),
      import('../tasks/progress.ts'),
      import('../tasks/runs.ts'),
      import('../tasks/sweep.ts'),
      import('./task-deps.ts'),
      import('../scheduler/syncs.ts'),
      import('../publish/keep.ts'),
      import('../upstream/health.ts'),
    ]);
    const deps = await openTaskDeps(ctx);
    // Blocked upstream origins are probed from here too: a mirror whose misses all go through the
    // sweep (no client) still sees them unblocked (src/upstream/health.ts).
    const s = cfg.streamer;
    const prober = deps.health
      ? startProbing(deps.health, deps.db, {
          connectMs: s.connect_timeout,
          headersMs: s.headers_timeout,
          bodyIdleMs: s.body_idle_timeout,
        })
      : { close: async () => {} };
    const scheduler = createScheduler({
      intervalMs: cfg.tasks.sweep_interval,
      logger: log,
      run: async ({ stop, abort }) => {
        // Kept links of earlier published trees past publish.keep_previous go, even with no sync.
        await pruneKept(cfg.paths.published).catch((err) => log.warn({ event: 'publish.prune_failed', err }));
        return runSweep({ ...deps, logger: log }, { stop, signal: abort });
      },
      // Each run's summary goes into task_runs (shown by `pulp-lazy top`).
      onRunEnd: ({ summary, startedAt, finishedAt }) =>
        summary && recordRunOrWarn(deps.db, sweepRun(summary, startedAt, finishedAt), log),
    });
    scheduler.start();
    log.info(
      { every: formatDuration(cfg.tasks.sweep_interval / 1000), cron: scheduler.cronTime ?? null },
      'sweeping on schedule',
    );
    // Beside the sweep: the repositories' scheduled and requested syncs (src/scheduler/syncs.ts).
    const syncs = await startSyncScheduling(cfg, deps.db, log, async () => deps);
    return {
      close: async ({ deadlineMs }) =>
        void (await Promise.all([
          scheduler.stop({ deadlineMs }),
          syncs.close({ deadlineMs }),
          prober.close(),
        ])),
    };
  },
};

export const DAEMONS: DaemonSpec[] = [streamerDaemon, contentDaemon, authorizerDaemon, schedulerDaemon];

/** Extra time after the deadline before the process gives up on a clean exit. */
const FORCE_EXIT_GRACE_MS = 10_000;

export function runCommand(ctx: Context, daemons: DaemonSpec[] = DAEMONS): Command {
  const run = new Command('run').description(
    'run a daemon in the foreground (stops cleanly on SIGTERM/SIGINT)',
  );
  for (const spec of daemons) {
    run
      .command(spec.name)
      .description(spec.description)
      .action(() => runForeground(ctx, spec));
  }
  return run;
}

/**
 * Last resort: an uncaught exception or an unhandled rejection is logged as
 * one fatal line (the error's message, code and stack in `err`), `beforeExit`
 * runs (synchronous: kill child processes), and the process exits 1 at once.
 * Logs go to a file or a pipe (journald, the supervisor's log file), which
 * Node writes synchronously, so the line is out before the exit.
 */
export function exitOnCrash(log: Logger, beforeExit?: () => void): void {
  const crash = (what: string) => (err: unknown) => {
    try {
      crashLogger(log).fatal(
        { err: err instanceof Error ? err : new Error(String(err)) },
        `${what}: exiting`,
      );
      beforeExit?.();
    } finally {
      process.exit(1);
    }
  };
  process.on('uncaughtException', crash('uncaught exception'));
  process.on('unhandledRejection', crash('unhandled rejection'));
}

export async function runForeground(
  ctx: Context,
  spec: DaemonSpec,
  opts: { beforeCrashExit?: () => void } = {},
): Promise<void> {
  const log = createLogger({
    level: ctx.config().log.level,
    name: 'pulp-lazy',
    destination: process.stdout,
  }).child({
    daemon: spec.name,
  });
  exitOnCrash(log, opts.beforeCrashExit);
  const deadlineMs = spec.shutdownDeadlineMs(ctx.config());
  const daemon = await spec.start(ctx, log);
  const signals = ['SIGTERM', 'SIGINT'] as const;
  let onSignal: ((signal: NodeJS.Signals) => void) | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      let stopping = false;
      onSignal = (signal) => {
        if (stopping) {
          log.warn({ signal }, 'second signal: exiting now');
          process.exit(1);
        }
        stopping = true;
        log.info({ signal, deadline_ms: deadlineMs }, 'shutting down');
        setTimeout(() => {
          log.error('shutdown did not finish in time: exiting');
          process.exit(1);
        }, deadlineMs + FORCE_EXIT_GRACE_MS).unref();
        daemon.close({ deadlineMs }).then(resolve, reject);
      };
      for (const s of signals) process.on(s, onSignal);
    });
  } finally {
    for (const s of signals) if (onSignal) process.off(s, onSignal);
  }
  log.info('stopped');
}
