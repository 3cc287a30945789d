import path from 'node:path';
import { Command } from 'commander';
import { createAccessRecorder } from '../storage/access.ts';
import { readAccessLog } from '../storage/access-log.ts';
import type { Context } from './context.ts';

/**
 * `pulp-lazy access-log` (hidden): Apache's piped logger for fast-path hits
 * (src/render/fastpath.ts). Reads log lines from stdin until Apache closes
 * it, records the unit files served (src/storage/access-log.ts), and writes
 * what is pending at the end of input or on SIGTERM.
 */
export function accessLogCommand(ctx: Context): Command {
  return new Command('access-log')
    .description("record fast-path hits read from stdin (Apache's piped logger)")
    .action(async () => {
      const cfg = ctx.config();
      const storageRoot = path.resolve(cfg.paths.storage);
      const log = ctx.logger().child({ module: 'access-log' });
      const recorder = createAccessRecorder(await ctx.db(), { storageRoot, logger: log });
      const stop = () => {
        void recorder.close().finally(() => process.exit(0));
      };
      process.once('SIGTERM', stop);
      process.once('SIGINT', stop);
      try {
        const counted = await readAccessLog(process.stdin, storageRoot, recorder);
        log.info({ counted }, 'access log closed');
      } finally {
        process.off('SIGTERM', stop);
        process.off('SIGINT', stop);
        await recorder.close();
      }
    });
}
