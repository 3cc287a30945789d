/**
 * The content catalog at scale, each figure beside a baseline from the same run:
 *
 *   node --import tsx bench/catalog.ts                  # 1,000,000 entries, 60,000 packages
 *   node --import tsx bench/catalog.ts 100000 6000      # other sizes
 *
 * 1. Lookups as the streamer makes them (CatalogReader: one read by `_id` at
 *    the repository's current revision), p50/p99 of 2,000 random known paths
 *    one after another, and lookups/s with 16 in flight: first with 1,000
 *    entries (the baseline), then with the catalog grown to ENTRIES.
 *    Also the time of one lookup of an unknown path (the fallback query on
 *    `path`), at both sizes.
 * 2. A first sync of a generated yum repository of PACKAGES packages
 *    (repomd.xml + primary.xml.gz, served over HTTP on 127.0.0.1), then a
 *    re-sync with nothing changed; the baseline is the database write floor
 *    of that sync: inserting as many bare documents as it creates (a unit,
 *    an association and a catalog entry per package) in batches of 1,000.
 *
 * Uses MONGODB_URL, or starts the development database (FerretDB) in a temp
 * dir. The last line printed is `JSON {...}` with every figure (bench/run.ts
 * reads it).
 */
import { once } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { catalogEntryId } from '../src/catalog/index.ts';
import { CatalogReader } from '../src/catalog/reader.ts';
import { rootedPaths } from '../src/config.ts';
import { type CatalogEntryDoc, connect, migrate } from '../src/db/index.ts';
import { buildRepo, createRepo } from '../src/repos/index.ts';
import { DispatcherPool } from '../src/upstream/dispatcher.ts';
import { syncIn } from '../test/helpers/sync.ts';
import { generateYumRepo } from '../test/helpers/yum-primary.ts';
import { benchDatabase } from './database.ts';

const [entriesArg, packagesArg] = process.argv.slice(2).filter((a) => a !== '--');
const ENTRIES = Number(entriesArg ?? 1_000_000);
const PACKAGES = Number(packagesArg ?? 60_000);
const BASE_ENTRIES = 1000;
const LOOKUPS = 2000;
const PARALLEL = 16;
const IMPORTER = 'bench-catalog';
if (!Number.isInteger(ENTRIES) || ENTRIES < BASE_ENTRIES || !Number.isInteger(PACKAGES) || PACKAGES < 1) {
  console.error(`usage: bench/catalog.ts [entries >= ${BASE_ENTRIES}] [packages >= 1]`);
  process.exit(2);
}

const log = (s: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${s}`);
const scratch = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-bench-catalog-'));
const { url, stop: stopDb } = await benchDatabase(scratch, log);
const dbName = `bench-catalog-${process.pid}`;
const db = await connect(url, dbName);
await migrate(db);

const quantile = (sorted: number[], q: number) =>
  sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
const fmt = (n: number, d = 0) =>
  n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });
const storagePath = (i: number) =>
  `/var/lib/pulp/content/units/rpm/${(i % 256).toString(16).padStart(2, '0')}/${i}/pkg-${i}.rpm`;
function entry(i: number): CatalogEntryDoc {
  const p = storagePath(i);
  return {
    _id: catalogEntryId(IMPORTER, 1, p),
    path: p,
    importer_id: IMPORTER,
    unit_id: `unit-${i}`,
    unit_type_id: 'rpm',
    url: `https://mirror.example.invalid/os/Packages/pkg-${i}.rpm`,
    checksum: i.toString(16).padStart(64, '0'),
    checksum_algorithm: 'sha256',
    size: 1000 + i,
    revision: 1,
  };
}
async function fill(from: number, to: number): Promise<number> {
  const t0 = performance.now();
  for (let i = from; i < to; i += 10_000) {
    const docs: CatalogEntryDoc[] = [];
    for (let j = i; j < Math.min(to, i + 10_000); j++) docs.push(entry(j));
    await db.catalog.insertMany(docs, { ordered: false });
  }
  return (performance.now() - t0) / 1000;
}

