import { Command } from 'commander';
import { syncRepo } from '../importers/sync.ts';
import { DispatcherPool } from '../upstream/dispatcher.ts';
import { type Context, withJson } from './context.ts';

/** `pulp-lazy sync NAME`: read upstream metadata, fill the catalog, publish; no package bytes. */
export function syncCommand(ctx: Context): Command {
  return withJson(
    new Command('sync')
      .description('sync a repository from its feed (metadata only; content stays lazy)')
      .argument('<name>'),
  ).action(async (name: string, o: { json?: boolean }) => {
    const cfg = ctx.config();
    const db = await ctx.db();
    const pool = new DispatcherPool({
      connectMs: cfg.streamer.connect_timeout,
      headersMs: cfg.streamer.headers_timeout,
      bodyIdleMs: cfg.streamer.body_idle_timeout,
    });
    ctx.onClose(() => pool.close());
    const s = await syncRepo(name, {
      db,
      pool,
      storageRoot: cfg.paths.storage,
      publishedRoot: cfg.paths.published,
      workingDir: cfg.paths.working,
      logger: ctx.logger(),
      keepPreviousMs: cfg.publish.keep_previous,
    });
    if (o.json) return ctx.out.json(s);
    ctx.out.line(
      s.changed
        ? `synced "${s.repo}": ${s.units} units (${s.units_created} new), ${s.published} published files (+${s.paths_added} -${s.paths_removed}), catalog revision ${s.catalog_revision}`
        : `synced "${s.repo}": no changes (${s.units} units, ${s.published} published files)`,
    );
  });
}
