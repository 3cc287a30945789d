/**
 * Drives `pulp-lazy top`: collects a snapshot every interval and renders it
 * with Ink (keys: q quit, s sweep now, r retry failed after y/n, ? help), or
 * prints one plain snapshot. Loaded by src/commands/top.tsx only when `top`
 * runs, so other commands never load Ink and React.
 */
import { render, renderToString } from 'ink';
import type { Config } from '../config.ts';
import type { Database } from '../db/index.ts';
import { oneLine } from '../errors.ts';
import { App, Screen } from './App.tsx';
import { retryAll, spawnSweep } from './actions.ts';
import { collectSnapshot } from './data.ts';
import type { TopSnapshot } from './types.ts';

export interface TopDeps {
  config: Config & { source: string | null };
  /** null: not reachable (`dbError` says why). */
  db: Database | null;
  dbError?: string | undefined;
  line(text: string): void;
}

export interface TopOptions {
  /** Print one plain snapshot and return. */
  once: boolean;
  intervalSeconds: number;
}

export async function runTop(deps: TopDeps, opts: TopOptions): Promise<void> {
  const { config, db } = deps;
  const collect = () => collectSnapshot(config, db, deps.dbError);

  if (opts.once) {
    const snap = await collect();
    deps.line(renderToString(<Screen snapshot={snap} color={false} width={80} />, { columns: 80 }));
    return;
  }

  const color = !process.env.NO_COLOR;
  // Every line truncates at the width (no wrapping, so the frame keeps its height): narrow terminals
  // show less of each line; below 40 columns the lines are cut by the terminal itself.
  const width = Math.max(40, Math.min(process.stdout.columns ?? 80, 120));
  // One row less than the terminal: a frame as tall as the terminal would scroll its first line away.
  const height = () => Math.max(1, (process.stdout.rows ?? 24) - 1);
  let snapshot: TopSnapshot | null = null;
  let message: string | undefined;
  let stopped = false;
  let timer: NodeJS.Timeout | undefined;
  const view = () => (
    <App
      snapshot={snapshot}
      color={color}
      width={width}
      height={height()}
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
    timer = setTimeout(tick, opts.intervalSeconds * 1000);
  };
  void tick();
  await instance.waitUntilExit();
}
