/**
 * `pulp-lazy run <daemon>`: runs one daemon in the foreground (for systemd
 * or a terminal). Connects the database, starts the daemon, logs JSON lines
 * on stderr; on SIGTERM/SIGINT closes it with a deadline and exits 0; a
 * second signal exits at once (code 1).
 *
 * To add a daemon: write a DaemonSpec and append it to DAEMONS.
 */
import { Command } from 'commander';
import type { Config } from '../config.ts';
import { createAuthorizer } from '../daemons/authorizer.ts';
import { createContentDaemon } from '../daemons/content.ts';
import { createStreamer } from '../daemons/streamer.ts';
import type { Logger } from '../log.ts';
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
    const authorizer = createAuthorizer(ctx.config(), { logger: log });
    await authorizer.listen();
    return authorizer;
  },
};

export const contentDaemon: DaemonSpec = {
  name: 'content',
  description:
    'the content daemon behind /pulp/content/: X-Sendfile hits, signed redirects for misses (config content.*)',
  // Requests are answered from one realpath + stat: nothing long to drain.
  shutdownDeadlineMs: () => 5000,
  async start(ctx, log) {
    const content = createContentDaemon(ctx.config(), { db: await ctx.db(), logger: log });
    await content.listen();
    return content;
  },
};

export const DAEMONS: DaemonSpec[] = [streamerDaemon, contentDaemon, authorizerDaemon];

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

export async function runForeground(ctx: Context, spec: DaemonSpec): Promise<void> {
  const log = ctx.logger().child({ daemon: spec.name });
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
