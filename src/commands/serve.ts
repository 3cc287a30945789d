import path from 'node:path';
import { Command } from 'commander';
import { createAllInOne } from '../daemons/serve.ts';
import { type DevDb, startDevDb } from '../devdb.ts';
import type { Context } from './context.ts';
import { runForeground } from './run.ts';

/**
 * `pulp-lazy serve`: the all-in-one server (content + signature check +
 * streamer on one port, no Apache or Squid). With --dev-db, or when neither
 * MONGODB_URL nor a config file names a database, it starts the development
 * database itself.
 */
export function serveCommand(ctx: Context): Command {
  return new Command('serve')
    .description('run the all-in-one server (content, signed URLs and streamer on one port, no Apache/Squid)')
    .option('--listen <addr>', 'address to listen on (default: config serve.listen)')
    .option('--dev-db', 'start the development database (FerretDB) under paths.cache/devdb')
    .action(async (o: { listen?: string; devDb?: boolean }) => {
      const cfg = ctx.config();
      const autoDb = o.devDb || (!process.env.MONGODB_URL && cfg.source === null);
      let devDb: DevDb | undefined;
      if (autoDb) {
        const db = await startDevDb({ dataDir: path.join(cfg.paths.cache, 'devdb'), stderr: 'ignore' });
        devDb = db;
        ctx.onClose(() => db.stop());
        ctx.overrideDatabaseUrl(db.url);
        ctx.out.err(`started the development database at ${db.url}`);
      }
      const config = o.listen ? { ...cfg, serve: { ...cfg.serve, listen: o.listen } } : cfg;
      await runForeground(
        ctx,
        {
          name: 'serve',
          description: 'all-in-one server',
          shutdownDeadlineMs: (c) => c.streamer.shutdown_timeout,
          async start(c, log) {
            const server = createAllInOne(config, { db: await c.db(), logger: log });
            await server.listen();
            ctx.out.err(`pulp-lazy serving on ${config.serve.listen}: GET /pulp/content/<repo>/<path>`);
            return server;
          },
        },
        // A crash exits at once: the development database must not outlive it.
        { beforeCrashExit: () => void devDb?.process.kill('SIGTERM') },
      );
    });
}
