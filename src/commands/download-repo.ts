import { Command } from 'commander';
import { PulpLazyError } from '../errors.ts';
import { getRepo } from '../repos/index.ts';
import { type DownloadRepoSummary, downloadRepo } from '../tasks/download-repo.ts';
import { createProgressReporter, formatBytes } from '../tasks/progress.ts';
import { downloadRepoRun, recordRunOrWarn } from '../tasks/runs.ts';
import { type Context, withJson } from './context.ts';
import { intOption, openTaskDeps, withInterrupt } from './task-deps.ts';

/**
 * `pulp-lazy download-repo NAME [--verify-all]`: stores every unit of the
 * repository that is not downloaded yet (with --verify-all: re-hashes every
 * stored file, re-fetches missing or corrupt ones, fixes the flags).
 * Progress goes to stderr; exit 1 when some unit could not be stored.
 */
export function downloadRepoCommand(ctx: Context): Command {
  return withJson(
    new Command('download-repo')
      .description('download every not-yet-downloaded unit of a repository')
      .argument('<name>', 'repository name')
      .option('--verify-all', 're-hash every stored file, re-fetch missing or corrupt ones, fix the flags')
      .option('--concurrency <n>', 'files fetched at once (default: tasks.concurrency)'),
  ).action(async (name: string, o: { verifyAll?: boolean; concurrency?: string; json?: boolean }) => {
    const concurrency = intOption('--concurrency', o.concurrency, 256);
    await getRepo(await ctx.db(), name);
    const deps = await openTaskDeps(ctx);
    const progress = createProgressReporter({ stream: process.stderr, tty: process.stderr.isTTY === true });
    const startedAt = new Date();
    const s = await withInterrupt(async (signal) => {
      const summary = await downloadRepo(deps, name, {
        verifyAll: o.verifyAll ?? false,
        concurrency,
        signal,
        onProgress: (p) => progress.update(p),
      }).finally(() => progress.done());
      // Recorded before a failure or an interruption is raised: those runs count too.
      await recordRunOrWarn(deps.db, downloadRepoRun(summary, startedAt, new Date()), ctx.logger());
      return summary;
    });
    if (o.json) ctx.out.json(s);
    else for (const line of describeDownloadRepo(s)) ctx.out.line(line);
    if (s.failed.length > 0) {
      throw new PulpLazyError(
        'PL_DOWNLOAD_REPO_FAILED',
        `${s.failed.length} unit(s) of "${s.repo}" could not be stored (queued for the sweep)` +
          (s.blocked ? `, ${s.blocked} of them because their upstream is blocked` : ''),
      );
    }
    if (s.low_disk > 0) {
      throw new PulpLazyError(
        'PL_LOW_DISK',
        `${s.low_disk} unit(s) of "${s.repo}" not fetched: free space is below storage.min_free; run again once space is freed`,
      );
    }
  });
}

export function describeDownloadRepo(s: DownloadRepoSummary): string[] {
  const lines = [
    `download-repo "${s.repo}"${s.verify_all ? ' (verify all)' : ''}: ${s.units} units, ${s.stored} stored, ` +
      `${s.failed.length} failed${s.blocked ? ` (${s.blocked} blocked upstream)` : ''}; files: ${s.files_fetched} fetched, ${s.files_verified} verified in place, ` +
      `${s.files_repaired} repaired; flags: ${s.flags_set} set, ${s.flags_cleared} cleared; ` +
      `${formatBytes(s.bytes)} in ${s.seconds}s`,
  ];
  for (const f of s.failed) lines.push(`  failed ${f.unit_id}: ${f.error}`);
  if (s.low_disk > 0) lines.push(`  ${s.low_disk} unit(s) not fetched: free space below storage.min_free`);
  return lines;
}
