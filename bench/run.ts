/**
 * `npm run bench`: the hit and miss paths against their limits, each figure
 * a ratio to a baseline measured in the same run, interleaved, median of
 * BENCH_ROUNDS rounds (default 3). Writes bench/RESULTS.md.
 *
 *   hits, 1 KiB × 1000 files, wrk c=1/16/64: Apache static (baseline),
 *     Apache → content daemon X-Sendfile, Apache fast path, `serve` direct
 *   hit, 1 GiB page-cached, curl: Apache static (baseline), X-Sendfile, fast path, serve
 *   miss, 1 GiB cold, curl: upstream direct (baseline), Apache → authorizer →
 *     streamer (proxy.cache none), Apache → Squid → streamer, serve
 *   coalescing: 50 clients, one cold 100 MiB object, origin at 50 MB/s, through serve
 *   streamer memory: VmHWM of a fresh streamer, BENCH_MEM_CLIENTS (100) × 100 MiB, curl --limit-rate 2M
 *   sweep: bench/sweep.ts (when present), small sizes
 *
 * Everything runs from a temp dir on 127.0.0.1; every process it starts is
 * stopped at the end (also on SIGINT/SIGTERM). Needs root (Apache's User,
 * chown for the fast path), apache2, mod_xsendfile, squid, wrk, curl, and
 * `npm run build` (daemons run as `bin/pulp-lazy run ...` child processes).
 * Env: BENCH_ROUNDS, BENCH_WRK_SECONDS (4), BENCH_MEM_CLIENTS (100), BENCH_SKIP (comma list of
 * hits,big,miss,coalesce,memory,sweep).
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
import { syncRepo } from '../src/importers/sync.ts';
import { silentLogger } from '../src/log.ts';
import { startProxies, stopProxies } from '../src/proxies/index.ts';
import { portOpen, userIds, waitFor } from '../src/proxies/process.ts';
import { buildRepo, createRepo } from '../src/repos/index.ts';
import { generateKeys } from '../src/signing/index.ts';
import { DispatcherPool } from '../src/upstream/dispatcher.ts';
import { freePorts } from '../test/helpers/proxies.ts';
import { blocks, body, sha256Of } from './lib/body.ts';
import {
  Children,
  type CurlResult,
  curl,
  getTimed,
  median,
  memoryOf,
  type WrkResult,
  wrk,
  wrkScript,
} from './lib/measure.ts';

const execp = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '..');
const ROUNDS = Number(process.env.BENCH_ROUNDS ?? 3);
const WRK_SECONDS = Number(process.env.BENCH_WRK_SECONDS ?? 4);
const MEM_CLIENTS = Number(process.env.BENCH_MEM_CLIENTS ?? 100);
const SKIP = new Set((process.env.BENCH_SKIP ?? '').split(',').filter(Boolean));
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

function toToml(obj: Record<string, Record<string, unknown>>): string {
  const lines: string[] = [];
  for (const [section, values] of Object.entries(obj)) {
    lines.push(`[${section}]`);
    for (const [k, v] of Object.entries(values)) lines.push(`${k} = ${JSON.stringify(v)}`);
    lines.push('');
  }
  return lines.join('\n');
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
  cleanups.push(() => rm(scratch, { recursive: true, force: true }));
  const paths = rootedPaths(scratch);
  const started = new Date();
  log(`scratch ${scratch}`);

  // --- objects and their digests ---------------------------------------------
  const routes: Record<string, { seed: number; size: number; rate?: number } | { text: string }> = {};
  const manifests: Record<string, string[]> = { hits: [], miss: [], coal: [], mem: [] };
  const add = (repo: string, rel: string, seed: number, size: number, rate?: number, inManifest = true) => {
    routes[`/${repo}/${rel}`] = rate ? { seed, size, rate } : { seed, size };
    if (inManifest) manifests[repo]!.push(`${rel},${sha256Of(seed, size)},${size}`);
  };
  const small = Array.from({ length: SMALL_FILES }, (_, i) => `f${String(i).padStart(4, '0')}.bin`);
  for (const [i, rel] of small.entries()) add('hits', rel, 1 + i, KIB);
  add('hits', 'big.bin', 9000, GIB);
  const missKinds = ['apache', 'squid', 'serve'] as const;
  for (let r = 0; r < ROUNDS; r++) {
    for (const [j, k] of missKinds.entries()) add('miss', `m-${k}-${r}.bin`, 10_000 + r * 10 + j, GIB);
  }
  add('miss', 'direct.bin', 10_999, GIB, undefined, false);
  for (let r = 0; r < ROUNDS; r++) {
    add('coal', `single-${r}.bin`, 20_000 + r * 2, COAL_SIZE, COAL_RATE);
    add('coal', `many-${r}.bin`, 20_001 + r * 2, COAL_SIZE, COAL_RATE);
  }
  const memFiles = Array.from({ length: MEM_CLIENTS }, (_, i) => `s${i}.bin`);
  for (const [i, rel] of memFiles.entries()) add('mem', rel, 30_000 + i, MEM_SIZE);
  for (const [repo, lines] of Object.entries(manifests))
    routes[`/${repo}/PULP_MANIFEST`] = { text: `${lines.join('\n')}\n` };
  log(`digests computed for ${Object.keys(routes).length} objects`);

  const specFile = path.join(scratch, 'origin.json');
  await writeFile(specFile, JSON.stringify({ routes }));
  const origin = children.spawn(
    process.execPath,
    ['--import', 'tsx', path.join(ROOT, 'bench/origin.ts'), specFile],
    {
      ...process.env,
    },
  );
  const [line] = (await once(createInterface({ input: origin.stdout! }), 'line')) as [string];
  const originBase = `http://127.0.0.1:${(JSON.parse(line) as { port: number }).port}`;
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
  ] = await freePorts(14);
  const base: Sections = {
    database: { url: devdb.url, name: 'bench' },
    paths: { ...paths },
    log: { level: 'warn' },
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
    await createRepo(db, await buildRepo({ name: repo, type: 'file', feed: `${originBase}/${repo}/` }));
    await syncRepo(repo, {
      db,
      pool,
      storageRoot: paths.storage,
      publishedRoot: paths.published,
      workingDir: paths.working,
      logger: silentLogger,
    });
  }
  await pool.close();
  log('repositories synced');

  // Present files: the 1 KiB set and the 1 GiB file, written straight into storage;
  // the static baseline serves the same inodes (hard links) from a plain docroot.
  const docroot = path.join(scratch, 'static', 'docroot');
  await mkdir(docroot, { recursive: true });
  for (const [i, rel] of small.entries()) {
    const stored = await storageOf(paths.published, 'hits', rel);
    await mkdir(path.dirname(stored), { recursive: true });
    await writeFile(stored, body(1 + i, KIB));
    await link(stored, path.join(docroot, rel));
  }
  const bigStored = await storageOf(paths.published, 'hits', 'big.bin');
  await writeObject(bigStored, 9000, GIB);
  await link(bigStored, path.join(docroot, 'big.bin'));
  // The fast path needs the tree owned by a non-root service user (docs/proxies.md).
  const { uid, gid } = await userIds(SERVICE_USER);
  await lchownTree(paths.storage, uid, gid);
  await lchownTree(paths.published, uid, gid);
  log('present files written');

  // --- daemons (child processes) and proxies ------------------------------------
  const cli = (what: string[], config: string) =>
    children.spawn(
      process.execPath,
      [path.join(ROOT, 'bin/pulp-lazy'), ...what],
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
  cli(['run', 'content'], files.x);
  cli(['run', 'content'], files.s);
  cli(['run', 'streamer'], files.x);
  cli(['run', 'authorizer'], files.x);
  cli(['serve'], files.x);
  for (const [p, w] of [
    [contentX, 'content X'],
    [contentS, 'content S'],
    [streamerPort, 'streamer'],
    [auth, 'authorizer'],
    [servePort, 'serve'],
  ] as const)
    await waitPort(p!, w);
  for (const k of ['x', 's', 'f'] as const) {
    cleanups.push(() => stopProxies(configs[k], { logger: silentLogger }));
    await startProxies(configs[k], { logger: silentLogger });
  }
  const staticDir = path.join(scratch, 'static');
  const staticConf = path.join(staticDir, 'httpd.conf');
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
  log('daemons and proxies up');

  const hitBase = {
    static: `http://127.0.0.1:${staticPort}`,
    xsendfile: `http://127.0.0.1:${xc}`,
    fastpath: `http://127.0.0.1:${fc}`,
    serve: `http://127.0.0.1:${servePort}`,
  };
  type HitPath = keyof typeof hitBase;
  const hitPaths = Object.keys(hitBase) as HitPath[];
  const hitUrl = (p: HitPath, rel: string) =>
    `${hitBase[p]}${p === 'static' ? '/' : '/pulp/content/hits/'}${rel}`;
  // Probe: every path answers; the fast path is Apache's (mtime-size ETag), X-Sendfile the daemon's.
  for (const p of hitPaths) {
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
  if (!SKIP.has('hits')) {
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
        log(`hits round ${r + 1} c=${c}: ${hitPaths.map((p) => `${p} ${fmt(round[p]!.rps)}`).join(', ')}`);
      }
    }
  }

  // --- 2. 1 GiB hit ----------------------------------------------------------------
  const bigResults: Record<string, CurlResult[]> = {};
  const bigRatios: Record<string, number[]> = {};
  if (!SKIP.has('big')) {
    await readFile(bigStored).catch(() => undefined); // page cache (1 GiB buffer, then dropped)
    for (const p of hitPaths) await curl(hitUrl(p, 'big.bin')); // warm-up
    for (let r = 0; r < ROUNDS; r++) {
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
  const missPaths = ['direct', ...missKinds] as const;
  const missResults: Record<string, CurlResult[]> = {};
  const missRatios: Record<string, number[]> = {};
  if (!SKIP.has('miss')) {
    const missUrl = (p: (typeof missPaths)[number], r: number) =>
      p === 'direct'
        ? `${originBase}/miss/direct.bin`
        : `http://127.0.0.1:${p === 'apache' ? xc : p === 'squid' ? sc : servePort}/pulp/content/miss/m-${p}-${r}.bin`;
    for (let r = 0; r < ROUNDS; r++) {
      const round: Partial<Record<string, CurlResult>> = {};
      for (const p of missPaths.map((_, i) => missPaths[(i + r) % missPaths.length]!)) {
        const res = await curl(missUrl(p, r));
        if (res.code !== 200 || res.bytes !== GIB) throw new Error(`miss ${p}: ${res.code} ${res.bytes}`);
        round[p] = res;
        push(missResults, p, res);
      }
      for (const p of missPaths) push(missRatios, p, round[p]!.mbps / round.direct!.mbps);
      log(`miss round ${r + 1}: ${missPaths.map((p) => `${p} ${fmt(round[p]!.mbps)} MB/s`).join(', ')}`);
      // The streamer saved the objects: drop them (disk), the next round uses new ones.
      for (const k of missKinds)
        await rm(await storageOf(paths.published, 'miss', `m-${k}-${r}.bin`), { force: true });
    }
  }

  // --- 4. coalescing through serve ---------------------------------------------------------
  interface Coal {
    single: number;
    all: number;
    gets: number;
    within1s: number;
    ttfbMedian: number;
    ttfbMax: number;
    complete: number;
  }
  const coal: Coal[] = [];
  if (!SKIP.has('coalesce')) {
    const url = (rel: string) => `http://127.0.0.1:${servePort}/pulp/content/coal/${rel}`;
    for (let r = 0; r < ROUNDS; r++) {
      const t1 = performance.now();
      const one = await getTimed(url(`single-${r}.bin`), t1);
      const t0 = performance.now();
      const many = await Promise.all(
        Array.from({ length: COAL_CLIENTS }, () => getTimed(url(`many-${r}.bin`), t0)),
      );
      const gets = (await stats())[`/coal/many-${r}.bin`] ?? 0;
      const firsts = many.map((m) => m.firstByteMs);
      const c: Coal = {
        single: one.doneMs,
        all: Math.max(...many.map((m) => m.doneMs)),
        gets,
        within1s: firsts.filter((f) => f <= 1000).length,
        ttfbMedian: median(firsts),
        ttfbMax: Math.max(...firsts),
        complete: many.filter((m) => m.status === 200 && m.bytes === COAL_SIZE).length,
      };
      coal.push(c);
      log(
        `coalescing round ${r + 1}: ${gets} upstream GET(s), ${c.within1s}/${COAL_CLIENTS} with bytes within 1 s, all ${fmt(c.all)} ms vs single ${fmt(c.single)} ms, ${c.complete} complete`,
      );
    }
  }

  // --- 5. streamer memory ----------------------------------------------------------------------
  let mem: { rss0: number; hwm: number; ok: number; seconds: number } | undefined;
  if (!SKIP.has('memory')) {
    const streamer = cli(['run', 'streamer'], files.m);
    await waitPort(streamerM!, 'streamer M');
    const pid = streamer.pid!;
    await new Promise((r) => setTimeout(r, 500));
    const rss0 = (await memoryOf(pid)).rss;
    const storagePaths = await Promise.all(memFiles.map((rel) => storageOf(paths.published, 'mem', rel)));
    const t0 = performance.now();
    const results = await Promise.all(
      storagePaths.map((sp) =>
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
          `http://127.0.0.1:${streamerM}${sp}`,
        ]).then(
          (r) => r.stdout.trim(),
          (e: { stdout?: string }) => e.stdout ?? 'error',
        ),
      ),
    );
    const seconds = (performance.now() - t0) / 1000;
    const { hwm } = await memoryOf(pid);
    await children.stop(streamer);
    mem = { rss0, hwm, ok: results.filter((r) => r === `200 ${MEM_SIZE}`).length, seconds };
    log(
      `streamer memory: fresh ${fmt(rss0)} MiB, peak VmHWM ${fmt(hwm)} MiB, ${mem.ok}/${MEM_CLIENTS} complete in ${fmt(seconds)} s`,
    );
    for (const sp of storagePaths) await rm(sp, { force: true });
  }

  // --- 6. sweep (bench/sweep.ts, when the sweep task exists) -----------------------------------------
  let sweep: string | undefined;
  if (
    !SKIP.has('sweep') &&
    existsSync(path.join(ROOT, 'bench/sweep.ts')) &&
    existsSync(path.join(ROOT, 'src/tasks/sweep.ts'))
  ) {
    log('sweep: bench/sweep.ts 50 200');
    const r = await execp(
      process.execPath,
      ['--import', 'tsx', path.join(ROOT, 'bench/sweep.ts'), '50', '200'],
      {
        env: { ...process.env, MONGODB_URL: devdb.url },
        timeout: 150_000,
        cwd: ROOT,
      },
    ).catch((e: { stdout?: string; message: string }) => ({
      stdout: `${e.stdout ?? ''}\nfailed: ${e.message}`,
    }));
    sweep = r.stdout.trim();
    log(sweep.split('\n').slice(-3).join(' | '));
  }

  // --- RESULTS.md ---------------------------------------------------------------------------
  const machine = await describeMachine();
  md('# pulp-lazy benchmarks');
  md();
  md(
    `Generated by \`npm run bench\` (bench/run.ts) on ${started.toISOString().slice(0, 16).replace('T', ' ')} UTC.`,
  );
  md(`Machine: ${machine}.`);
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
    md('## 1 GiB hit (page-cached, curl, body discarded): MB/s (TTFB ms), ratio to Apache static');
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
      apache: 'Apache → authorizer → streamer (proxy.cache none)',
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
      'The streamer saves and verifies every miss into storage while streaming (streamer.save_to_storage, the default).',
    );
    md();
  }
  if (coal.length) {
    md(`## Coalescing (serve, ${COAL_CLIENTS} clients, one cold 100 MiB object, origin at 50 MB/s)`);
    md();
    md(
      '| round | upstream GETs | clients with body bytes within 1 s | TTFB median / max ms | all done ms | single client ms | all ÷ single | complete |',
    );
    md('|---|---|---|---|---|---|---|---|');
    for (const [i, c] of coal.entries()) {
      md(
        `| ${i + 1} | ${c.gets} | ${c.within1s}/${COAL_CLIENTS} | ${fmt(c.ttfbMedian)} / ${fmt(c.ttfbMax)} | ${fmt(c.all)} | ${fmt(c.single)} | **${fmt(c.all / c.single, 2)}** | ${c.complete}/${COAL_CLIENTS} |`,
      );
    }
    md();
  }
  if (mem) {
    md(
      `## Streamer memory (${MEM_CLIENTS} concurrent 100 MiB streams, distinct objects, curl --limit-rate 2M)`,
    );
    md();
    md(
      `Fresh \`pulp-lazy run streamer\` process: VmRSS ${fmt(mem.rss0)} MiB before; **peak VmHWM ${fmt(mem.hwm)} MiB** (one run); ${mem.ok}/${MEM_CLIENTS} clients got all bytes; ${fmt(mem.seconds)} s. Each stream is also saved to storage.`,
    );
    md();
  }
  if (sweep !== undefined) {
    md('## Sweep (bench/sweep.ts 50 200, in the same run)');
    md();
    md('```');
    md(sweep);
    md('```');
    md();
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
        `| small hit, X-Sendfile ≥ 0.45 × static (c=${c}) | ${fmt(r(`xsendfile/${c}`, hitRatios), 2)} | ${verdict(r(`xsendfile/${c}`, hitRatios) >= 0.45)} |`,
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
    md(`| miss through Squid (no target; Squid's cold-miss wall) | ${fmt(r('squid', missRatios), 2)} | — |`);
  }
  if (coal.length) {
    const gets = coal.map((c) => c.gets);
    const within = coal.map((c) => c.within1s);
    const ratio = median(coal.map((c) => c.all / c.single));
    md(`| coalescing: 1 upstream GET | ${gets.join(', ')} | ${verdict(gets.every((g) => g === 1))} |`);
    md(
      `| coalescing: all ${COAL_CLIENTS} clients have bytes within 1 s | ${within.join(', ')} | ${verdict(within.every((w) => w === COAL_CLIENTS))} |`,
    );
    md(`| coalescing: all done ≤ 1.5 × single | ${fmt(ratio, 2)} (median) | ${verdict(ratio <= 1.5)} |`);
  }
  if (mem) {
    md(
      `| streamer peak RSS ≤ 160 MiB at 100 streams | ${fmt(mem.hwm)} MiB at ${MEM_CLIENTS} | ${MEM_CLIENTS === 100 ? verdict(mem.hwm <= 160) : 'fewer streams than the target'} |`,
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
  await writeFile(path.join(ROOT, 'bench/RESULTS.md'), text);
  console.log(text);
  log('wrote bench/RESULTS.md');
} catch (err) {
  console.error(`bench failed: ${(err as Error).stack ?? err}`);
  code = 1;
} finally {
  await cleanup();
}
process.exit(code);
