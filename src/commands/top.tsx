/**
 * `pulp-lazy top`: a live view of the daemons, the queue, per-repository
 * progress, failures and the streamer's activity, refreshed every 1.5 s.
 * Keys: q quit, s sweep now, r retry failed (y/n), ? help. When stdout is not
 * a terminal (or with --once) it prints one plain snapshot and exits.
 * NO_COLOR turns colours off.
 */
import { Command } from 'commander';
import { render, renderToString } from 'ink';
import type { Database } from '../db/index.ts';
import { oneLine, UsageError } from '../errors.ts';
import { App, Screen } from '../tui/App.tsx';
import { retryAll, spawnSweep } from '../tui/actions.ts';
import { collectSnapshot } from '../tui/data.ts';
import type { TopSnapshot } from '../tui/types.ts';
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
      const collect = () => collectSnapshot(config, db, dbError);

      if (o.once || !process.stdout.isTTY) {
        const snap = await collect();
        ctx.out.line(renderToString(<Screen snapshot={snap} color={false} width={80} />, { columns: 80 }));
        return;
      }

      const color = !process.env.NO_COLOR;
      const width = Math.max(80, Math.min(process.stdout.columns ?? 80, 120));
      let snapshot: TopSnapshot | null = null;
      let message: string | undefined;
      let stopped = false;
      let timer: NodeJS.Timeout | undefined;
      const view = () => (
        <App
          snapshot={snapshot}
          color={color}
          width={width}
          message={message}
          onQuit={() => {
            stopped = true;
            clearTimeout(timer);
            instance.unmount();
          }}
          onSweep={() => {
            try {
              const s = spawnSweep(config, config.source);
              message = `sweep started (pid ${s.pid}, log ${s.log})`;
            } catch (err) {
              message = `sweep: ${oneLine(err)}`;
            }
            instance.rerender(view());
          }}
          onRetry={() => {
            if (!db) {
              message = 'retry: no database';
              instance.rerender(view());
              return;
            }
            retryAll(db).then(
              (n) => {
                message = `retrying ${n} unit(s)`;
                if (!stopped) instance.rerender(view());
              },
              (err: unknown) => {
                message = `retry: ${oneLine(err)}`;
                if (!stopped) instance.rerender(view());
              },
            );
          }}
        />
      );
      const instance = render(view(), { exitOnCtrlC: false });
      const tick = async () => {
        try {
          snapshot = await collect();
        } catch (err) {
          message = `collect: ${oneLine(err)}`;
        }
        if (stopped) return;
        instance.rerender(view());
        timer = setTimeout(tick, interval * 1000);
      };
      void tick();
      await instance.waitUntilExit();
    });
}
