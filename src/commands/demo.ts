/**
 * `pulp-lazy demo`: the main job with defaults, for a newcomer. In one
 * process: starts the development database (unless MONGODB_URL is set),
 * generates a sample upstream file repository and serves it on loopback,
 * creates and syncs the repository `sample` (metadata only), starts the
 * all-in-one server, then fetches one file twice to show a miss (streamed
 * from upstream and saved) followed by a local hit. Keeps serving until
 * Ctrl-C, or exits at once with --once.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Command } from 'commander';
import { request } from 'undici';
import { parseConfig, rootedPaths } from '../config.ts';
import { createAllInOne } from '../daemons/serve.ts';
import { connect, migrate } from '../db/index.ts';
import { startDevDb } from '../devdb.ts';
import { UsageError } from '../errors.ts';
import { syncRepo } from '../importers/sync.ts';
import { createLogger } from '../log.ts';
import { buildRepo, createRepo, deleteRepo } from '../repos/index.ts';
import { generateKeys } from '../signing/index.ts';
import { DispatcherPool } from '../upstream/dispatcher.ts';
import type { Context } from './context.ts';

const REPO = 'sample';

/** Deterministic sample files: name → bytes. */
function sampleFiles(count: number): Map<string, Buffer> {
  const files = new Map<string, Buffer>();
  for (let i = 0; i < count; i++) {
    const size = 1024 << (i % 12); // 1 KiB … 2 MiB
    const seed = createHash('sha256').update(`sample-${i}`).digest();
    const b = Buffer.alloc(size);
    for (let o = 0; o < size; o += seed.length) seed.copy(b, o);
    files.set(`packages/${String.fromCharCode(97 + (i % 26))}/sample-${i}.bin`, b);
  }
  return files;
}

export function demoCommand(ctx: Context): Command {
  return new Command('demo')
    .description('run a self-contained demo: sample upstream, sync, all-in-one server, a miss then a hit')
    .option('--root <dir>', 'where the demo keeps its files', path.join(tmpdir(), 'pulp-lazy-demo'))
    .option('--port <n>', 'port of the all-in-one server', '8080')
    .option('--files <n>', 'number of sample files', '24')
    .option('--once', 'exit after the miss/hit demonstration instead of serving until Ctrl-C')
    .action(async (o: { root: string; port: string; files: string; once?: boolean }) => {
      const port = Number(o.port);
      const count = Number(o.files);
      if (!Number.isInteger(port) || port < 1 || port > 65535) throw new UsageError(`bad --port "${o.port}"`);
      if (!Number.isInteger(count) || count < 1 || count > 10_000)
        throw new UsageError(`bad --files "${o.files}"`);
      const root = path.resolve(o.root);
      const say = (s: string) => ctx.out.line(s);

      // Database: MONGODB_URL when given, else the development database.
      let config = parseConfig(
        {
          database: { name: 'pulp_lazy_demo' },
          paths: rootedPaths(root),
          serve: { listen: `127.0.0.1:${port}` },
          log: { level: 'warn' },
        },
        'demo',
      );
      if (!process.env.MONGODB_URL) {
        const devdb = await startDevDb({ dataDir: path.join(root, 'devdb'), stderr: 'ignore' });
        ctx.onClose(() => devdb.stop());
        // The parsed config with the dev database's URL (parsing it again would read its
        // milliseconds as seconds and its parsed sizes as input).
        config = { ...config, database: { ...config.database, url: devdb.url } };
        say(`database: development FerretDB at ${devdb.url} (data in ${path.join(root, 'devdb')})`);
      } else {
        say('database: MONGODB_URL');
      }
      const logger = createLogger({ level: config.log.level, name: 'pulp-lazy-demo' });
      const db = await connect(config.database.url, config.database.name);
      ctx.onClose(() => db.close());
      await migrate(db);
      await generateKeys(config.paths.keys);

      // A sample upstream repository on loopback.
      const files = sampleFiles(count);
      const manifest = [...files]
        .map(([rel, b]) => `${rel},${createHash('sha256').update(b).digest('hex')},${b.length}`)
        .join('\n');
      let upstreamGets = 0;
      const upstream = http.createServer((req, res) => {
        const rel = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname.slice(1));
        const b = rel === 'PULP_MANIFEST' ? Buffer.from(`${manifest}\n`) : files.get(rel);
        if (rel !== 'PULP_MANIFEST') upstreamGets++;
        if (!b) return void res.writeHead(404).end();
        res.writeHead(200, { 'content-length': b.length }).end(b);
      });
      upstream.listen(0, '127.0.0.1');
      await once(upstream, 'listening');
      ctx.onClose(() => {
        upstream.closeAllConnections();
        upstream.close();
      });
      const feed = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/`;
      say(`upstream: ${count} sample files at ${feed}`);

      // (Re)create and sync the repository: metadata only.
      if (await db.repos.findOne({ _id: REPO })) await deleteRepo(db, REPO, config.paths.published);
      await createRepo(db, await buildRepo({ name: REPO, type: 'file', feed }));
      const pool = new DispatcherPool({ connectMs: 5000, headersMs: 10_000, bodyIdleMs: 10_000 });
      const summary = await syncRepo(REPO, {
        db,
        pool,
        storageRoot: config.paths.storage,
        publishedRoot: config.paths.published,
        workingDir: config.paths.working,
        logger,
      });
      await pool.close();
      const downloaded = await db.units.countDocuments({ downloaded: true });
      say(
        `sync: ${summary.units} units, ${summary.published} published links, ${downloaded} downloaded, ${upstreamGets} package bytes fetched`,
      );

      const server = createAllInOne(config, { db, logger });
      await server.listen();
      ctx.onClose(() => server.close({ deadlineMs: 5000 }));
      const base = `http://127.0.0.1:${port}/pulp/content/${REPO}/`;
      say(`serving: ${base}`);

      // Pick a file not downloaded yet, fetch it twice.
      const unit = await db.units.findOne({ downloaded: false });
      const assoc = unit ? await db.repoContentUnits.findOne({ repo_id: REPO, unit_id: unit._id }) : null;
      if (assoc) {
        const url = base + assoc.relative_path.split('/').map(encodeURIComponent).join('/');
        for (const label of ['miss', 'hit ']) {
          const before = upstreamGets;
          const t0 = performance.now();
          const res = await request(url);
          const body = Buffer.from(await res.body.arrayBuffer());
          const ms = (performance.now() - t0).toFixed(1);
          const ok = body.equals(files.get(assoc.relative_path)!) ? 'bytes match upstream' : 'BYTES DIFFER';
          say(
            `${label}: GET ${assoc.relative_path} → ${res.statusCode}, ${body.length} bytes in ${ms} ms, ${ok}, upstream GETs: ${upstreamGets - before}`,
          );
        }
        const now = await db.units.findOne({ _id: unit!._id });
        say(`unit ${unit!._id.slice(0, 12)}…: downloaded=${now?.downloaded}`);
        say(`try it: curl -o /dev/null -w '%{http_code} %{size_download}\\n' ${url}`);
      }
      if (o.once) return;
      say('press Ctrl-C to stop');
      await new Promise<void>((resolve) => {
        process.once('SIGINT', () => resolve());
        process.once('SIGTERM', () => resolve());
      });
    });
}
