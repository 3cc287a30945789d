import { Command } from 'commander';
import { migrate } from '../db/index.ts';
import { type Context, withJson } from './context.ts';

/** `pulp-lazy db migrate`: creates the indexes (idempotent). */
export function dbCommand(ctx: Context): Command {
  const db = new Command('db').description('database maintenance');
  withJson(
    db
      .command('migrate')
      .description('create the collections and indexes (idempotent)')
      .action(async (opts: { json?: boolean }) => {
        const d = await ctx.db();
        const indexes = await migrate(d);
        if (opts.json) ctx.out.json({ database: ctx.config().database.name, indexes });
        else ctx.out.line(`database ${ctx.config().database.name}: ${indexes.length} indexes in place`);
      }),
  );
  return db;
}
