/** Shared by the task commands (sweep, download-repo, schedule): deps and option parsing. */
import { PulpLazyError, UsageError } from '../errors.ts';
import { createFileSource, type TaskDeps, taskDeps } from '../tasks/setup.ts';
import type { Context } from './context.ts';

/** Opens the database and the file source (closed with the command). */
export async function openTaskDeps(ctx: Context): Promise<TaskDeps> {
  const cfg = ctx.config();
  const db = await ctx.db();
  const logger = ctx.logger();
  const source = createFileSource(cfg, { db, logger });
  ctx.onClose(() => source.close());
  return taskDeps(cfg, { db, logger, source });
}

/** Parses `--name N` as an integer in [1, max]. */
export function intOption(name: string, value: string | undefined, max: number): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n < 1 || n > max) {
    throw new UsageError(`${name} must be a whole number from 1 to ${max}, got "${value}"`);
  }
  return n;
}

/**
 * Runs `fn` with a signal aborted by SIGINT/SIGTERM (the task then gives its
 * leases back); an interrupted run ends with exit code 130. A second signal
 * exits at once.
 */
export async function withInterrupt<T>(fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const ac = new AbortController();
  const onSignal = (sig: NodeJS.Signals) => {
    if (ac.signal.aborted) process.exit(130);
    ac.abort(new PulpLazyError('PL_INTERRUPTED', `interrupted by ${sig}; claimed work was given back`));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  try {
    const result = await fn(ac.signal);
    if (ac.signal.aborted) throw ac.signal.reason;
    return result;
  } finally {
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}
