/**
 * Peak memory of `pulp-lazy sync` (a separate process, as an operator runs
 * it) for generated yum and deb repositories of two sizes, the small one
 * the baseline:
 *
 *   node --import tsx bench/syncmem.ts                  # 10,000 and 60,000 packages
 *   node --import tsx bench/syncmem.ts 2000 20000       # other sizes
 *   BENCH_BIN=/other/build/bin/pulp-lazy ...            # measure another build
 *
 * Each repository (yum: repomd.xml + primary.xml.gz, test/helpers/yum-primary.ts;
 * deb: Release + Packages and Packages.gz, test/helpers/deb-packages.ts) is
 * served over HTTP on 127.0.0.1 and synced into a fresh database by
 * `node bin/pulp-lazy sync NAME --json` under /usr/bin/time (package `time`):
 * its "maximum resident set size" is the peak RSS of the sync process; then
 * the same repository is synced again, unchanged. Order: every kind at the
 * small size, then at the large one. Uses MONGODB_URL, or starts the
 * development database (FerretDB) in a temp dir. The last line printed is
 * `JSON {...}` with every figure (bench/run.ts reads it).
 */
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { rootedPaths } from '../src/config.ts';
import { generateDebRepo } from '../test/helpers/deb-packages.ts';
import { generateYumRepo } from '../test/helpers/yum-primary.ts';
import { benchDatabase } from './database.ts';

const execp = promisify(execFile);
const ROOT = path.resolve(import.meta.dirname, '..');
const BIN = process.env.BENCH_BIN ?? path.join(ROOT, 'bin/pulp-lazy');
const args = process.argv.slice(2).filter((a) => a !== '--');
const SIZES = (args.length ? args : ['10000', '60000']).map(Number);
if (SIZES.length !== 2 || SIZES.some((n) => !Number.isInteger(n) || n < 1)) {
  console.error('usage: bench/syncmem.ts [small large]');
  process.exit(2);
}
const KINDS = ['yum', 'deb'] as const;
type Kind = (typeof KINDS)[number];

export interface SyncRun {
  /** Peak RSS of the sync process, MiB. */
  peakMiB: number;
  seconds: number;
  units: number;
  changed: boolean;
}
export interface SyncMemCase {
  kind: Kind;
  packages: number;
  /** Size of the package list (primary.xml or Packages), uncompressed, MiB. */
  indexMiB: number;
  first: SyncRun;
  again: SyncRun;
}

const log = (s: string) => console.log(`[${new Date().toISOString().slice(11, 19)}] ${s}`);
const fmt = (n: number, d = 0) =>
  n.toLocaleString('en-US', { maximumFractionDigits: d, minimumFractionDigits: d });

const scratch = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-bench-syncmem-'));
const { url, stop: stopDb } = await benchDatabase(scratch, log);

/** Every served file, by URL path. */
const served = new Map<string, Buffer | string>();
const upstream = http.createServer((req, res) => {
  const body = served.get(decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname));
  if (body === undefined) res.writeHead(404).end();
  else res.writeHead(200, { 'content-length': Buffer.byteLength(body) }).end(body);
});
upstream.listen(0, '127.0.0.1');
await once(upstream, 'listening');
const origin = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;

/** Runs the CLI with the case's config; under /usr/bin/time when `timed`. */
async function cli(config: string, argv: string[], timed = false) {
  const cmd = timed
    ? ['/usr/bin/time', ['-f', 'PEAK_RSS_KB=%M', process.execPath, BIN, ...argv]]
    : [process.execPath, [BIN, ...argv]];
  const t0 = performance.now();
  const r = await execp(cmd[0] as string, cmd[1] as string[], {
    env: { ...process.env, PULP_LAZY_CONFIG: config, MONGODB_URL: url },
    cwd: ROOT,
    timeout: 1_800_000,
    maxBuffer: 16 << 20,
  });
  return { ...r, seconds: (performance.now() - t0) / 1000 };
}

async function measure(kind: Kind, n: number): Promise<SyncMemCase> {
  const name = `${kind}${n}`;
  const dir = path.join(scratch, name);
  await mkdir(dir, { recursive: true });
  let indexBytes: number;
  if (kind === 'yum') {
    const repo = await generateYumRepo(n, dir);
    for (const [p, b] of repo.files) served.set(`/${name}/${p}`, b);
    indexBytes = repo.openSize;
  } else {
    const repo = generateDebRepo(n);
    for (const [p, b] of repo.files) served.set(`/${name}/${p}`, b);
    indexBytes = repo.packagesSize;
  }
  const config = path.join(dir, 'config.toml');
  const paths = Object.entries(rootedPaths(path.join(dir, 'root')))
    .map(([k, v]) => `${k} = ${JSON.stringify(v)}`)
    .join('\n');
  await writeFile(
    config,
    `[database]\nname = "syncmem_${name}_${process.pid}"\n\n[paths]\n${paths}\n\n[log]\nlevel = "warn"\n`,
  );
  const debArgs = ['--dists', 'stable', '--components', 'main', '--architectures', 'amd64'];
  await cli(config, [
    'repo',
    'create',
    name,
    '--type',
    kind,
    '--feed',
    `${origin}/${name}/`,
    ...(kind === 'deb' ? debArgs : []),
  ]);
  const run = async (): Promise<SyncRun> => {
    const r = await cli(config, ['sync', name, '--json'], true);
    const kb = Number(/PEAK_RSS_KB=(\d+)/.exec(r.stderr)?.[1]);
    if (!(kb > 0)) throw new Error(`no peak RSS from /usr/bin/time: ${r.stderr}`);
    const summary = JSON.parse(r.stdout) as { units: number; changed: boolean };
    return { peakMiB: kb / 1024, seconds: r.seconds, units: summary.units, changed: summary.changed };
  };
  const first = await run();
  const again = await run();
  for (const p of [...served.keys()]) if (p.startsWith(`/${name}/`)) served.delete(p);
  await rm(dir, { recursive: true, force: true });
  const c = { kind, packages: n, indexMiB: indexBytes / 2 ** 20, first, again };
  log(
    `${kind} ${fmt(n)} packages (index ${fmt(c.indexMiB, 1)} MiB): first sync peak RSS ${fmt(first.peakMiB, 1)} MiB in ${fmt(first.seconds, 1)} s (${fmt(first.units)} units); re-sync ${fmt(again.peakMiB, 1)} MiB in ${fmt(again.seconds, 1)} s (changed: ${again.changed})`,
  );
  return c;
}

let code = 0;
try {
  log(`sync memory of ${BIN}`);
  const cases: SyncMemCase[] = [];
  for (const n of SIZES) for (const kind of KINDS) cases.push(await measure(kind, n));
  for (const kind of KINDS) {
    const [small, large] = SIZES.map((n) => cases.find((c) => c.kind === kind && c.packages === n)!) as [
      SyncMemCase,
      SyncMemCase,
    ];
    log(
      `${kind}: peak RSS at ${fmt(large.packages)} ÷ at ${fmt(small.packages)} packages: ${fmt(large.first.peakMiB / small.first.peakMiB, 2)} (first sync), ${fmt(large.again.peakMiB / small.again.peakMiB, 2)} (re-sync)`,
    );
  }
  console.log(`JSON ${JSON.stringify({ bin: BIN, sizes: SIZES, cases })}`);
} catch (err) {
  console.error(`bench syncmem failed: ${(err as Error).stack ?? err}`);
  code = 1;
} finally {
  upstream.close();
  await stopDb();
  await rm(scratch, { recursive: true, force: true });
}
process.exit(code);
