/**
 * Misses against a feed that accepts connections and never answers, with and
 * without the auto-block of src/upstream/health.ts, in the same run:
 *
 *   node --import tsx bench/blocked.ts
 *   BENCH_BLOCKED_TIMEOUT=5s ...     # streamer.headers_timeout (default 2s; the real default is 60s)
 *
 * Baseline: 20 concurrent misses through a streamer that never blocks
 * (remotes.block_after 1000): each waits for the headers timeout. Blocked:
 * a streamer with block_after 3 takes 3 such misses, then 20 concurrent
 * misses are answered 503 at once; upstream connections accepted during
 * them are counted (0 expected). Prints the median and max latency of both
 * and the ratio baseline ÷ blocked (median); the last line is `JSON {...}`
 * (bench/run.ts reads it). Uses MONGODB_URL, or starts the development
 * database (FerretDB) in a temp dir.
 */
import { createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { catalogEntryId } from '../src/catalog/index.ts';
import { parseConfig, rootedPaths } from '../src/config.ts';
import { createStreamer } from '../src/daemons/streamer.ts';
import { connect, migrate } from '../src/db/index.ts';
import { silentLogger } from '../src/log.ts';
import { unitStoragePath } from '../src/storage/index.ts';
import { benchDatabase } from './database.ts';

const MISSES = 20;
const timeout = process.env.BENCH_BLOCKED_TIMEOUT ?? '2s';

const scratch = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-bench-blocked-'));
const { url, stop: stopDb } = await benchDatabase(scratch, console.log);

// Accepts connections, reads the requests, never answers.
let accepted = 0;
const sockets = new Set<net.Socket>();
const silent = net.createServer((s) => {
  accepted++;
  sockets.add(s);
  s.on('close', () => sockets.delete(s));
  s.on('error', () => {});
  s.resume();
});
silent.listen(0, '127.0.0.1');
await new Promise((r) => silent.once('listening', r));
const feed = `http://127.0.0.1:${(silent.address() as net.AddressInfo).port}`;

/** One GET on a fresh connection: status and milliseconds to the end of the answer. */
function timedGet(target: string): Promise<{ status: number; ms: number }> {
  const t0 = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    http
      .get(target, { agent: false }, (res) => {
        res.resume();
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, ms: Number(process.hrtime.bigint() - t0) / 1e6 }),
        );
      })
      .on('error', reject);
  });
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

/** A streamer with remotes.block_after `blockAfter` over `n` files on the silent feed; returns their URLs. */
async function setUp(label: string, blockAfter: number, n: number) {
  const root = await mkdtemp(path.join(scratch, `${label}-`));
  const name = `bench_blocked_${process.pid}_${label}`;
  const config = parseConfig(
    {
      database: { name },
      paths: rootedPaths(root),
      streamer: { listen: '127.0.0.1:0', headers_timeout: timeout },
      // No probe while measuring.
      remotes: { block_after: blockAfter, probe_min: '5m', probe_max: '5m' },
    },
    'bench',
    { MONGODB_URL: url },
  );
  const db = await connect(url, name);
  await db.db.dropDatabase();
  await migrate(db);
  await db.repos.insertOne({
    _id: 'feed',
    type: 'file',
    feed: `${feed}/`,
    importer_id: 'feed',
    upstream: { tls_verify: true },
    published_path: 'feed',
    created_at: new Date(),
    last_sync: { finished_at: new Date(), revision: 1, units: n, added: n, removed: 0 },
  });
  const paths: string[] = [];
  for (let i = 0; i < n; i++) {
    const id = createHash('sha256').update(`${label}:${i}`).digest('hex');
    const storage = unitStoragePath(config.paths.storage, 'file', id, `f-${i}.bin`);
    paths.push(storage);
    await db.catalog.insertOne({
      _id: catalogEntryId('feed', 1, storage),
      path: storage,
      importer_id: 'feed',
      unit_id: id,
      unit_type_id: 'file',
      url: `${feed}/f/${i}`,
      checksum: '0'.repeat(64),
      checksum_algorithm: 'sha256',
      size: 1000,
      revision: 1,
    });
  }
  const streamer = createStreamer(config, { db, logger: silentLogger });
  const port = ((await streamer.listen()) as net.AddressInfo).port;
  const urls = paths.map((p) => `http://127.0.0.1:${port}${p.split('/').map(encodeURIComponent).join('/')}`);
  return {
    urls,
    db,
    async close() {
      await streamer.close({ deadlineMs: 1000 });
      await db.db.dropDatabase();
      await db.close();
      await rm(root, { recursive: true, force: true });
    },
  };
}

try {
  // Baseline: never blocked, every miss waits for the headers timeout.
  const base = await setUp('baseline', 1000, MISSES);
  const baseline = await Promise.all(base.urls.map(timedGet));
  await base.close();

  // Blocked: 3 misses block the feed, then the 20 misses.
  const blk = await setUp('blocked', 3, 3 + MISSES);
  for (const u of blk.urls.slice(0, 3)) await timedGet(u);
  for (let i = 0; i < 200 && !(await blk.db.remoteHealth.findOne({ _id: feed }))?.blocked_at; i++)
    await new Promise((r) => setTimeout(r, 10));
  const acceptedBefore = accepted;
  const blocked = await Promise.all(blk.urls.slice(3).map(timedGet));
  await new Promise((r) => setTimeout(r, 200));
  const connections = accepted - acceptedBefore;
  await blk.close();

  const b = baseline.map((r) => r.ms);
  const k = blocked.map((r) => r.ms);
  const statuses = (rs: Array<{ status: number }>) => [...new Set(rs.map((r) => r.status))].join(',');
  console.log(
    `baseline (never blocked, headers_timeout ${timeout}): ${MISSES} concurrent misses, status ${statuses(baseline)}, median ${median(b).toFixed(0)} ms, max ${Math.max(...b).toFixed(0)} ms`,
  );
  console.log(
    `blocked: ${MISSES} concurrent misses, status ${statuses(blocked)}, median ${median(k).toFixed(1)} ms, max ${Math.max(...k).toFixed(1)} ms, upstream connections during them: ${connections}`,
  );
  console.log(`ratio baseline/blocked (median): ${(median(b) / median(k)).toFixed(0)}`);
  console.log(
    `JSON ${JSON.stringify({
      misses: MISSES,
      timeout,
      baseline: { medianMs: median(b), maxMs: Math.max(...b), statuses: statuses(baseline) },
      blocked: { medianMs: median(k), maxMs: Math.max(...k), statuses: statuses(blocked), connections },
    })}`,
  );
} finally {
  for (const s of sockets) s.destroy();
  silent.close();
  await stopDb();
  await rm(scratch, { recursive: true, force: true });
}
