/**
 * Sweep throughput through the local chain (task → signed URL → streamer →
 * upstream → storage), for a small and a large queue, in the same run:
 *
 *   node --import tsx bench/sweep.ts                 # 1,000 and 10,000 units
 *   node --import tsx bench/sweep.ts 500 2000        # other sizes
 *   BENCH_FETCH=local node --import tsx bench/sweep.ts   # in-process streamer
 *   BENCH_CONCURRENCY=16 ...                         # tasks.concurrency (default 8)
 *
 * Units are 16 KiB single-file units. Uses MONGODB_URL, or starts the
 * development database (FerretDB) in a temp dir. Prints units/s per size
 * and the ratio large/small (1.0 = no slowdown as the queue grows); the
 * last line is `JSON {...}` with the figures (bench/run.ts reads it).
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { catalogEntryId } from '../src/catalog/index.ts';
import { parseConfig, rootedPaths } from '../src/config.ts';
import { createStreamer } from '../src/daemons/streamer.ts';
import { connect, migrate, newDeferredEntry } from '../src/db/index.ts';
import { startDevDb } from '../src/devdb.ts';
import { silentLogger } from '../src/log.ts';
import { generateKeys } from '../src/signing/index.ts';
import { unitStoragePath } from '../src/storage/index.ts';
import { createFileSource, type FetchMode, taskDeps } from '../src/tasks/setup.ts';
import { runSweep } from '../src/tasks/sweep.ts';

const SIZE = 16 * 1024;
const sizes = process.argv.slice(2).map(Number);
const counts = sizes.length ? sizes : [1000, 10_000];
const mode = (process.env.BENCH_FETCH ?? 'proxy') as FetchMode;
const concurrency = Number(process.env.BENCH_CONCURRENCY ?? 8);

let url = process.env.MONGODB_URL;
let stopDb: (() => Promise<void>) | undefined;
const scratch = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-bench-sweep-'));
if (!url) {
  const db = await startDevDb({ dataDir: path.join(scratch, 'devdb'), stderr: 'ignore' });
  url = db.url;
  stopDb = db.stop;
  console.log(`database: development FerretDB at ${url}`);
} else console.log('database: MONGODB_URL');

/** Body of file `i`: cheap to make again, distinct per file. */
function body(i: number): Buffer {
  const b = Buffer.alloc(SIZE, i % 251);
  b.writeUInt32BE(i, 0);
  return b;
}

const upstream = http.createServer((req, res) => {
  const i = Number(/^\/f\/(\d+)$/.exec(req.url ?? '')?.[1] ?? -1);
  if (i < 0) {
    res.writeHead(404).end();
    return;
  }
  res.writeHead(200, { 'content-length': SIZE });
  res.end(body(i));
});
upstream.listen(0, '127.0.0.1');
await once(upstream, 'listening');
const upBase = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;

async function run(n: number): Promise<number> {
  const root = await mkdtemp(path.join(scratch, `n${n}-`));
  const name = `bench_sweep_${process.pid}_${n}`;
  const raw = {
    database: { name },
    paths: rootedPaths(root),
    streamer: { listen: '127.0.0.1:0' },
    tasks: { concurrency, batch_size: 100, fetch: mode },
  };
  let config = parseConfig(raw, 'bench', { MONGODB_URL: url });
  await generateKeys(config.paths.keys);
  const db = await connect(url!, name);
  await db.db.dropDatabase();
  await migrate(db);
  const streamer = createStreamer(config, { db, logger: silentLogger });
  const port = ((await streamer.listen()) as AddressInfo).port;
  config = parseConfig(
    { ...raw, redirect: { scheme: 'http', host: '127.0.0.1', port, path: '/' } },
    'bench',
    { MONGODB_URL: url },
  );
  await db.repos.insertOne({
    _id: 'bench',
    type: 'file',
    feed: `${upBase}/`,
    importer_id: 'bench',
    upstream: { tls_verify: true },
    published_path: 'bench',
    created_at: new Date(),
    last_sync: { finished_at: new Date(), revision: 1, units: n, added: n, removed: 0 },
  });
  const now = new Date();
  for (let start = 0; start < n; start += 1000) {
    const ids = Array.from({ length: Math.min(1000, n - start) }, (_, k) => start + k);
    const units = ids.map((i) => {
      const digest = createHash('sha256').update(body(i)).digest('hex');
      const id = createHash('sha256').update(`bench:${i}`).digest('hex');
      return { i, id, digest, storage: unitStoragePath(config.paths.storage, 'file', id, `f-${i}.bin`) };
    });
    await db.units.insertMany(
      units.map((u) => ({
        _id: u.id,
        unit_type_id: 'file',
        unit_key: { i: u.i },
        files: [
          {
            relative_path: `f-${u.i}.bin`,
            size: SIZE,
            checksum: u.digest,
            checksum_algorithm: 'sha256' as const,
            storage_path: u.storage,
          },
        ],
        downloaded: false,
        download_lease: null,
        created_at: now,
      })),
    );
    await db.catalog.insertMany(
      units.map((u) => ({
        _id: catalogEntryId('bench', 1, u.storage),
        path: u.storage,
        importer_id: 'bench',
        unit_id: u.id,
        unit_type_id: 'file',
        url: `${upBase}/f/${u.i}`,
        checksum: u.digest,
        checksum_algorithm: 'sha256' as const,
        size: SIZE,
        revision: 1,
      })),
    );
    await db.deferred.insertMany(
      units.map((u) => newDeferredEntry({ unit_id: u.id, unit_type_id: 'file' }, now)),
    );
  }
  const source = createFileSource(config, { db, logger: silentLogger }, mode);
  const t0 = process.hrtime.bigint();
  const s = await runSweep(taskDeps(config, { db, logger: silentLogger, source }));
  const secs = Number(process.hrtime.bigint() - t0) / 1e9;
  await source.close();
  await streamer.close({ deadlineMs: 1000 });
  const left = await db.deferred.countDocuments({});
  await db.db.dropDatabase();
  await db.close();
  await rm(root, { recursive: true, force: true });
  if (s.stored !== n || left !== 0) throw new Error(`run ${n}: stored ${s.stored}, ${left} entries left`);
  const rate = n / secs;
  console.log(
    `${n} units × 16 KiB (${mode}, concurrency ${concurrency}): ${secs.toFixed(1)} s, ${rate.toFixed(1)} units/s`,
  );
  return rate;
}

try {
  const rates: number[] = [];
  for (const n of counts) rates.push(await run(n));
  if (rates.length >= 2) {
    console.log(
      `ratio ${counts[counts.length - 1]}/${counts[0]}: ${(rates[rates.length - 1]! / rates[0]!).toFixed(2)} (1.0 = no slowdown as the queue grows)`,
    );
  }
  console.log(`JSON ${JSON.stringify({ mode, concurrency, counts, rates })}`);
} finally {
  upstream.close();
  await stopDb?.();
  await rm(scratch, { recursive: true, force: true });
}
