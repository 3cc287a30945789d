/**
 * Load: 1,000 concurrent clients against the all-in-one server
 * (`pulp-lazy serve`, a real process on the real database) for 10 s in CI,
 * 60 s with PULP_LAZY_LONG=1 (`npm run test:long`). The mix: hits (files
 * already in storage, as a sweep leaves them), misses (never-requested
 * files, fetched upstream, streamed and saved; 40 of the clients walk the
 * cold files, two clients per file so one joins the other's fetch) and
 * unknown paths (404). Every 200 body is checked against its SHA-256; a
 * request that should have succeeded and did not fails the test. Afterwards
 * every stored file verifies and every missed unit is stored or queued.
 *
 * Leaks: the server's open fds and its retained memory are read after a
 * warm-up of the same 1,000 clients (all their connections closed), then
 * after the load (same), and compared: fds may not grow by more than 32,
 * the memory still referenced after a full GC (V8 heap + Buffers, read
 * through the server's inspector) by more than max(32 MiB, a quarter of the
 * warm figure). RSS is printed, not compared: a Node process keeps the pages
 * a burst of 1,000 connections made it take, leak or not (CI saw 154 -> 368
 * MiB with a flat heap). Generous bounds on a before/after comparison; no
 * timing is measured.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, test } from 'node:test';
import { Agent, request } from 'undici';
import { freePorts } from '../helpers/proxies.ts';
import {
  filesBelow,
  heapAfterGc,
  LONG,
  type RepoFile,
  rng,
  settledFdCount,
  spawnPulp,
  startFaultyUpstream,
  syncFileRepo,
  verifyQueue,
  verifyStorage,
  waitHealthy,
} from '../helpers/reliability.ts';
import { bytes, taskEnv } from '../helpers/tasks.ts';

const CLIENTS = 1000;
const DURATION_MS = LONG ? 60_000 : 10_000;
const HOT = 200;
const COLD = LONG ? 1_000 : 400;
const MISS_CLIENTS = 40;
const MiB = 1024 * 1024;
const mib = (n: number) => (n / MiB).toFixed(0);

interface Tally {
  ok: number;
  hits: number;
  misses: number;
  notFound: number;
  failures: string[];
}

test(`${CLIENTS} concurrent clients for ${DURATION_MS / 1000} s: every request answered right, no fd or memory growth`, async () => {
  const [port] = await freePorts(1);
  const te = await taskEnv('rel-load', { serve: { listen: `127.0.0.1:${port}` }, log: { level: 'error' } });
  const up = await startFaultyUpstream();
  // Sizes 1–48 KiB: hits, and misses that are real streams, without the disk being the limit.
  const r = rng(0x10ad);
  const files = new Map<string, Buffer>();
  for (let i = 0; i < HOT + COLD; i++)
    files.set(`d${i % 50}/f${i}.bin`, bytes(1024 + r.int(47 * 1024), `load${i}`));
  const started = Date.now();
  const phases: string[] = [];
  const phase = (name: string) => phases.push(`${name} ${((Date.now() - started) / 1000).toFixed(1)}s`);
  const repo = await syncFileRepo(te.db, te.config.paths, up, 'load', files);
  phase('synced');
  const all = [...repo.values()];
  const hot = all.slice(0, HOT);
  const cold = all.slice(HOT);

  // The inspector (loopback, a free port) lets the test force a GC and read the heap.
  const nodeOptions = `${te.env.NODE_OPTIONS ?? ''} --inspect=127.0.0.1:0`.trim();
  const server = spawnPulp(['serve'], { ...te.env, NODE_OPTIONS: nodeOptions });
  const base = `http://127.0.0.1:${port}`;
  await waitHealthy(`${base}/healthz`, server);
  after(() => server.stop());

  const urlOf = (f: RepoFile) => `${base}/pulp/content/load/${f.rel}`;
  const check = async (dispatcher: Agent, f: RepoFile | undefined, url: string, t: Tally) => {
    try {
      const res = await request(url, { dispatcher });
      const body = Buffer.from(await res.body.arrayBuffer());
      if (!f) {
        if (res.statusCode === 404) t.notFound++;
        else t.failures.push(`${url}: ${res.statusCode} for an unknown path (expected 404)`);
        return;
      }
      if (res.statusCode !== 200) {
        t.failures.push(`${url}: HTTP ${res.statusCode} ${body.subarray(0, 200).toString()}`);
        return;
      }
      if (createHash('sha256').update(body).digest('hex') !== f.sha256) {
        t.failures.push(`${url}: wrong body (${body.length} bytes, expected ${f.body.length})`);
        return;
      }
      t.ok++;
    } catch (err) {
      t.failures.push(`${url}: ${(err as Error).message} (${(err as { code?: string }).code ?? ''})`);
    }
  };

  /** `CLIENTS` loops, each issuing requests one after another until `ms` is over; `pick(i)` chooses for client i. */
  const run = async (
    ms: number,
    pick: (client: number, t: Tally) => { f: RepoFile | undefined; url: string } | undefined,
  ) => {
    const dispatcher = new Agent({ connections: CLIENTS, keepAliveTimeout: 30_000 });
    const t: Tally = { ok: 0, hits: 0, misses: 0, notFound: 0, failures: [] };
    const end = Date.now() + ms;
    await Promise.all(
      Array.from({ length: CLIENTS }, async (_, i) => {
        while (Date.now() < end) {
          const next = pick(i, t);
          if (!next) break;
          await check(dispatcher, next.f, next.url, t);
        }
      }),
    );
    await dispatcher.close();
    return t;
  };

  // The hot files are in storage already (a sweep stored them): hits from the start.
  for (const f of hot) {
    await mkdir(path.dirname(f.storagePath), { recursive: true });
    await writeFile(f.storagePath, f.body);
  }
  await te.db.units.updateMany({ _id: { $in: hot.map((f) => f.unitId) } }, { $set: { downloaded: true } });
  phase('hot files stored');
  // The mix. Clients 0–MISS_CLIENTS-1 take the cold files in order, two clients per file
  // (the second joins the first one's fetch); the others ask for hits (95 %) and unknown paths (5 %).
  // Misses cost database work (a catalog lookup that scans the collection on the dev database),
  // so their concurrency is what a real mirror sees, not 1,000.
  let coldAsked = 0;
  const missed = new Set<string>();
  const mix = (client: number, t: Tally) => {
    if (client < MISS_CLIENTS) {
      const f = cold[coldAsked++ >> 1];
      if (!f) return undefined;
      t.misses++;
      missed.add(f.unitId);
      return { f, url: urlOf(f) };
    }
    if (r.next() < 0.05) return { f: undefined, url: `${base}/pulp/content/load/d1/nope-${r.int(1e9)}.bin` };
    t.hits++;
    const f = r.pick(hot);
    return { f, url: urlOf(f) };
  };

  // Warm-up with the same mix (pools and caches reach their working size), then the baseline.
  const warm = await run(LONG ? 5000 : 2000, mix);
  assert.deepEqual(warm.failures.slice(0, 10), [], 'warm-up requests failed');
  phase('warm-up done');
  const fdsBefore = await settledFdCount(server.pid);
  phase('baseline');
  const memBefore = await heapAfterGc(server);

  const load = await run(DURATION_MS, mix);
  phase('load done');
  const fdsAfter = await settledFdCount(server.pid);
  phase('settled');
  const memAfter = await heapAfterGc(server);
  const total = load.ok + load.notFound + load.failures.length;
  console.log(
    `# load: ${total} requests in ${DURATION_MS / 1000} s (${load.hits} hits, ${load.misses} misses, ` +
      `${load.notFound} 404s; ${missed.size} of ${cold.length} cold files asked for since the warm-up began), ${load.failures.length} failed; ` +
      `fds ${fdsBefore} → ${fdsAfter}, after GC heap ${mib(memBefore.heapUsed)} → ${mib(memAfter.heapUsed)} MiB, ` +
      `external ${mib(memBefore.external)} → ${mib(memAfter.external)} MiB, RSS ${mib(memBefore.rss)} → ${mib(memAfter.rss)} MiB`,
  );
  assert.deepEqual(load.failures.slice(0, 10), [], `${load.failures.length} requests failed`);
  assert.ok(load.misses > 0 && load.hits > 0 && load.notFound > 0, 'the mix had hits, misses and 404s');
  assert.ok(fdsAfter <= fdsBefore + 32, `fds grew from ${fdsBefore} to ${fdsAfter}`);
  const retainedBefore = memBefore.heapUsed + memBefore.external;
  const retainedAfter = memAfter.heapUsed + memAfter.external;
  assert.ok(
    retainedAfter <= retainedBefore + Math.max(32 * MiB, retainedBefore / 4),
    `memory retained after GC grew from ${mib(retainedBefore)} to ${mib(retainedAfter)} MiB`,
  );
  assert.ok(server.alive(), 'the server is still running');

  // Everything saved is intact, and every missed file is stored or queued.
  const report = await verifyStorage(te.db, te.config.paths.storage);
  assert.ok(report.files >= HOT, `at least the ${HOT} hot files are stored (${report.files})`);
  await verifyQueue(te.db, missed);
  phase('verified');
  console.log(`# load phases: ${phases.join(', ')}`);
  // Temp files of finished fetches are gone.
  assert.deepEqual(await filesBelow(path.join(te.config.paths.working, 'tmp')), []);
});
