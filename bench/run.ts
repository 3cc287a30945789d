/**
 * `npm run bench`: the hit and miss paths against their limits, each figure
 * a ratio to a baseline measured in the same run, interleaved, median of
 * BENCH_ROUNDS rounds (default 3). Writes bench/RESULTS.md.
 *
 *   hits, 1 KiB × 1000 files, wrk c=1/16/64: Apache static (baseline), Apache → a
 *     minimal X-Sendfile backend (bench/sendfile-backend.mjs, the topology's ceiling),
 *     Apache → content daemon X-Sendfile, Apache fast path, `serve` direct
 *   hit, 1 GiB page-cached, curl: the same paths
 *   miss, 1 GiB cold, curl: upstream direct (baseline), a minimal undici pass-through
 *     (bench/passthrough.mjs, the Node ceiling), Apache → authorizer → streamer
 *     (proxy.cache none), Apache → Squid → streamer, serve
 *   coalescing: 50 curl clients, one cold 100 MiB object, origin at 50 MB/s, through serve
 *     and through Apache → authorizer → streamer (no Squid), vs one client alone
 *   streamer memory: VmHWM of a fresh streamer, BENCH_MEM_CLIENTS (100) × 100 MiB, curl --limit-rate 2M,
 *     then of a fresh minimal pass-through with the same clients (the baseline)
 *   sweep: bench/sweep.ts 1000 10000 (units/s at each size; the 1,000 run is the baseline)
 *   catalog: bench/catalog.ts (lookup p50/p99 at 1,000,000 entries vs 1,000; a 60,000-package
 *     yum sync vs the database write floor of that sync)
 *   blocked: bench/blocked.ts (20 concurrent misses against a feed that accepts connections and
 *     never answers: blocked by remotes.block_after, vs never blocked, each waiting for the headers
 *     timeout: the baseline)
 *   syncmem: bench/syncmem.ts (peak RSS of `pulp-lazy sync`, a separate process, for generated yum
 *     and deb repositories of 60,000 packages vs 10,000, first sync and unchanged re-sync)
 *
 * Everything runs from a temp dir on 127.0.0.1; every process it starts is
 * stopped at the end (also on SIGINT/SIGTERM). Needs root (Apache's User,
 * chown for the fast path), apache2, mod_xsendfile, squid, wrk, curl, and
 * `npm run build` (daemons run as `bin/pulp-lazy run ...` child processes).
 * Sections: `npm run bench -- miss coalesce memory` runs only those (and sets
 * up only what they need); a partial run prints its tables and writes
 * RESULTS.md only when BENCH_OUT names a file. Without arguments every
 * section runs (minus BENCH_SKIP) and bench/RESULTS.md is written.
 * Env: BENCH_ROUNDS, BENCH_WRK_SECONDS (4), BENCH_MEM_CLIENTS (100), BENCH_SKIP (comma list of
 * hits,big,miss,coalesce,memory,sweep,catalog,blocked,syncmem), BENCH_OUT (output file), BENCH_BIN (the pulp-lazy
 * executable whose daemons are measured, default bin/pulp-lazy: point it at another
 * build's bin/ to compare before/after in the same conditions), BENCH_HOLD (a file: once everything
 * is up, the bench writes its ports there and waits until it is removed, for a lab), BENCH_KEEP (keep the scratch dir:
 * daemon logs, configs).
 */
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { createWriteStream, existsSync } from 'node:fs';
import {
  chmod,
  lchown,
  link,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  readlink,
  rm,
  writeFile,
} from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { promisify } from 'node:util';
import { type Config, parseConfig, rootedPaths } from '../src/config.ts';
import { connect, migrate } from '../src/db/index.ts';
import { startDevDb } from '../src/devdb.ts';
import { oneLine } from '../src/errors.ts';
import { type DaemonName, daemonNodeArgs } from '../src/lifecycle/components.ts';
import { silentLogger } from '../src/log.ts';
import { userIds } from '../src/proxies/configs.ts';
import { startProxies, startSquid, stopProxies, stopSquid, writeProxyConfigs } from '../src/proxies/index.ts';
import { buildRepo, createRepo } from '../src/repos/index.ts';
import { generateKeys } from '../src/signing/index.ts';
import { DispatcherPool } from '../src/upstream/dispatcher.ts';
import { portOpen, waitFor } from '../src/util/process.ts';
import { toToml } from '../test/helpers/env.ts';
import { freePorts } from '../test/helpers/proxies.ts';
import { syncIn } from '../test/helpers/sync.ts';
import { blocks, body, sha256Of } from './lib/body.ts';
import {
  Children,
  type CurlResult,
  curl,
  curlTimed,
  curlTogether,
  median,
  memoryOf,
  settle,
  type WrkResult,
  wrk,
  wrkScript,
} from './lib/measure.ts';
import type { SyncMemCase } from './syncmem.ts';

const execp = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '..');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
/**
 * Rounds of the 1 GiB hit: a multiple of the path count, so that each path
 * comes first, second, ... equally often (with 3 rounds of 5 paths, two paths
 * never ran first, right after the page-cache warm-up); a round takes seconds.
 */
const BIG_ROUNDS = (paths: number) => paths * Math.ceil(ROUNDS / paths);
/**
 * Time to first byte of a cold miss on its own: each round, TTFB_SAMPLES cold
 * 1 MiB objects per path, one request at a time, each beside the same object
 * fetched straight from the upstream (the 1 GiB rows' TTFB is the first byte
 * of a transfer that follows other 1 GiB transfers and their disk flushes).
 */
const TTFB_SAMPLES = 5;
const TTFB_KINDS = ['apache', 'serve'] as const;
const ttfbObject = (k: string, r: number, i: number) => `t-${k}-${r}-${i}.bin`;
const WRK_SECONDS = Number(process.env.BENCH_WRK_SECONDS ?? 4);
const MEM_CLIENTS = Number(process.env.BENCH_MEM_CLIENTS ?? 100);
interface MemRun {
  rss0: number;
  hwm: number;
  ok: number;
  seconds: number;
}

const SECTIONS = [
  'hits',
  'big',
  'miss',
  'coalesce',
  'memory',
  'sweep',
  'catalog',
  'blocked',
  'syncmem',
] as const;
type Section = (typeof SECTIONS)[number];
const ASKED = process.argv.slice(2).filter((a) => a !== '--');
for (const a of ASKED) {
  if (!(SECTIONS as readonly string[]).includes(a)) {
    console.error(`unknown bench section ${JSON.stringify(a)} (sections: ${SECTIONS.join(', ')})`);
    process.exit(2);
  }
}
const PARTIAL = ASKED.length > 0;
const SKIP = new Set((process.env.BENCH_SKIP ?? '').split(',').filter(Boolean));
const RUN = new Set<Section>(SECTIONS.filter((s) => (PARTIAL ? ASKED.includes(s) : !SKIP.has(s))));
const runs = (...any: Section[]) => any.some((s) => RUN.has(s));
/** The pulp-lazy executable whose daemons are measured (another build, to compare before/after). */
const BIN = process.env.BENCH_BIN ?? path.join(import.meta.dirname, '..', 'bin/pulp-lazy');
const OUT = process.env.BENCH_OUT ?? (PARTIAL ? undefined : path.join(import.meta.dirname, 'RESULTS.md'));
const SMALL_FILES = 1000;
const KIB = 1024;
const MIB = 1 << 20;
const GIB = 1 << 30;
const COAL_CLIENTS = 50;
const COAL_SIZE = 100 * MIB;
const COAL_RATE = 50e6;
const MEM_SIZE = 100 * MIB;
const SERVICE_USER = 'nobody';