interface Lookups {
  entries: number;
  p50ms: number;
  p99ms: number;
  perSecond: number;
  unknownMs: number;
}
async function lookups(entries: number): Promise<Lookups> {
  const reader = new CatalogReader(db, { ttlMs: 60_000 });
  const pick = () => storagePath(Math.floor(Math.random() * entries));
  for (let i = 0; i < 50; i++) await reader.entries(pick());
  const times: number[] = [];
  for (let i = 0; i < LOOKUPS; i++) {
    const p = pick();
    const t0 = performance.now();
    const found = await reader.entries(p);
    times.push(performance.now() - t0);
    if (found.length !== 1 || found[0]!.path !== p) throw new Error(`lookup of ${p} found ${found.length}`);
  }
  times.sort((a, b) => a - b);
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: PARALLEL }, async () => {
      while (next++ < LOOKUPS) await reader.entries(pick());
    }),
  );
  const perSecond = LOOKUPS / ((performance.now() - t0) / 1000);
  const u0 = performance.now();
  const unknown = await reader.entries('/var/lib/pulp/content/units/rpm/none/unknown.rpm');
  const unknownMs = performance.now() - u0;
  if (unknown.length !== 0) throw new Error('an unknown path was found');
  const r = { entries, p50ms: quantile(times, 0.5), p99ms: quantile(times, 0.99), perSecond, unknownMs };
  log(
    `lookups at ${fmt(entries)} entries: p50 ${fmt(r.p50ms, 2)} ms, p99 ${fmt(r.p99ms, 2)} ms, ${fmt(r.perSecond)}/s with ${PARALLEL} in flight; unknown path ${fmt(r.unknownMs)} ms`,
  );
  return r;
}

let code = 0;
const upstream = http.createServer();
try {
  // --- 1. lookups -------------------------------------------------------------------------------
  await db.repos.insertOne({
    ...(await buildRepo({ name: IMPORTER, type: 'file', feed: 'https://mirror.example.invalid/os/' })),
    importer_id: IMPORTER,
    last_sync: { finished_at: new Date(), revision: 1, units: ENTRIES, added: ENTRIES, removed: 0 },
  });
  await fill(0, BASE_ENTRIES);
  const base = await lookups(BASE_ENTRIES);
  log(`inserting ${fmt(ENTRIES - BASE_ENTRIES)} more entries`);
  const fillSeconds = await fill(BASE_ENTRIES, ENTRIES);
  log(`inserted in ${fmt(fillSeconds, 1)} s (${fmt((ENTRIES - BASE_ENTRIES) / fillSeconds)} entries/s)`);
  const big = await lookups(ENTRIES);
  log(
    `lookup cost at ${fmt(ENTRIES)} ÷ at ${fmt(BASE_ENTRIES)}: p50 ${fmt(big.p50ms / base.p50ms, 2)}, p99 ${fmt(big.p99ms / base.p99ms, 2)}, lookups/s ${fmt(big.perSecond / base.perSecond, 2)}`,
  );

  // --- 2. sync of a generated yum repository ----------------------------------------------------
  const repo = await generateYumRepo(PACKAGES, scratch);
  upstream.on('request', (req, res) => {
    const body = repo.files.get(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname.slice(1)));
    if (body === undefined) res.writeHead(404).end();
    else res.writeHead(200, { 'content-length': Buffer.byteLength(body) }).end(body);
  });
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  const feed = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/`;
  await createRepo(db, await buildRepo({ name: 'big', type: 'yum', feed }));
  const paths = rootedPaths(path.join(scratch, 'root'));
  const pool = new DispatcherPool({ connectMs: 5000, headersMs: 30_000, bodyIdleMs: 30_000 });
  const sync = async () => {
    const t0 = performance.now();
    const summary = await syncIn(db, paths, 'big', { pool });
    return { seconds: (performance.now() - t0) / 1000, units: summary.units };
  };
  const first = await sync();
  log(
    `first sync of ${fmt(PACKAGES)} packages: ${fmt(first.seconds, 1)} s (${fmt(PACKAGES / first.seconds)} packages/s, ${fmt(first.units)} units)`,
  );
  const again = await sync();
  log(`re-sync, nothing changed: ${fmt(again.seconds, 1)} s`);
  await pool.close();

  const floorDocs = 3 * PACKAGES;
  const f0 = performance.now();
  const scratchColl = db.db.collection<{ _id: string; i: number }>('bench_write_floor');
  for (let i = 0; i < floorDocs; i += 1000) {
    const docs = [];
    for (let j = i; j < Math.min(floorDocs, i + 1000); j++) docs.push({ _id: `doc-${j}`, i: j });
    await scratchColl.insertMany(docs, { ordered: false });
  }
  const floorSeconds = (performance.now() - f0) / 1000;
  log(
    `write floor: ${fmt(floorDocs)} bare documents in ${fmt(floorSeconds, 1)} s; first sync ÷ floor ${fmt(first.seconds / floorSeconds, 2)}`,
  );
  console.log(
    `JSON ${JSON.stringify({ baseEntries: BASE_ENTRIES, entries: ENTRIES, lookups: LOOKUPS, parallel: PARALLEL, base, big, fillSeconds, packages: PACKAGES, primaryMiB: repo.openSize / 2 ** 20, firstSyncSeconds: first.seconds, resyncSeconds: again.seconds, floorDocs, floorSeconds })}`,
  );
} catch (err) {
  console.error(`bench catalog failed: ${(err as Error).stack ?? err}`);
  code = 1;
} finally {
  upstream.close();
  await db.db.dropDatabase().catch(() => {});
  await db.close();
  await stopDb();
  await rm(scratch, { recursive: true, force: true });
}
process.exit(code);
