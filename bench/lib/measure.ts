/**
 * Measurement helpers for bench/run.ts: wrk (rps, p50/p99), curl (MB/s,
 * TTFB), a redirect-following Node client with first-byte times, child
 * process management with guaranteed cleanup, waiting for an idle machine,
 * and medians.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFile, writeFile } from 'node:fs/promises';
import http from 'node:http';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Busy and total CPU time of the machine so far (/proc/stat, in ticks). */
async function cpuTicks(): Promise<{ busy: number; total: number }> {
  const line = (await readFile('/proc/stat', 'utf8')).split('\n', 1)[0]!;
  const t = line.trim().split(/\s+/).slice(1).map(Number);
  const idle = t[3]! + (t[4] ?? 0); // idle + iowait
  const total = t.reduce((a, b) => a + b, 0);
  return { busy: total - idle, total };
}

/**
 * Waits until the machine is idle (under 10% busy over 200 ms), at most
 * `maxMs`, so one measurement does not pay for the background work of the
 * previous one (Squid writing out the object it just cached, writeback).
 * Returns how long it waited.
 */
export async function settle(maxMs = 5000): Promise<number> {
  const t0 = performance.now();
  for (;;) {
    const a = await cpuTicks();
    await new Promise((r) => setTimeout(r, 200));
    const b = await cpuTicks();
    const busy = (b.busy - a.busy) / Math.max(1, b.total - a.total);
    const waited = performance.now() - t0;
    if (busy < 0.1 || waited >= maxMs) return waited;
  }
}

export function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

export interface WrkResult {
  rps: number;
  p50ms: number;
  p99ms: number;
  non2xx: number;
}

function toMs(v: string, unit: string): number {
  const n = Number(v);
  return unit === 'us'
    ? n / 1000
    : unit === 'ms'
      ? n
      : unit === 's'
        ? n * 1000
        : unit === 'm'
          ? n * 60_000
          : n;
}

/** wrk -t1 for c=1, -t2 otherwise; `script` is a Lua file cycling paths. */
export async function wrk(url: string, c: number, seconds: number, script: string): Promise<WrkResult> {
  const t = c === 1 ? 1 : 2;
  const { stdout } = await run(
    'wrk',
    [`-t${t}`, `-c${c}`, `-d${seconds}s`, '--latency', '--timeout', '10s', '-s', script, url],
    { maxBuffer: 1 << 20 },
  );
  const rps = Number(/Requests\/sec:\s+([\d.]+)/.exec(stdout)?.[1] ?? Number.NaN);
  const lat = (pct: string) => {
    const m = new RegExp(`^\\s+${pct}%\\s+([\\d.]+)(us|ms|s|m)\\s*$`, 'm').exec(stdout);
    return m ? toMs(m[1]!, m[2]!) : Number.NaN;
  };
  const non2xx = Number(/Non-2xx or 3xx responses:\s+(\d+)/.exec(stdout)?.[1] ?? 0);
  return { rps, p50ms: lat('50'), p99ms: lat('99'), non2xx };
}

/** A wrk Lua script that cycles through `paths`. */
export async function wrkScript(file: string, paths: string[]): Promise<string> {
  const list = paths.map((p) => JSON.stringify(p)).join(',\n');
  await writeFile(
    file,
    `local paths = {\n${list}\n}\nlocal i = 0\nrequest = function()\n  i = i + 1\n  if i > #paths then i = 1 end\n  return wrk.format("GET", paths[i])\nend\n`,
  );
  return file;
}

export interface CurlResult {
  code: number;
  bytes: number;
  /** MB/s (10^6 bytes) over the whole transfer, redirect included. */
  mbps: number;
  ttfbMs: number;
  totalMs: number;
}

/** Follow redirects, discard the body, give up after 5 minutes. */
const CURL_QUIET = ['-s', '-L', '-o', '/dev/null', '--max-time', '300'];

export async function curl(url: string, extra: string[] = []): Promise<CurlResult> {
  const { stdout } = await run('curl', [
    ...CURL_QUIET,
    '-w',
    '%{http_code} %{size_download} %{time_starttransfer} %{time_total}',
    ...extra,
    url,
  ]);
  const [code, bytes, ttfb, total] = stdout.trim().split(' ').map(Number) as [number, number, number, number];
  return { code, bytes, mbps: bytes / total / 1e6, ttfbMs: ttfb * 1000, totalMs: total * 1000 };
}

export interface ClientTimes {
  status: number;
  bytes: number;
  /** From the common start: first body byte, and end of body. */
  firstByteMs: number;
  doneMs: number;
}

