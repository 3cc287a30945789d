/** Every top-level command, in the order `pulp-lazy --help` lists them. */
import type { Command } from 'commander';
import type { Context } from './context.ts';
import { dbCommand } from './db.ts';
import { devdbCommand } from './devdb.ts';

export function allCommands(ctx: Context): Command[] {
  return [dbCommand(ctx), devdbCommand(ctx)];
}
