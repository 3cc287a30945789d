import { Command } from 'commander';
import { PulpLazyError } from '../errors.ts';
import { formatBytes } from '../tasks/progress.ts';
import { recordRunOrWarn, sweepRun } from '../tasks/runs.ts';
import { runSweep, type SweepSummary } from '../tasks/sweep.ts';
import { type Context, withJson } from './context.ts';
import { intOption, openTaskDeps, withInterrupt } from './task-deps.ts';

/**
 * `pulp-lazy sweep`: one run of the deferred-downloads task. Exit 0 when
 * every claimed unit was stored, 1 when some failed (named in the summary),
 * 2 for usage or configuration errors. SIGINT/SIGTERM give the claimed
 * entries back and stop.
 */
export function sweepCommand(ctx: Context): Command {
  return withJson(
    new Command('sweep')
      .description('store the units queued in deferred_download (claims batches until none is claimable)')
      .option('--batch <n>', 'entries claimed per batch (default: tasks.batch_size)')
      .option('--concurrency <n>', 'files fetched at once (default: tasks.concurrency)'),
  ).action(async (o: { batch?: string; concurrency?: string; json?: boolean }) => {
    const batchSize = intOption('--batch', o.batch, 10_000);
    const concurrency = intOption('--concurrency', o.concurrency, 256);
    const deps = await openTaskDeps(ctx);
    const startedAt = new Date();
    const s = await withInterrupt(async (signal) => {
      const summary = await runSweep(deps, { batchSize, concurrency, signal });
      // Recorded before a failure or an interruption is raised: those runs count too.
      await recordRunOrWarn(deps.db, sweepRun(summary, startedAt, new Date()), ctx.logger());
      return summary;
    });
    if (o.json) ctx.out.json(s);
    else for (const line of describeSweep(s)) ctx.out.line(line);
    if (s.failed.length > 0) {
      const ids = s.failed.map((f) => f.unit_id);
      const list = ids.length > 5 ? `${ids.slice(0, 5).join(', ')}, ...` : ids.join(', ');
      throw new PulpLazyError('PL_SWEEP_FAILED', `${ids.length} unit(s) could not be stored: ${list}`);
    }
  });
}

export function describeSweep(s: SweepSummary): string[] {
  const lines = [
    `sweep: claimed ${s.claimed}, stored ${s.stored}, already downloaded ${s.skipped_already_downloaded}, ` +
      `busy elsewhere ${s.skipped_busy}${s.skipped_blocked ? `, blocked upstream ${s.skipped_blocked}` : ''}, failed ${s.failed.length}` +
      `${s.released ? `, given back ${s.released}` : ''}${s.paused_low_disk ? ', paused: low disk' : ''} (${s.files_fetched} files, ${formatBytes(s.bytes)} in ${s.seconds}s)`,
  ];
  for (const f of s.failed) {
    const when = f.parked ? 'parked as failed' : `next try ${f.next_attempt_at ?? '?'}`;
    lines.push(`  failed ${f.unit_id} (attempt ${f.attempts}, ${when}): ${f.error}`);
  }
  return lines;
}