/** GET following redirects; times are relative to `t0` (performance.now()). */
export function getTimed(url: string, t0: number, hops = 3): Promise<ClientTimes> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      if (
        res.statusCode &&
        res.statusCode >= 300 &&
        res.statusCode < 400 &&
        res.headers.location &&
        hops > 0
      ) {
        res.resume();
        getTimed(new URL(res.headers.location, url).toString(), t0, hops - 1).then(resolve, reject);
        return;
      }
      let bytes = 0;
      let first = Number.NaN;
      res.on('data', (c: Buffer) => {
        if (bytes === 0) first = performance.now() - t0;
        bytes += c.length;
      });
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, bytes, firstByteMs: first, doneMs: performance.now() - t0 }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
  });
}

/**
 * GET with curl (following redirects): one process per client, so many
 * concurrent clients do not share one event loop (a single Node process
 * reading 50 × 100 MiB was the bottleneck of the coalescing figure).
 * doneMs: when the process exited, relative to `t0`. firstByteMs: curl's
 * time_starttransfer, i.e. from this client's own request start (process
 * start-up under load is not the server's latency) to the first response
 * byte (the streamer sends headers and body bytes together).
 */
export async function curlTimed(url: string, t0: number): Promise<ClientTimes> {
  const r = await run('curl', [...CURL_QUIET, '-w', CURL_TIMES, url]).catch((e: { stdout?: string }) => ({
    stdout: e.stdout ?? '',
  }));
  return curlTimes(r.stdout, performance.now() - t0);
}

/** curl's -w format read by curlTimes. */
const CURL_TIMES = '%{http_code} %{size_download} %{time_starttransfer}';

/** ClientTimes from curl's CURL_TIMES output (nothing printed: all zero). */
function curlTimes(out: string, doneMs: number): ClientTimes {
  const [status, bytes, start] = (out.trim() || '0 0 0').split(' ').map(Number) as [number, number, number];
  return { status, bytes, firstByteMs: start * 1000, doneMs };
}

/**
 * `n` concurrent curl clients of `url`, started before the clock starts:
 * each curl process is spawned reading its config (the URL) from stdin, and
 * once all are up they are released together, so the last client does not
 * start seconds late because the first ones already load the machine
 * (spawning 50 processes while 50 transfers run took 2 s here). Times are
 * from the release, as curlTimed gives them.
 */
export async function curlTogether(url: string, n: number): Promise<ClientTimes[]> {
  const clients = Array.from({ length: n }, () =>
    spawn('curl', [...CURL_QUIET, '-w', CURL_TIMES, '-K', '-'], {
      stdio: ['pipe', 'pipe', 'ignore'],
    }),
  );
  await Promise.all(clients.map((c) => once(c, 'spawn')));
  await new Promise((r) => setTimeout(r, 200));
  const t0 = performance.now();
  for (const c of clients) c.stdin!.end(`url = "${url}"\n`);
  return Promise.all(
    clients.map(async (c) => {
      let out = '';
      c.stdout!.on('data', (d: Buffer) => {
        out += d.toString();
      });
      await once(c, 'close');
      return curlTimes(out, performance.now() - t0);
    }),
  );
}

/** Child processes started by the bench; all are stopped by stopAll(). */
export class Children {
  private list: ChildProcess[] = [];

  spawn(cmd: string, args: string[], env: NodeJS.ProcessEnv, log?: string): ChildProcess {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    this.list.push(child);
    if (log) {
      // Both streams: `run` daemons log on stdout, errors go to stderr.
      const chunks: string[] = [];
      child.stdout?.on('data', (d: Buffer) => chunks.push(d.toString()));
      child.stderr?.on('data', (d: Buffer) => chunks.push(d.toString()));
      child.on('exit', () => void writeFile(log, chunks.join('')).catch(() => {}));
    } else child.stderr?.resume();
    return child;
  }

  /** SIGTERM, wait up to `ms`, then SIGKILL. */
  async stop(child: ChildProcess, ms = 10_000): Promise<void> {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), ms);
    await once(child, 'exit').catch(() => {});
    clearTimeout(timer);
    this.list = this.list.filter((c) => c !== child);
  }

  async stopAll(): Promise<void> {
    for (const c of [...this.list].reverse()) await this.stop(c);
  }
}

/** VmRSS and VmHWM of a process, MiB. */
export async function memoryOf(pid: number): Promise<{ rss: number; hwm: number }> {
  const s = await readFile(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(s)?.[1] ?? Number.NaN);
  return { rss: kb('VmRSS') / 1024, hwm: kb('VmHWM') / 1024 };
}
