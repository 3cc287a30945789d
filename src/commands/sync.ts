import { Command } from 'commander';
import { syncDepsFor } from '../importers/deps.ts';
import { syncRepo } from '../importers/sync.ts';
import { type Context, withJson } from './context.ts';
import { openTaskDeps } from './task-deps.ts';

/** `pulp-lazy sync NAME`: read upstream metadata, fill the catalog, publish; no package bytes. */
export function syncCommand(ctx: Context): Command {
  return withJson(
    new Command('sync')
      .description(
        'sync a repository from its feed: metadata, catalog and published tree; content as its --policy says',
      )
      .argument('<name>'),
  ).action(async (name: string, o: { json?: boolean }) => {
    const cfg = ctx.config();
    const db = await ctx.db();
    const deps = syncDepsFor(cfg, db, ctx.logger(), () => openTaskDeps(ctx));
    ctx.onClose(() => deps.pool.close());
    const s = await syncRepo(name, deps);
    if (o.json) return ctx.out.json(s);
    const policy = [
      s.downloaded > 0 ? `, ${s.downloaded} units downloaded` : '',
      s.queued > 0 ? `, ${s.queued} units queued` : '',
    ].join('');
    ctx.out.line(
      s.changed
        ? `synced "${s.repo}": ${s.units} units (${s.units_created} new), ${s.published} published files (+${s.paths_added} -${s.paths_removed}), catalog revision ${s.catalog_revision}${policy}`
        : `synced "${s.repo}": no changes (${s.units} units, ${s.published} published files)${policy}`,
    );
  });
}
