/** Every top-level command, in the order `pulp-lazy --help` lists them. */
import type { Command } from 'commander';
import { configCommand } from './config.ts';
import type { Context } from './context.ts';
import { dbCommand } from './db.ts';
import { demoCommand } from './demo.ts';
import { devdbCommand } from './devdb.ts';
import { keysCommand } from './keys.ts';
import { proxiesCommand } from './proxies.ts';
import { repoCommand } from './repo.ts';
import { runCommand } from './run.ts';
import { serveCommand } from './serve.ts';
import { syncCommand } from './sync.ts';
import { urlCommand } from './url.ts';

export function allCommands(ctx: Context): Command[] {
  return [
    demoCommand(ctx),
    repoCommand(ctx),
    syncCommand(ctx),
    keysCommand(ctx),
    urlCommand(ctx),
    serveCommand(ctx),
    runCommand(ctx),
    proxiesCommand(ctx),
    configCommand(ctx),
    dbCommand(ctx),
    devdbCommand(ctx),
  ];
}