const log = (s: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${s}`);
const children = new Children();
const cleanups: Array<() => Promise<unknown>> = [];
async function cleanup(): Promise<void> {
  await children.stopAll().catch(() => {});
  for (const f of cleanups.splice(0).reverse()) await f().catch((e) => log(`cleanup: ${e}`));
}
for (const sig of ['SIGINT', 'SIGTERM'] as const) {
  process.once(sig, () => {
    log(`${sig}: cleaning up`);
    void cleanup().finally(() => process.exit(130));
  });
}

type Sections = Record<string, Record<string, unknown>>;
function merge(base: Sections, extra: Sections): Sections {
  const out: Sections = JSON.parse(JSON.stringify(base));
  for (const [k, v] of Object.entries(extra)) out[k] = { ...(out[k] ?? {}), ...v };
  return out;
}

async function lchownTree(dir: string, uid: number, gid: number): Promise<void> {
  await lchown(dir, uid, gid);
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) await lchownTree(p, uid, gid);
    else await lchown(p, uid, gid);
  }
}

async function writeObject(file: string, seed: number, size: number): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const out = createWriteStream(file);
  for (const b of blocks(seed, size)) if (!out.write(b)) await once(out, 'drain');
  out.end();
  await once(out, 'finish');
}

/** The stored path a published link points at. */
async function storageOf(published: string, repo: string, rel: string): Promise<string> {
  const l = path.join(published, repo, rel);
  return path.resolve(path.dirname(l), await readlink(l));
}

interface CatalogLookups {
  entries: number;
  p50ms: number;
  p99ms: number;
  perSecond: number;
  unknownMs: number;
}
/** What bench/catalog.ts prints on its JSON line. */
interface CatalogFigures {
  baseEntries: number;
  entries: number;
  lookups: number;
  parallel: number;
  base: CatalogLookups;
  big: CatalogLookups;
  fillSeconds: number;
  packages: number;
  primaryMiB: number;
  firstSyncSeconds: number;
  resyncSeconds: number;
  floorDocs: number;
  floorSeconds: number;
}

/** What bench/blocked.ts prints on its JSON line. */
interface BlockedFigures {
  misses: number;
  timeout: string;
  baseline: { medianMs: number; maxMs: number; statuses: string };
  blocked: { medianMs: number; maxMs: number; statuses: string; connections: number };
}

/** What bench/syncmem.ts prints on its JSON line. */
interface SyncMemFigures {
  sizes: [number, number];
  cases: SyncMemCase[];
}
/** Peak RSS target of a sync, MiB, at the larger size. */
const SYNC_RSS_TARGET = 160;
/** "Flat": peak RSS at the larger size ÷ at the smaller one. */
const SYNC_FLAT = 1.1;

function push<T>(m: Record<string, T[]>, k: string, v: T): void {
  const list = m[k] ?? [];
  list.push(v);
  m[k] = list;
}

const fmt = (n: number, d = 0) =>
  Number.isFinite(n)
    ? n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d })
    : 'n/a';
const verdict = (ok: boolean) => (ok ? 'met' : '**not met**');

async function main(): Promise<string> {
  if (process.getuid?.() !== 0)
    throw new Error('run the bench as root (Apache User, chown for the fast path)');
  if (!existsSync(path.join(ROOT, 'dist/cli.js'))) throw new Error('run "npm run build:ts" first');
  const scratch = await mkdtemp(path.join(os.tmpdir(), 'pulp-lazy-bench-'));
  await chmod(scratch, 0o755);
  if (!process.env.BENCH_KEEP) cleanups.push(() => rm(scratch, { recursive: true, force: true }));
  const paths = rootedPaths(scratch);
  const started = new Date();
  const loadAtStart = os.loadavg()[0]!;
  log(`scratch ${scratch}`);

  // --- objects and their digests ---------------------------------------------
  const routes: Record<string, { seed: number; size: number; rate?: number } | { text: string }> = {};
  const manifests: Record<string, string[]> = { hits: [], miss: [], coal: [], mem: [] };
  const add = (repo: string, rel: string, seed: number, size: number, rate?: number, inManifest = true) => {
    routes[`/${repo}/${rel}`] = rate ? { seed, size, rate } : { seed, size };
    if (inManifest) manifests[repo]!.push(`${rel},${sha256Of(seed, size)},${size}`);
  };
  const hitsSetup = runs('hits', 'big');
  const small = Array.from({ length: SMALL_FILES }, (_, i) => `f${String(i).padStart(4, '0')}.bin`);
  if (hitsSetup) {
    for (const [i, rel] of small.entries()) add('hits', rel, 1 + i, KIB);
    add('hits', 'big.bin', 9000, GIB);
  }
  const missKinds = ['apache', 'squid', 'serve'] as const;
  if (RUN.has('miss')) {
    for (let r = 0; r < ROUNDS; r++) {
      for (const [j, k] of missKinds.entries()) add('miss', `m-${k}-${r}.bin`, 10_000 + r * 10 + j, GIB);
    }
    add('miss', 'direct.bin', 10_999, GIB, undefined, false);
    // One small cold miss per path before the rounds: the daemons are measured warm (undici's
    // parser compiled, connections to the origin and the database open), as in service.
    for (const [j, k] of missKinds.entries()) add('miss', `warm-${k}.bin`, 10_900 + j, MIB);
    add('miss', 'warm-direct.bin', 10_990, MIB, undefined, false);
    for (let r = 0; r < ROUNDS; r++) add('miss', `alone-${r}.bin`, 10_500 + r, GIB, undefined, false);
    for (let r = 0; r < ROUNDS; r++)
      for (const [j, k] of TTFB_KINDS.entries())
        for (let i = 0; i < TTFB_SAMPLES; i++)
          add('miss', ttfbObject(k, r, i), 12_000 + r * 100 + j * 10 + i, MIB);
  }
  const coalKinds = ['serve', 'apache'] as const;
  if (RUN.has('coalesce')) {
    for (let r = 0; r < ROUNDS; r++) {
      for (const [j, k] of coalKinds.entries()) {
        add('coal', `single-${k}-${r}.bin`, 20_000 + r * 4 + j * 2, COAL_SIZE, COAL_RATE);
        add('coal', `many-${k}-${r}.bin`, 20_001 + r * 4 + j * 2, COAL_SIZE, COAL_RATE);
      }
    }
  }
  const memFiles = Array.from({ length: MEM_CLIENTS }, (_, i) => `s${i}.bin`);
  if (RUN.has('memory')) for (const [i, rel] of memFiles.entries()) add('mem', rel, 30_000 + i, MEM_SIZE);
  for (const [repo, lines] of Object.entries(manifests))
    routes[`/${repo}/PULP_MANIFEST`] = { text: `${lines.join('\n')}\n` };
  log(`sections: ${[...RUN].join(', ')}; digests computed for ${Object.keys(routes).length} objects`);

  const specFile = path.join(scratch, 'origin.json');
  await writeFile(specFile, JSON.stringify({ routes }));
  /** Runs one of the bench's helper processes; resolves once it printed `{"port":N}` (listening). */
  const startHelper = async (args: string[]) => {
    const child = children.spawn(process.execPath, args, process.env);
    const [line] = (await once(createInterface({ input: child.stdout! }), 'line')) as [string];
    return { child, base: `http://127.0.0.1:${(JSON.parse(line) as { port: number }).port}` };
  };
  const { base: originBase } = await startHelper([
    '--import',
    'tsx',
    path.join(ROOT, 'bench/origin.ts'),
    specFile,
  ]);
  /** A fresh minimal pass-through to the origin (bench/passthrough.mjs), in its own process. */
  const startPassthrough = () => startHelper([path.join(ROOT, 'bench/passthrough.mjs'), originBase]);
  const stats = async () => (await (await fetch(`${originBase}/_stats`)).json()) as Record<string, number>;

  // --- database, configs, repositories ----------------------------------------
  const devdb = await startDevDb({ dataDir: path.join(scratch, 'devdb'), stderr: 'ignore' });
  cleanups.push(() => devdb.stop());
  const [
    xc,
    xs,
    sc,
    ss,
    fc,
    fs,
    squidPort,
    contentX,
    contentS,
    streamerPort,
    streamerM,
    auth,
    servePort,
    staticPort,
    squidAlonePort,
    nc,
    ns,
    minimalBackend,
  ] = await freePorts(18);
  const base: Sections = {
    database: { url: devdb.url, name: 'bench' },
    paths: { ...paths },
    log: { level: process.env.BENCH_LOG_LEVEL ?? 'warn' },
    content: { listen: `127.0.0.1:${contentX}` },
    streamer: { listen: `127.0.0.1:${streamerPort}` },
    serve: { listen: `127.0.0.1:${servePort}` },
    apache: {
      listen_host: '127.0.0.1',
      content_port: xc!,
      streamer_port: xs!,
      authorizer_listen: `127.0.0.1:${auth}`,
    },
    proxy: { cache: 'none' },
    squid: { port: squidPort!, shutdown_lifetime: '0s', cache_size_mb: 16_000 },
  };
  const instance = (name: string) => ({
    paths: {
      ...paths,
      run: path.join(scratch, name, 'run'),
      logs: path.join(scratch, name, 'logs'),
      cache: path.join(scratch, name, 'cache'),
    },
  });
  const sections = {
    x: base,
    s: merge(base, {
      ...instance('squid-chain'),
      apache: { content_port: sc!, streamer_port: ss! },
      content: { listen: `127.0.0.1:${contentS}` },
      proxy: { cache: 'squid' },
    }),
    f: merge(base, {
      ...instance('fastpath'),
      apache: { content_port: fc!, streamer_port: fs!, fast_path: true },
    }),
    m: merge(base, { streamer: { listen: `127.0.0.1:${streamerM}` } }),
    // The rendered content vhost in front of bench/sendfile-backend.mjs instead of the content
    // daemon: the ceiling of the X-Sendfile topology.
    n: merge(base, {
      ...instance('sendfile-minimal'),
      apache: { content_port: nc!, streamer_port: ns! },
      content: { listen: `127.0.0.1:${minimalBackend}` },
    }),
    // Squid alone in front of the origin (its peer is the origin, not a streamer): the baseline
    // of a miss through Squid.
    q: merge(base, {
      ...instance('squid-alone'),
      streamer: { listen: originBase.replace('http://', '') },
      proxy: { cache: 'squid' },
      squid: { port: squidAlonePort! },
    }),
  };
  const configs = {} as Record<keyof typeof sections, Config>;
  const files = {} as Record<keyof typeof sections, string>;
  for (const [k, v] of Object.entries(sections) as Array<[keyof typeof sections, Sections]>) {
    files[k] = path.join(scratch, `config-${k}.toml`);
    await writeFile(files[k], toToml(v));
    configs[k] = parseConfig(JSON.parse(JSON.stringify(v)), files[k], {});
  }
  await generateKeys(paths.keys);
  const db = await connect(devdb.url, 'bench');
  cleanups.push(() => db.close());
  await migrate(db);
  const pool = new DispatcherPool({ connectMs: 5000, headersMs: 30_000, bodyIdleMs: 30_000 });
  for (const repo of Object.keys(manifests)) {
    if (manifests[repo]!.length === 0) continue;
    await createRepo(db, await buildRepo({ name: repo, type: 'file', feed: `${originBase}/${repo}/` }));
    await syncIn(db, paths, repo, { pool });
  }
  await pool.close();
  log('repositories synced');

  // Present files: the 1 KiB set and the 1 GiB file, written straight into storage;
  // the static baseline serves the same inodes (hard links) from a plain docroot.
  const docroot = path.join(scratch, 'static', 'docroot');
  let bigStored = '';
  if (hitsSetup) {
    await mkdir(docroot, { recursive: true });
    for (const [i, rel] of small.entries()) {
      const stored = await storageOf(paths.published, 'hits', rel);
      await mkdir(path.dirname(stored), { recursive: true });
      await writeFile(stored, body(1 + i, KIB));
      await link(stored, path.join(docroot, rel));
    }
    bigStored = await storageOf(paths.published, 'hits', 'big.bin');
    if (RUN.has('big')) {
      await writeObject(bigStored, 9000, GIB);
      await link(bigStored, path.join(docroot, 'big.bin'));
    }
    // The fast path needs the tree owned by a non-root service user (docs/proxies.md).
    const { uid, gid } = await userIds(SERVICE_USER);
    await lchownTree(paths.storage, uid, gid);
    await lchownTree(paths.published, uid, gid);
    log('present files written');
  }

  // --- daemons (child processes) and proxies ------------------------------------
  // Daemons start as `pulp-lazy start` and the systemd units start them (their node options too).
  const cli = (what: string[], config: string) =>
    children.spawn(
      process.execPath,
      [...(what[0] === 'run' ? daemonNodeArgs(what[1] as DaemonName) : []), BIN, ...what],
      {
        ...process.env,
        PULP_LAZY_CONFIG: config,
        MONGODB_URL: devdb.url,
      },
      path.join(scratch, `${what.join('-')}-${path.basename(config)}.log`),
    );
  const waitPort = async (port: number, what: string) => {
    if (!(await waitFor(() => portOpen('127.0.0.1', port), 20_000, 100))) {
      throw new Error(`${what} did not listen on ${port}`);
    }
  };
  // Which daemons and proxy instances the chosen sections need.
  const chainX = runs('hits', 'big', 'miss', 'coalesce');
  const chainS = runs('miss');
  const chainF = hitsSetup;
  const daemons: Array<[string[], string, number, string, boolean]> = [
    [['run', 'content'], files.x, contentX!, 'content X', chainX],
    [['run', 'content'], files.s, contentS!, 'content S', chainS],
    [['run', 'streamer'], files.x, streamerPort!, 'streamer', runs('miss', 'coalesce')],
    [['run', 'authorizer'], files.x, auth!, 'authorizer', runs('miss', 'coalesce')],
    [['serve'], files.x, servePort!, 'serve', runs('hits', 'big', 'miss', 'coalesce')],
  ];
  for (const [what, file, , , on] of daemons) if (on) cli(what, file);
  for (const [, , p, w, on] of daemons) if (on) await waitPort(p, w);
  for (const [k, on] of [
    ['x', chainX],
    ['s', chainS],
    ['f', chainF],
    ['n', hitsSetup],
  ] as const) {
    if (!on) continue;
    cleanups.push(() => stopProxies(configs[k], { logger: silentLogger }));
    await startProxies(configs[k], { logger: silentLogger });
  }
  if (chainS) {
    cleanups.push(() => stopSquid(configs.q, { logger: silentLogger }));
    await writeProxyConfigs(configs.q);
    await startSquid(configs.q, { logger: silentLogger });
  }
  const staticDir = path.join(scratch, 'static');
  const staticConf = path.join(staticDir, 'httpd.conf');
  if (hitsSetup) {
    await startStaticApache();
    await startSendfileBackend();
  }
  log('daemons and proxies up');
  if (process.env.BENCH_HOLD) {
    // A lab: everything stays up until the named file is removed (then the sections run).
    await writeFile(
      process.env.BENCH_HOLD,
      `${JSON.stringify({ scratch, originBase, apache: xc, serve: servePort, streamer: streamerPort, squid: sc })}\n`,
    );
    log(`holding until ${process.env.BENCH_HOLD} is removed`);
    while (
      await readFile(process.env.BENCH_HOLD).then(
        () => true,
        () => false,
      )
    )
      await new Promise((r) => setTimeout(r, 500));
  }

  /** bench/sendfile-backend.mjs on the port config n's Apache proxies to, knowing every present file. */
  async function startSendfileBackend(): Promise<void> {
    const map: Record<string, string> = {};
    for (const rel of [...small, ...(RUN.has('big') ? ['big.bin'] : [])]) {
      map[`/pulp/content/hits/${rel}`] = await storageOf(paths.published, 'hits', rel);
    }
    const mapFile = path.join(scratch, 'sendfile-map.json');
    await writeFile(mapFile, JSON.stringify(map));
    await startHelper([path.join(ROOT, 'bench/sendfile-backend.mjs'), mapFile, String(minimalBackend)]);
  }

  async function startStaticApache(): Promise<void> {
    await writeFile(
      staticConf,
      [
        'ServerRoot "/usr/lib/apache2"',
        'ServerName localhost',
        `PidFile "${staticDir}/httpd.pid"`,
        `DefaultRuntimeDir "${staticDir}"`,
        `ErrorLog "${staticDir}/error.log"`,
        'LogLevel warn',
        'User www-data',
        'Group www-data',
        'LoadModule mpm_event_module /usr/lib/apache2/modules/mod_mpm_event.so',
        'LoadModule authz_core_module /usr/lib/apache2/modules/mod_authz_core.so',
        'LoadModule mime_module /usr/lib/apache2/modules/mod_mime.so',
        'TypesConfig /dev/null',
        'KeepAlive On',
        'MaxKeepAliveRequests 0',
        'KeepAliveTimeout 5',
        'EnableSendfile On',
        'LogFormat "%h %l %u %t \\"%m %U %H\\" %>s %B %D \\"%{User-Agent}i\\"" pulp_lazy',
        `CustomLog "${staticDir}/access.log" pulp_lazy`,
        `Listen 127.0.0.1:${staticPort}`,
        `DocumentRoot "${docroot}"`,
        '<Directory />',
        '    AllowOverride None',
        '    Require all denied',
        '</Directory>',
        `<Directory "${docroot}">`,
        '    Options FollowSymLinks',
        '    Require all granted',
        '    ForceType application/octet-stream',
        '</Directory>',
        '',
      ].join('\n'),
    );
    cleanups.push(async () => {
      await execp('apache2', ['-f', staticConf, '-k', 'stop']).catch(() => {});
      await waitFor(async () => !(await portOpen('127.0.0.1', staticPort!)), 20_000, 100).catch(() => {});
    });
    await execp('apache2', ['-f', staticConf, '-k', 'start']);
    await waitPort(staticPort!, 'static Apache');
  }

  const hitBase = {
    static: `http://127.0.0.1:${staticPort}`,
    minimal: `http://127.0.0.1:${nc}`,
    xsendfile: `http://127.0.0.1:${xc}`,
    fastpath: `http://127.0.0.1:${fc}`,
    serve: `http://127.0.0.1:${servePort}`,
  };
  type HitPath = keyof typeof hitBase;
  const hitPaths = Object.keys(hitBase) as HitPath[];
  const hitUrl = (p: HitPath, rel: string) =>
    `${hitBase[p]}${p === 'static' ? '/' : '/pulp/content/hits/'}${rel}`;
  // Probe: every path answers; the fast path is Apache's (mtime-size ETag), X-Sendfile the daemon's.
  for (const p of hitsSetup ? hitPaths : []) {
    let last = '';
    const ok = await waitFor(
      async () => {
        const r = await fetch(hitUrl(p, small[0]!)).catch((e: Error) => e);
        if (r instanceof Error) {
          last = r.message;
          return false;
        }
        const b = Buffer.from(await r.arrayBuffer());
        last = `${r.status} ${b.length} bytes, ETag ${r.headers.get('etag')}`;
        return r.status === 200 && b.equals(body(1, KIB));
      },
      30_000,
      500,
    );
    if (!ok) {
      const logs = (await readdir(scratch)).filter((f) => f.endsWith('.log'));
      for (const f of logs) log(`${f}: ${(await readFile(path.join(scratch, f), 'utf8')).slice(-800)}`);
      throw new Error(`probe ${p}: ${last}`);
    }
    log(`probe ${p}: ${last}`);
  }

  const out: string[] = [];
  const md = (s = '') => out.push(s);

  // --- 1. small-file hits -------------------------------------------------------
  const hitResults: Record<string, WrkResult[]> = {};
  const hitRatios: Record<string, number[]> = {};
  if (RUN.has('hits')) {
    const staticScript = await wrkScript(
      path.join(scratch, 'static.lua'),
      small.map((r) => `/${r}`),
    );
    const contentScript = await wrkScript(
      path.join(scratch, 'content.lua'),
      small.map((r) => `/pulp/content/hits/${r}`),
    );
    for (let r = 0; r < ROUNDS; r++) {
      for (const c of [1, 16, 64]) {
        const order = hitPaths.map((_, i) => hitPaths[(i + r) % hitPaths.length]!);
        const round: Partial<Record<HitPath, WrkResult>> = {};
        for (const p of order) {
          const res = await wrk(
            `${hitBase[p]}/`,
            c,
            WRK_SECONDS,
            p === 'static' ? staticScript : contentScript,
          );
          if (res.non2xx > 0) log(`warning: ${p} c=${c}: ${res.non2xx} non-2xx responses`);
          round[p] = res;
          push(hitResults, `${p}/${c}`, res);
        }
        for (const p of hitPaths) push(hitRatios, `${p}/${c}`, round[p]!.rps / round.static!.rps);
        push(hitRatios, `xsendfile-of-minimal/${c}`, round.xsendfile!.rps / round.minimal!.rps);
        log(`hits round ${r + 1} c=${c}: ${hitPaths.map((p) => `${p} ${fmt(round[p]!.rps)}`).join(', ')}`);
      }
    }
  }

  // --- 2. 1 GiB hit ----------------------------------------------------------------
  const bigResults: Record<string, CurlResult[]> = {};
  const bigRatios: Record<string, number[]> = {};
  if (RUN.has('big')) {
    await readFile(bigStored).catch(() => undefined); // page cache (1 GiB buffer, then dropped)
    for (const p of hitPaths) await curl(hitUrl(p, 'big.bin')); // warm-up
    for (let r = 0; r < BIG_ROUNDS(hitPaths.length); r++) {
      const round: Partial<Record<HitPath, CurlResult>> = {};
      for (const p of hitPaths.map((_, i) => hitPaths[(i + r) % hitPaths.length]!)) {
        const res = await curl(hitUrl(p, 'big.bin'));
        if (res.code !== 200 || res.bytes !== GIB) throw new Error(`big ${p}: ${res.code} ${res.bytes}`);
        round[p] = res;
        push(bigResults, p, res);
      }
      for (const p of hitPaths) push(bigRatios, p, round[p]!.mbps / round.static!.mbps);
      log(`1 GiB hit round ${r + 1}: ${hitPaths.map((p) => `${p} ${fmt(round[p]!.mbps)} MB/s`).join(', ')}`);
    }
  }

  // --- 3. miss ------------------------------------------------------------------------
  const missPaths = ['direct', 'passthrough', 'squidalone', ...missKinds] as const;
  const missResults: Record<string, CurlResult[]> = {};
  const missRatios: Record<string, number[]> = {};
  const diskMbps: number[] = [];
  /** Cold 1 MiB miss TTFBs, ms, by `${path}/${round}` and `direct-${path}/${round}`. */
  const ttfbCold: Record<string, number[]> = {};
  /** Median over rounds of (path TTFB median - direct TTFB median), ms. */
  const coldOver = (k: string) =>
    median(
      Array.from(
        { length: ROUNDS },
        (_, r) => median(ttfbCold[`${k}/${r}`] ?? []) - median(ttfbCold[`direct-${k}/${r}`] ?? []),
      ),
    );
  if (RUN.has('miss')) {
    const { base: ptBase } = await startPassthrough();
    const missUrl = (p: (typeof missPaths)[number], r: number) =>
      p === 'direct'
        ? `${originBase}/miss/direct.bin`
        : p === 'passthrough'
          ? `${ptBase}/miss/direct.bin`
          : p === 'squidalone'
            ? `http://127.0.0.1:${squidAlonePort}/miss/alone-${r}.bin`
            : `http://127.0.0.1:${p === 'apache' ? xc : p === 'squid' ? sc : servePort}/pulp/content/miss/m-${p}-${r}.bin`;
    for (const p of missPaths) {
      const url =
        p === 'direct' || p === 'passthrough'
          ? missUrl(p, 0).replace('/direct.bin', '/warm-direct.bin')
          : p === 'squidalone'
            ? missUrl(p, 0).replace('/alone-0.bin', '/warm-direct.bin')
            : missUrl(p, 0).replace(`/m-${p}-0.bin`, `/warm-${p}.bin`);
      const warm = await curl(url);
      if (warm.code !== 200 || warm.bytes !== MIB)
        throw new Error(`miss warm-up ${p}: ${warm.code} ${warm.bytes}`);
    }
    for (let r = 0; r < ROUNDS; r++) {
      // The floor of a saved miss: the client's last byte waits until the file is durable, so
      // a 1 GiB miss cannot beat a durable 1 GiB write to the disk holding the working dir,
      // written as the streamer writes large files (O_DIRECT, 1 MiB at a time).
      const ddFile = path.join(paths.working, 'bench-dd.bin');
      const d0 = performance.now();
      await execp('dd', [
        'if=/dev/zero',
        `of=${ddFile}`,
        'bs=1M',
        'count=1024',
        'oflag=direct',
        'conv=fdatasync',
      ]);
      diskMbps.push(GIB / 1e6 / ((performance.now() - d0) / 1000));
      await rm(ddFile, { force: true });
      const round: Partial<Record<string, CurlResult>> = {};
      for (const p of missPaths.map((_, i) => missPaths[(i + r) % missPaths.length]!)) {
        await settle();
        const res = await curl(missUrl(p, r));
        if (res.code !== 200 || res.bytes !== GIB) throw new Error(`miss ${p}: ${res.code} ${res.bytes}`);
        round[p] = res;
        push(missResults, p, res);
      }
      for (const p of missPaths) push(missRatios, p, round[p]!.mbps / round.direct!.mbps);
      for (const p of missKinds)
        push(missRatios, `${p}/floor`, round[p]!.mbps / Math.min(round.direct!.mbps, diskMbps[r]!));
      log(
        `miss round ${r + 1}: ${missPaths.map((p) => `${p} ${fmt(round[p]!.mbps)} MB/s`).join(', ')}, durable disk write ${fmt(diskMbps[r]!)} MB/s`,
      );
      for (let i = 0; i < TTFB_SAMPLES; i++) {
        for (const k of TTFB_KINDS) {
          const rel = ttfbObject(k, r, i);
          const direct = await curl(`${originBase}/miss/${rel}`);
          const cold = await curl(
            `http://127.0.0.1:${k === 'apache' ? xc : servePort}/pulp/content/miss/${rel}`,
          );
          if (direct.code !== 200 || cold.code !== 200 || cold.bytes !== MIB)
            throw new Error(`miss TTFB ${k}: ${direct.code} / ${cold.code} ${cold.bytes}`);
          push(ttfbCold, `${k}/${r}`, cold.ttfbMs);
          push(ttfbCold, `direct-${k}/${r}`, direct.ttfbMs);
        }
      }
      // The streamer saved the objects: drop them (disk), the next round uses new ones.
      for (const k of missKinds)
        await rm(await storageOf(paths.published, 'miss', `m-${k}-${r}.bin`), { force: true });
    }
  }

  // --- 4. coalescing through serve and through Apache (no Squid) ---------------------------
  interface Coal {
    via: (typeof coalKinds)[number];
    single: number;
    all: number;
    gets: number;
    within1s: number;
    ttfbMedian: number;
    ttfbMax: number;
    complete: number;
    /** The same 50 clients fetching the object again, now stored (a hit): this path's delivery ceiling. */
    hit: number;
  }
  const coal: Coal[] = [];
  if (RUN.has('coalesce')) {
    const url = (via: (typeof coalKinds)[number], rel: string) =>
      `http://127.0.0.1:${via === 'serve' ? servePort : xc}/pulp/content/coal/${rel}`;
    for (let r = 0; r < ROUNDS; r++) {
      for (const via of coalKinds.map((_, i) => coalKinds[(i + r) % coalKinds.length]!)) {
        const t1 = performance.now();
        const one = await curlTimed(url(via, `single-${via}-${r}.bin`), t1);
        const many = await curlTogether(url(via, `many-${via}-${r}.bin`), COAL_CLIENTS);
        const gets = (await stats())[`/coal/many-${via}-${r}.bin`] ?? 0;
        const hits = await curlTogether(url(via, `many-${via}-${r}.bin`), COAL_CLIENTS);
        if (hits.some((m) => !(m.status === 200 && m.bytes === COAL_SIZE)))
          throw new Error(`coalescing ${via}: the stored object was not served whole to every client`);
        const firsts = many.map((m) => m.firstByteMs);
        const c: Coal = {
          via,
          single: one.doneMs,
          all: Math.max(...many.map((m) => m.doneMs)),
          gets,
          within1s: firsts.filter((f) => f <= 1000).length,
          ttfbMedian: median(firsts),
          ttfbMax: Math.max(...firsts),
          complete: many.filter((m) => m.status === 200 && m.bytes === COAL_SIZE).length,
          hit: Math.max(...hits.map((m) => m.doneMs)),
        };
        coal.push(c);
        const bad = many.filter((m) => !(m.status === 200 && m.bytes === COAL_SIZE));
        if (bad.length > 0)
          log(
            `coalescing ${via}: incomplete replies: ${bad.map((m) => `${m.status}/${m.bytes}`).join(', ')}`,
          );
        log(
          `coalescing ${via} round ${r + 1}: ${gets} upstream GET(s), ${c.within1s}/${COAL_CLIENTS} with bytes within 1 s, TTFB median ${fmt(c.ttfbMedian)} ms, all ${fmt(c.all)} ms vs single ${fmt(c.single)} ms, ${c.complete} complete; as a hit all ${fmt(c.hit)} ms`,
        );
      }
    }
  }

  // --- 5. streamer memory ----------------------------------------------------------------------
  // The same clients against a fresh streamer, then against a fresh minimal pass-through (the
  // baseline: what a Node proxy that saves nothing holds for them on this machine, in this run).
  let mem: { streamer: MemRun; passthrough: MemRun } | undefined;
  if (RUN.has('memory')) {
    const memRun = async (pid: number, urls: string[]): Promise<MemRun> => {
      await new Promise((r) => setTimeout(r, 500));
      const rss0 = (await memoryOf(pid)).rss;
      const t0 = performance.now();
      const results = await Promise.all(
        urls.map((url) =>
          execp('curl', [
            '-s',
            '-o',
            '/dev/null',
            '--limit-rate',
            '2M',
            '--max-time',
            '240',
            '-w',
            '%{http_code} %{size_download}',
            url,
          ]).then(
            (r) => r.stdout.trim(),
            (e: { stdout?: string }) => e.stdout ?? 'error',
          ),
        ),
      );
      const seconds = (performance.now() - t0) / 1000;
      const { hwm } = await memoryOf(pid);
      return { rss0, hwm, ok: results.filter((r) => r === `200 ${MEM_SIZE}`).length, seconds };
    };
    const streamer = cli(['run', 'streamer'], files.m);
    await waitPort(streamerM!, 'streamer M');
    const storagePaths = await Promise.all(memFiles.map((rel) => storageOf(paths.published, 'mem', rel)));
    const ofStreamer = await memRun(
      streamer.pid!,
      storagePaths.map((sp) => `http://127.0.0.1:${streamerM}${sp}`),
    );
    await children.stop(streamer);
    const pt = await startPassthrough();
    const ofPassthrough = await memRun(
      pt.child.pid!,
      memFiles.map((rel) => `${pt.base}/mem/${rel}`),
    );
    await children.stop(pt.child);
    mem = { streamer: ofStreamer, passthrough: ofPassthrough };
    for (const [what, m] of Object.entries(mem)) {
      log(
        `${what} memory: fresh ${fmt(m.rss0)} MiB, peak VmHWM ${fmt(m.hwm, 1)} MiB, ${m.ok}/${MEM_CLIENTS} complete in ${fmt(m.seconds)} s`,
      );
    }
    for (const sp of storagePaths) await rm(sp, { force: true });
  }

  // --- 6. sweep, 7. catalog: scripts of their own, each printing a last line `JSON {...}` ----------
  const script = async (name: string, args: string[], timeoutMs: number, env: NodeJS.ProcessEnv) => {
    log(`${name}: bench/${name}.ts ${args.join(' ')}`);
    const r = await execp(
      process.execPath,
      ['--import', 'tsx', path.join(ROOT, `bench/${name}.ts`), ...args],
      {
        env: { ...process.env, ...env },
        timeout: timeoutMs,
        cwd: ROOT,
        maxBuffer: 16 << 20,
      },
    ).catch((e: { stdout?: string; message: string }) => ({
      stdout: `${e.stdout ?? ''}\nfailed: ${oneLine(e.message)}`,
    }));
    const lines = r.stdout.trim().split('\n');
    const json = lines.find((l) => l.startsWith('JSON '));
    const text = lines.filter((l) => !l.startsWith('JSON ')).join('\n');
    log(text.split('\n').slice(-3).join(' | '));
    return { text, figures: json ? JSON.parse(json.slice(5)) : undefined };
  };
  let sweep:
    | { text: string; figures?: { counts: number[]; rates: number[]; concurrency: number } }
    | undefined;
  if (RUN.has('sweep'))
    sweep = await script('sweep', ['1000', '10000'], 1_800_000, { MONGODB_URL: devdb.url });
  let catalog: { text: string; figures?: CatalogFigures } | undefined;
  if (RUN.has('catalog')) catalog = await script('catalog', [], 3_600_000, {});
  let blocked: { text: string; figures?: BlockedFigures } | undefined;
  if (RUN.has('blocked')) blocked = await script('blocked', [], 600_000, { MONGODB_URL: devdb.url });
  let syncmem: { text: string; figures?: SyncMemFigures } | undefined;
  if (RUN.has('syncmem')) syncmem = await script('syncmem', [], 3_600_000, {});
  const syncCases = (f: SyncMemFigures, kind: string) =>
    f.sizes.map((n) => f.cases.find((c) => c.kind === kind && c.packages === n)!) as [
      SyncMemCase,
      SyncMemCase,
    ];

  // --- RESULTS.md ---------------------------------------------------------------------------
  const machine = await describeMachine();
  md('# pulp-lazy benchmarks');
  md();
  md(
    `Generated by \`npm run bench\` (bench/run.ts) on ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC.`,
  );
  md(`Machine: ${machine}.`);
  md(
    `Load average (1 min) at start / end: ${loadAtStart.toFixed(2)} / ${os.loadavg()[0]!.toFixed(2)}; sections: ${[...RUN].join(', ')}.`,
  );
  md(
    `Method: every figure is the median of ${ROUNDS} interleaved rounds (the order rotates each round); ratios are taken per round against the baseline measured in that round, then the median ratio is shown. Clients (wrk, curl) share the cores with the servers, and other work on the machine adds noise: compare ratios, not absolute numbers. MB = 10^6 bytes.`,
  );
  md();
  if (Object.keys(hitResults).length) {
    md(
      `## Small-file hits (1 KiB, ${SMALL_FILES} files cycled, wrk ${WRK_SECONDS} s): rps (p50 / p99 ms), ratio to Apache static`,
    );
    md();
    md('| path | c=1 | c=16 | c=64 |');
    md('|---|---|---|---|');
    const names: Record<HitPath, string> = {
      static: 'Apache static (baseline)',
      minimal: 'Apache → minimal X-Sendfile backend (no fs work: the topology’s ceiling)',
      xsendfile: 'Apache → content daemon, X-Sendfile',
      fastpath: 'Apache fast path (apache.fast_path)',
      serve: '`pulp-lazy serve` direct',
    };
    for (const p of hitPaths) {
      const cells = [1, 16, 64].map((c) => {
        const rs = hitResults[`${p}/${c}`]!;
        return `${fmt(median(rs.map((x) => x.rps)))} (${fmt(median(rs.map((x) => x.p50ms)), 2)} / ${fmt(median(rs.map((x) => x.p99ms)), 1)}) **${fmt(median(hitRatios[`${p}/${c}`]!), 2)}**`;
      });
      md(`| ${names[p]} | ${cells.join(' | ')} |`);
    }
    md();
  }
  if (Object.keys(bigResults).length) {
    md(
      `## 1 GiB hit (page-cached, curl, body discarded; ${bigResults.static?.length ?? 0} rounds, so every path runs in every position of the rotation): MB/s (TTFB ms), ratio to Apache static`,
    );
    md();
    md('| path | MB/s (min–max) | TTFB ms | ratio |');
    md('|---|---|---|---|');
    for (const p of hitPaths) {
      const rs = bigResults[p]!;
      md(
        `| ${p} | ${fmt(median(rs.map((x) => x.mbps)))} (${fmt(Math.min(...rs.map((x) => x.mbps)))}–${fmt(Math.max(...rs.map((x) => x.mbps)))}) | ${fmt(median(rs.map((x) => x.ttfbMs)), 2)} | **${fmt(median(bigRatios[p]!), 2)}** |`,
      );
    }
    md();
  }
  if (Object.keys(missResults).length) {
    md(
      '## Miss (1 GiB, cold for pulp-lazy and Squid, curl -L): MB/s (TTFB ms, redirect included), ratio to upstream direct',
    );
    md();
    md('| path | MB/s (min–max) | TTFB ms | ratio |');
    md('|---|---|---|---|');
    const names: Record<string, string> = {
      direct: 'curl straight from the upstream (baseline)',
      passthrough: 'minimal undici pass-through, no save (a Node proxy’s ceiling here)',
      apache: 'Apache → authorizer → streamer (proxy.cache none)',
      squidalone: 'Squid alone in front of the upstream, cold (the baseline of the Squid path)',
      squid: 'Apache → authorizer → Squid → streamer',
      serve: '`pulp-lazy serve` (all-in-one)',
    };
    for (const p of missPaths) {
      const rs = missResults[p]!;
      md(
        `| ${names[p]} | ${fmt(median(rs.map((x) => x.mbps)))} (${fmt(Math.min(...rs.map((x) => x.mbps)))}–${fmt(Math.max(...rs.map((x) => x.mbps)))}) | ${fmt(median(rs.map((x) => x.ttfbMs)), 1)} | **${fmt(median(missRatios[p]!), 2)}** |`,
      );
    }
    md();
    md(
      `The streamer saves and verifies every miss into storage while streaming (streamer.save_to_storage, the default), and holds the last byte until the file is verified and durable (fsync + rename) and the unit recorded. So a saved miss cannot beat a durable write of 1 GiB to the disk holding the working dir, written as the streamer writes files of streamer.direct_io_min_size or more (O_DIRECT, past the page cache): \`dd bs=1M count=1024 oflag=direct conv=fdatasync\` there, measured each round, gave ${fmt(median(diskMbps))} MB/s (${fmt(Math.min(...diskMbps))}–${fmt(Math.max(...diskMbps))}). Miss ÷ min(upstream direct, durable disk write), per round, median: Apache ${fmt(median(missRatios['apache/floor'] ?? []), 2)}, Squid ${fmt(median(missRatios['squid/floor'] ?? []), 2)}, serve ${fmt(median(missRatios['serve/floor'] ?? []), 2)}. Each daemon served one 1 MiB cold miss before the rounds (warm, as in service).`,
    );
    md();
    if (Object.keys(ttfbCold).length) {
      md(
        `Cold miss on its own (${TTFB_SAMPLES} cold 1 MiB objects per path and round, one request at a time, each beside the same object fetched straight from the upstream): TTFB median, ms, and median over direct of the per-round medians:`,
      );
      md();
      md('| path | TTFB ms (per round) | direct ms (per round) | over direct |');
      md('|---|---|---|---|');
      for (const k of TTFB_KINDS) {
        const per = (key: string) =>
          Array.from({ length: ROUNDS }, (_, r) => median(ttfbCold[`${key}/${r}`] ?? []));
        md(
          `| ${k} | ${per(k)
            .map((x) => fmt(x, 1))
            .join(', ')} | ${per(`direct-${k}`)
            .map((x) => fmt(x, 1))
            .join(', ')} | **+${fmt(coldOver(k), 1)}** |`,
        );
      }
      md();
    }
  }
  if (coal.length) {
    md(
      `## Coalescing (${COAL_CLIENTS} clients, one cold 100 MiB object, origin at 50 MB/s; serve, and Apache → authorizer → streamer without Squid)`,
    );
    md();
    md(
      '| path | round | upstream GETs | clients with body bytes within 1 s | TTFB median / max ms | all done ms | single client ms | all ÷ single | complete | all 50 as a hit ms | all ÷ hit |',
    );
    md('|---|---|---|---|---|---|---|---|---|---|---|');
    for (const [i, c] of coal.entries()) {
      md(
        `| ${c.via} | ${Math.floor(i / coalKinds.length) + 1} | ${c.gets} | ${c.within1s}/${COAL_CLIENTS} | ${fmt(c.ttfbMedian)} / ${fmt(c.ttfbMax)} | ${fmt(c.all)} | ${fmt(c.single)} | **${fmt(c.all / c.single, 2)}** | ${c.complete}/${COAL_CLIENTS} | ${fmt(c.hit)} | ${fmt(c.all / c.hit, 2)} |`,
      );
    }
    md();
    md(
      `"All 50 as a hit": right after, the same ${COAL_CLIENTS} clients fetch the object again, now stored, through the same path (serve: read from storage by Node; Apache: X-Sendfile, so Apache's sendfile): how fast this machine delivers ${COAL_CLIENTS} × 100 MiB on that path with no upstream at all. The last column compares the miss with that floor (a flight reads each byte once and hands the same buffer to every live client; a hit reads the file once per client).`,
    );
    md();
  }
  if (mem) {
    md(
      `## Streamer memory (${MEM_CLIENTS} concurrent 100 MiB streams, distinct objects, curl --limit-rate 2M)`,
    );
    md();
    md(`| process | fresh VmRSS MiB | **peak VmHWM MiB** | clients with every byte | s |`);
    md('|---|---|---|---|---|');
    for (const [what, m] of [
      ['`pulp-lazy run streamer` (saves every stream to storage)', mem.streamer],
      ['minimal undici pass-through, no save (baseline)', mem.passthrough],
    ] as const) {
      md(`| ${what} | ${fmt(m.rss0)} | **${fmt(m.hwm, 1)}** | ${m.ok}/${MEM_CLIENTS} | ${fmt(m.seconds)} |`);
    }
    md();
    md(
      `One run each, fresh processes, the streamer first. Peak ratio streamer ÷ pass-through: **${fmt(mem.streamer.hwm / mem.passthrough.hwm, 2)}**.`,
    );
    md();
  }
  if (sweep) {
    md('## Sweep (bench/sweep.ts 1000 10000: 16 KiB units through the signed proxy URL and the streamer)');
    md();
    const f = sweep.figures;
    if (f && f.rates.length === 2) {
      md('| queued units | units/s | ratio to the 1,000-unit run |');
      md('|---|---|---|');
      for (const [i, n] of f.counts.entries())
        md(`| ${fmt(n)} | ${fmt(f.rates[i]!, 1)} | **${fmt(f.rates[i]! / f.rates[0]!, 2)}** |`);
      md();
      md(
        `Concurrency ${f.concurrency} (tasks.concurrency), one sweep process, development database (FerretDB).`,
      );
    } else {
      md('```');
      md(sweep.text);
      md('```');
    }
    md();
  }
  if (blocked) {
    md('## Blocked feed (bench/blocked.ts: a feed that accepts connections and never answers)');
    md();
    const f = blocked.figures;
    if (f) {
      md(
        '| 20 concurrent misses | status | median ms | max ms | upstream connections | baseline ÷ this (median) |',
      );
      md('|---|---|---|---|---|---|');
      md(
        `| never blocked (headers_timeout ${f.timeout}): the baseline | ${f.baseline.statuses} | ${fmt(f.baseline.medianMs)} | ${fmt(f.baseline.maxMs)} | | 1 |`,
      );
      md(
        `| blocked (remotes.block_after 3) | ${f.blocked.statuses} | ${fmt(f.blocked.medianMs, 1)} | ${fmt(f.blocked.maxMs, 1)} | ${f.blocked.connections} | **${fmt(f.baseline.medianMs / f.blocked.medianMs, 0)}** |`,
      );
    } else {
      md('```');
      md(blocked.text);
      md('```');
    }
    md();
  }
  if (catalog) {
    md('## Catalog (bench/catalog.ts)');
    md();
    const f = catalog.figures;
    if (f) {
      md(
        `Lookups as the streamer makes them (one read by \`_id\` at the repository's current revision), ${fmt(f.lookups)} random known paths one at a time (p50 / p99), and lookups/s with ${f.parallel} in flight; the baseline is the same with ${fmt(f.baseEntries)} entries.`,
      );
      md();
      md(
        '| entries | p50 ms | p99 ms | lookups/s (16 in flight) | unknown path ms | p50 ratio to baseline |',
      );
      md('|---|---|---|---|---|---|');
      for (const l of [f.base, f.big])
        md(
          `| ${fmt(l.entries)} | ${fmt(l.p50ms, 2)} | ${fmt(l.p99ms, 2)} | ${fmt(l.perSecond)} | ${fmt(l.unknownMs)} | **${fmt(l.p50ms / f.base.p50ms, 2)}** |`,
        );
      md();
      md(
        `An unknown path falls back to the query on \`path\`, which FerretDB answers by decoding the whole collection. Filling the catalog took ${fmt(f.fillSeconds, 1)} s (${fmt((f.entries - f.baseEntries) / f.fillSeconds)} entries/s, insertMany of 10,000).`,
      );
      md();
      md(
        `Sync of a generated yum repository of ${fmt(f.packages)} packages (primary.xml ${fmt(f.primaryMiB, 1)} MiB, over HTTP on 127.0.0.1): first sync **${fmt(f.firstSyncSeconds, 1)} s** (${fmt(f.packages / f.firstSyncSeconds)} packages/s); re-sync with nothing changed ${fmt(f.resyncSeconds, 1)} s. Baseline, the database write floor of that sync (${fmt(f.floorDocs)} bare documents, insertMany of 1,000): ${fmt(f.floorSeconds, 1)} s; **first sync ÷ floor ${fmt(f.firstSyncSeconds / f.floorSeconds, 2)}**.`,
      );
    } else {
      md('```');
      md(catalog.text);
      md('```');
    }
    md();
  }
  if (syncmem) {
    md('## Sync memory (bench/syncmem.ts)');
    md();
    const f = syncmem.figures;
    if (f) {
      md(
        `Peak RSS ("maximum resident set size" from /usr/bin/time) of \`pulp-lazy sync\` run as its own process on generated repositories served over HTTP on 127.0.0.1, each into a fresh database, then the same sync again with nothing changed; the baseline is the same repository type with ${fmt(f.sizes[0])} packages. yum: repomd.xml + primary.xml.gz; deb: Release + Packages and Packages.gz (the plain index is parsed).`,
      );
      md();
      md(
        '| repository | packages | index MiB (uncompressed) | first sync peak RSS MiB | first sync s | re-sync peak RSS MiB | re-sync s |',
      );
      md('|---|---|---|---|---|---|---|');
      for (const c of f.cases)
        md(
          `| ${c.kind} | ${fmt(c.packages)} | ${fmt(c.indexMiB, 1)} | **${fmt(c.first.peakMiB, 1)}** | ${fmt(c.first.seconds, 1)} | ${fmt(c.again.peakMiB, 1)} | ${fmt(c.again.seconds, 1)} |`,
        );
      md();
      for (const kind of ['yum', 'deb']) {
        const [small, large] = syncCases(f, kind);
        md(
          `${kind}: peak RSS at ${fmt(large.packages)} ÷ at ${fmt(small.packages)} packages **${fmt(large.first.peakMiB / small.first.peakMiB, 2)}** (first sync), ${fmt(large.again.peakMiB / small.again.peakMiB, 2)} (re-sync); time per package ${fmt((large.first.seconds / large.packages) * 1000, 2)} ms ÷ ${fmt((small.first.seconds / small.packages) * 1000, 2)} ms.`,
        );
        md();
      }
    } else {
      md('```');
      md(syncmem.text);
      md('```');
      md();
    }
  }
  md('## Against the targets');
  md();
  md('| target | figure | status |');
  md('|---|---|---|');
  const r = (k: string, m: Record<string, number[]>) => median(m[k] ?? []);
  if (Object.keys(hitRatios).length) {
    for (const c of [16, 64]) {
      md(
        `| small hit, fast path ≥ 0.9 × static (c=${c}) | ${fmt(r(`fastpath/${c}`, hitRatios), 2)} | ${verdict(r(`fastpath/${c}`, hitRatios) >= 0.9)} |`,
      );
      md(
        `| small hit, X-Sendfile ≥ 0.45 × static (c=${c}); the minimal backend reaches ${fmt(r(`minimal/${c}`, hitRatios), 2)} | ${fmt(r(`xsendfile/${c}`, hitRatios), 2)} (${fmt(r(`xsendfile-of-minimal/${c}`, hitRatios), 2)} of the minimal backend) | ${verdict(r(`xsendfile/${c}`, hitRatios) >= 0.45)} |`,
      );
    }
  }
  if (Object.keys(bigRatios).length) {
    for (const p of ['xsendfile', 'fastpath', 'serve']) {
      md(
        `| 1 GiB hit ≥ 0.9 × static (${p}) | ${fmt(r(p, bigRatios), 2)} | ${verdict(r(p, bigRatios) >= 0.9)} |`,
      );
    }
  }
  if (Object.keys(missRatios).length) {
    md(
      `| miss, Apache (no Squid) ≥ 0.8 × direct | ${fmt(r('apache', missRatios), 2)} | ${verdict(r('apache', missRatios) >= 0.8)} |`,
    );
    md(
      `| miss, all-in-one ≥ 0.85 × direct | ${fmt(r('serve', missRatios), 2)} | ${verdict(r('serve', missRatios) >= 0.85)} |`,
    );
    const viaSquid = median(
      (missResults.squid ?? []).map((x, i) => x.mbps / missResults.squidalone![i]!.mbps),
    );
    md(
      `| miss through Squid ≥ 0.9 × a Squid-alone cold miss | ${fmt(viaSquid, 2)} | ${verdict(viaSquid >= 0.9)} |`,
    );
    md(
      `| miss ÷ min(direct, durable disk write) (no target; apache / serve) | ${fmt(r('apache/floor', missRatios), 2)} / ${fmt(r('serve/floor', missRatios), 2)} | — |`,
    );
    const perPass = (p: string) =>
      median((missResults[p] ?? []).map((x, i) => x.mbps / missResults.passthrough![i]!.mbps));
    md(
      `| miss ÷ minimal pass-through (no target; apache / serve) | ${fmt(perPass('apache'), 2)} / ${fmt(perPass('serve'), 2)} | — |`,
    );
    const ttfb = (p: string) => median((missResults[p] ?? []).map((x) => x.ttfbMs));
    for (const p of ['apache', 'serve']) {
      const over = ttfb(p) - ttfb('direct');
      md(
        `| miss TTFB ≤ 10 ms over direct (${p}, 1 GiB rows; redirect included for apache) | +${fmt(over, 1)} ms | ${verdict(over <= 10)} |`,
      );
    }
    for (const k of TTFB_KINDS) {
      if (!ttfbCold[`${k}/0`]) continue;
      md(
        `| miss TTFB ≤ 10 ms over direct (${k}, cold 1 MiB misses on their own) | +${fmt(coldOver(k), 1)} ms | ${verdict(coldOver(k) <= 10)} |`,
      );
    }
  }
  for (const via of coalKinds) {
    const cs = coal.filter((c) => c.via === via);
    if (cs.length === 0) continue;
    const gets = cs.map((c) => c.gets);
    const within = cs.map((c) => c.within1s);
    const ratio = median(cs.map((c) => c.all / c.single));
    md(
      `| coalescing (${via}): 1 upstream GET | ${gets.join(', ')} | ${verdict(gets.every((g) => g === 1))} |`,
    );
    md(
      `| coalescing (${via}): all ${COAL_CLIENTS} clients have bytes within 1 s | ${within.join(', ')} | ${verdict(within.every((w) => w === COAL_CLIENTS))} |`,
    );
    md(
      `| coalescing (${via}): all done ≤ 1.5 × single | ${fmt(ratio, 2)} (median) | ${verdict(ratio <= 1.5)} |`,
    );
  }
  if (blocked?.figures) {
    const b = blocked.figures.blocked;
    md(
      `| blocked feed: 20 misses each answered 503 in well under 1 s, no upstream connection (#23) | max ${fmt(b.maxMs, 1)} ms, ${b.connections} connections | ${verdict(b.statuses === '503' && b.maxMs < 1000 && b.connections === 0)} |`,
    );
  }
  if (sweep?.figures && sweep.figures.rates.length === 2) {
    const [small, large] = sweep.figures.rates as [number, number];
    md(
      `| sweep ≥ 500 units/s (1,000 / 10,000 units) | ${fmt(small, 1)} / ${fmt(large, 1)} | ${verdict(Math.min(small, large) >= 500)} |`,
    );
    md(
      `| sweep linear (10,000 ÷ 1,000 rate ≥ 0.9) | ${fmt(large / small, 2)} | ${verdict(large / small >= 0.9)} |`,
    );
  }
  if (syncmem?.figures) {
    for (const kind of ['yum', 'deb']) {
      const [small, large] = syncCases(syncmem.figures, kind);
      const peak = Math.max(large.first.peakMiB, large.again.peakMiB);
      const flat = peak / Math.max(small.first.peakMiB, small.again.peakMiB);
      md(
        `| ${kind} sync peak RSS ≤ ${SYNC_RSS_TARGET} MiB at ${fmt(large.packages)} packages (first / re-sync) | ${fmt(large.first.peakMiB, 1)} / ${fmt(large.again.peakMiB, 1)} MiB | ${verdict(peak <= SYNC_RSS_TARGET)} |`,
      );
      md(
        `| ${kind} sync peak RSS flat (${fmt(large.packages)} ÷ ${fmt(small.packages)} packages ≤ ${SYNC_FLAT}) | ${fmt(flat, 2)} | ${verdict(flat <= SYNC_FLAT)} |`,
      );
    }
  }
  if (mem) {
    md(
      `| streamer peak RSS ≤ 160 MiB at 100 streams | ${fmt(mem.streamer.hwm, 1)} MiB at ${MEM_CLIENTS} (pass-through: ${fmt(mem.passthrough.hwm, 1)}) | ${MEM_CLIENTS === 100 ? verdict(mem.streamer.hwm <= 160) : 'fewer streams than the target'} |`,
    );
  }
  md();
  return out.join('\n');
}

