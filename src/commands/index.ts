/** Every top-level command, in the order `pulp-lazy --help` lists them. */
import type { Command } from 'commander';
import type { Context } from './context.ts';
import { dbCommand } from './db.ts';
import { devdbCommand } from './devdb.ts';
import { keysCommand } from './keys.ts';
import { repoCommand } from './repo.ts';
import { runCommand } from './run.ts';
import { syncCommand } from './sync.ts';
import { urlCommand } from './url.ts';

export function allCommands(ctx: Context): Command[] {
  return [
    repoCommand(ctx),
    syncCommand(ctx),
    keysCommand(ctx),
    urlCommand(ctx),
    runCommand(ctx),
    dbCommand(ctx),
    devdbCommand(ctx),
  ];
}
