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
      const once = o.once === true || !process.stdout.isTTY;
      const { runTop } = once
        ? await import('../tui/main.tsx')
        : await withoutCiFlags(() => import('../tui/main.tsx'));
      await runTop(
        { config, db, dbError, line: (text) => ctx.out.line(text) },
        { once, intervalSeconds: interval },
      );
    });
}

/**
 * Ink draws only the final frame when CI or CONTINUOUS_INTEGRATION is set
 * (its is-in-ci check, read once when Ink is first imported), so `top` on a
 * terminal in such an environment would stay blank until it quits. The live
 * view imports Ink with those variables hidden, then puts them back.
 */
async function withoutCiFlags<T>(load: () => Promise<T>): Promise<T> {
  const saved = { CI: process.env.CI, CONTINUOUS_INTEGRATION: process.env.CONTINUOUS_INTEGRATION };
  delete process.env.CI;
  delete process.env.CONTINUOUS_INTEGRATION;
  try {
    return await load();
  } finally {
    for (const [key, value] of Object.entries(saved)) if (value !== undefined) process.env[key] = value;
  }
}