async function describeMachine(): Promise<string> {
  const v = async (cmd: string, args: string[], re: RegExp) => {
    const r = await execp(cmd, args).catch((e: { stdout?: string; stderr?: string }) => ({
      stdout: e.stdout ?? '',
      stderr: e.stderr ?? '',
    }));
    return re.exec(`${r.stdout}\n${r.stderr}`)?.[1] ?? '?';
  };
  const cpu = os.cpus();
  return [
    `${cpu.length} × ${cpu[0]?.model.trim() ?? '?'}`,
    `${fmt(os.totalmem() / GIB, 1)} GiB RAM`,
    `Linux ${os.release()}`,
    `Node ${process.versions.node}`,
    `Apache ${await v('apache2', ['-v'], /Apache\/([\d.]+)/)} (event MPM)`,
    `Squid ${await v('squid', ['-v'], /Version ([\d.]+)/)}`,
    `wrk ${await v('wrk', ['-v'], /wrk \S*?(\d+\.\d+\.\d+)/)}`,
    `curl ${await v('curl', ['--version'], /curl ([\d.]+)/)}`,
  ].join(', ');
}

let code = 0;
try {
  const text = await main();
  console.log(text);
  if (OUT) {
    await writeFile(OUT, text);
    log(`wrote ${OUT}`);
  }
} catch (err) {
  console.error(`bench failed: ${(err as Error).stack ?? err}`);
  code = 1;
} finally {
  await cleanup();
}
process.exit(code);
