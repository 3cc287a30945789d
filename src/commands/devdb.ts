import path from 'node:path';
import { Command } from 'commander';
import { startDevDb } from '../devdb.ts';
import type { Context } from './context.ts';

/** `pulp-lazy devdb`: runs the FerretDB launcher in the foreground (development only). */
export function devdbCommand(ctx: Context): Command {
  return new Command('devdb')
    .description('run the development database (embedded FerretDB, SQLite) in the foreground')
    .option('--listen <addr>', 'address to listen on', '127.0.0.1:27017')
    .option('--data <dir>', 'data directory (default: <paths.cache>/devdb)')
    .action(async (opts: { listen: string; data?: string }) => {
      const dataDir = path.resolve(opts.data ?? path.join(ctx.config().paths.cache, 'devdb'));
      const db = await startDevDb({ dataDir, listen: opts.listen });
      ctx.out.line(`dev database listening: ${db.url} (data in ${dataDir}); Ctrl-C to stop`);
      await new Promise<void>((resolve) => {
        const stop = () => void db.stop().then(resolve);
        process.once('SIGINT', stop);
        process.once('SIGTERM', stop);
        db.process.once('exit', () => resolve());
      });
    });
}
