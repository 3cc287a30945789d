/**
 * `pulp-lazy top`: a live view of the daemons, the queue, sweep throughput
 * and the last runs, per-repository progress, failures and the streamer's
 * activity, refreshed every 1.5 s. Keys: q quit, s sweep now, r retry failed
 * (y/n), ? help. When stdout is not a terminal (or with --once) it prints
 * one plain snapshot and exits. NO_COLOR turns colours off.
 *
 * Ink, React and the screen (src/tui/main.tsx) are imported only when the
 * command runs: every command is registered at start-up, and the daemons
 * (`pulp-lazy run streamer`, ...) should not carry a TUI in their memory.
 */
import { Command } from 'commander';
import type { Database } from '../db/index.ts';
import { oneLine, UsageError } from '../errors.ts';
import type { Context } from './context.ts';

export function topCommand(ctx: Context): Command {
  return new Command('top')
    .description('live view: daemons, queue, repository progress, failures, streamer activity (q quits)')
    .option('--once', 'print one plain snapshot and exit (the default when stdout is not a terminal)')
    .option('--interval <seconds>', 'refresh interval', '1.5')
    .action(async (o: { once?: boolean; interval: string }) => {
      const interval = Number(o.interval);
      if (!Number.isFinite(interval) || interval < 0.2 || interval > 60)
        throw new UsageError('--interval: give seconds between 0.2 and 60');
      const config = ctx.config();
      let db: Database | null = null;
      let dbError: string | undefined;
      try {
        db = await ctx.db();
      } catch (err) {
        dbError = `database: ${oneLine(err)}`;
      }
      const { runTop } = await import('../tui/main.tsx');
      await runTop(
        { config, db, dbError, line: (text) => ctx.out.line(text) },
        { once: o.once === true || !process.stdout.isTTY, intervalSeconds: interval },
      );
    });
}
