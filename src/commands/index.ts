/** Every top-level command, in the order `pulp-lazy --help` lists them. */
import type { Command } from 'commander';
import { configCommand } from './config.ts';
import type { Context } from './context.ts';
import { dbCommand } from './db.ts';
import { demoCommand } from './demo.ts';
import { devdbCommand } from './devdb.ts';
import { downloadRepoCommand } from './download-repo.ts';
import { initCommand } from './init.ts';
import { keysCommand } from './keys.ts';
import { lifecycleCommands } from './lifecycle.ts';
import { proxiesCommand } from './proxies.ts';
import { queueCommand } from './queue.ts';
import { repoCommand } from './repo.ts';
import { runCommand } from './run.ts';
import { scheduleCommand } from './schedule.ts';
import { serveCommand } from './serve.ts';
import { sweepCommand } from './sweep.ts';
import { syncCommand } from './sync.ts';
import { topCommand } from './top.tsx';
import { urlCommand } from './url.ts';

export function allCommands(ctx: Context): Command[] {
  return [
    demoCommand(ctx),
    initCommand(ctx),
    ...lifecycleCommands(ctx),
    topCommand(ctx),
    repoCommand(ctx),
    syncCommand(ctx),
    sweepCommand(ctx),
    downloadRepoCommand(ctx),
    queueCommand(ctx),
    scheduleCommand(ctx),
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
