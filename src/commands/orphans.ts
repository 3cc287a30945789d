import { Command } from 'commander';
import { tempDirOf } from '../storage/temp-files.ts';
import { type OrphanReport, removeOrphans } from '../tasks/orphans.ts';
import { formatBytes } from '../tasks/progress.ts';
import { tasksWorkingDir } from '../tasks/setup.ts';
import { type Context, withJson } from './context.ts';

/**
 * `pulp-lazy orphans [--dry-run]`: removes units no repository references
 * (past storage.orphan_protection), their catalog and queue entries and
 * files, files in storage no unit names, and stale temp files.
 */
export function orphansCommand(ctx: Context): Command {
  return withJson(
    new Command('orphans')
      .description(
        'remove units no repository references, their files, stray files in storage and stale temp files',
      )
      .option('--dry-run', 'remove nothing; report what would go'),
  ).action(async (o: { dryRun?: boolean; json?: boolean }) => {
    const cfg = ctx.config();
    const report = await removeOrphans(await ctx.db(), {
      storageRoot: cfg.paths.storage,
      workingDir: cfg.paths.working,
      tempDirs: [tempDirOf(cfg.paths.working), tempDirOf(tasksWorkingDir(cfg.paths.working))],
      protectionMs: cfg.storage.orphan_protection,
      keepPreviousMs: cfg.publish.keep_previous,
      leaseMs: cfg.tasks.lease,
      dryRun: o.dryRun === true,
      logger: ctx.logger(),
    });
    if (o.json) ctx.out.json(report);
    else ctx.out.line(describeOrphans(report));
  });
}

export function describeOrphans(r: OrphanReport): string {
  return (
    `orphans${r.dry_run ? ' (dry run, nothing removed)' : ''}: ${r.units} unit(s), ` +
    `${r.files} file(s), ${formatBytes(r.bytes)} ${r.dry_run ? 'to free' : 'freed'}, ${r.temp_files} temp file(s), ` +
    `${r.sync_plans} plan folder(s) of deleted repositories`
  );
}
