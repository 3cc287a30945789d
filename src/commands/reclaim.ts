import { Command } from 'commander';
import { UsageError } from '../errors.ts';
import { workerId } from '../queue/index.ts';
import { formatBytes } from '../tasks/progress.ts';
import { type ReclaimReport, reclaim } from '../tasks/reclaim.ts';
import { parseDuration } from '../util/duration.ts';
import { type Context, withJson } from './context.ts';

/**
 * `pulp-lazy reclaim [REPO…] [--unused-for DURATION] [--force] [--dry-run]`:
 * deletes the stored files of units not served for that long (default:
 * never served since stored) and sets them back to not downloaded; they
 * stay published and are fetched again lazily (src/tasks/reclaim.ts).
 */
export function reclaimCommand(ctx: Context): Command {
  return withJson(
    new Command('reclaim')
      .description('delete the stored files of units not served for a while; they are fetched again lazily')
      .argument('[repos...]', 'repository names (default: every repository)')
      .option(
        '--unused-for <duration>',
        'not served for this long (90s, 30m, 12h, 7d; default: never served)',
      )
      .option('--force', 'units of repositories with the immediate policy too')
      .option('--dry-run', 'delete nothing; report what would be freed'),
  ).action(
    async (repos: string[], o: { unusedFor?: string; force?: boolean; dryRun?: boolean; json?: boolean }) => {
      const unusedForMs = o.unusedFor === undefined ? undefined : parseDuration(o.unusedFor);
      if (o.unusedFor !== undefined && unusedForMs === undefined)
        throw new UsageError(
          `--unused-for: not a duration: ${JSON.stringify(o.unusedFor)} (use 90s, 30m, 12h, 7d)`,
        );
      const cfg = ctx.config();
      const report = await reclaim(await ctx.db(), {
        repos,
        unusedForMs,
        force: o.force === true,
        dryRun: o.dryRun === true,
        storageRoot: cfg.paths.storage,
        owner: `reclaim:${workerId()}`,
        leaseMs: cfg.tasks.lease,
        logger: ctx.logger(),
      });
      if (o.json) ctx.out.json(report);
      else for (const line of describeReclaim(report)) ctx.out.line(line);
    },
  );
}

export function describeReclaim(r: ReclaimReport): string[] {
  const verb = r.dry_run ? 'to free' : 'freed';
  const lines = [
    `reclaim${r.dry_run ? ' (dry run, nothing deleted)' : ''}: ${r.units} unit(s), ${r.files} file(s), ` +
      `${formatBytes(r.bytes)} ${verb}; ${r.busy.length} busy (try again later), ` +
      `${r.immediate.length} kept (immediate policy; --force takes them)`,
  ];
  for (const p of r.repos)
    lines.push(`  ${p.repo} (${p.policy}): ${p.units} unit(s), ${formatBytes(p.bytes)} ${verb}`);
  return lines;
}
