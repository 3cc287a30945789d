/**
 * Shared fixtures of the reliability suite (test/reliability/): the long
 * mode switch, a seeded PRNG, CLI processes with a raised fd limit, /proc
 * readings (fd count, RSS, which process owns a loopback connection), a
 * local upstream with scripted faults, raw HTTP requests that go out exactly
 * as written, and the storage/queue invariants every scenario ends with.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { readdirSync, readFileSync, readlinkSync } from 'node:fs';
import { readdir, readFile, stat } from 'node:fs/promises';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { after } from 'node:test';
import { WebSocket } from 'undici';
import { type Database, newDeferredEntry } from '../../src/db/index.ts';
import { buildRepo, createRepo } from '../../src/repos/index.ts';
import { hashFile, unitId, unitStoragePath } from '../../src/storage/index.ts';
import { BIN, ROOT } from './cli.ts';
import { syncIn } from './sync.ts';

/** `npm run test:long`: the long versions of the load tests. */
export const LONG = process.env.PULP_LAZY_LONG === '1';

// --- seeded randomness -------------------------------------------------------

export interface Rng {
  seed: number;
  /** Uniform in [0, 1). */
  next(): number;
  /** Integer in [0, n). */
  int(n: number): number;
  pick<T>(xs: readonly T[]): T;
  bytes(n: number): Buffer;
}

/** mulberry32: small, fast, good enough for fuzzing; the seed makes a run reproducible. */
export function rng(seed: number): Rng {
  let a = seed >>> 0;
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const r: Rng = {
    seed,
    next,
    int: (n) => Math.floor(next() * n),
    pick: (xs) => xs[Math.floor(next() * xs.length)]!,
    bytes: (n) => Buffer.from(Array.from({ length: n }, () => Math.floor(next() * 256))),
  };
  return r;
}

/**
 * The fuzz seed: PULP_LAZY_FUZZ_SEED when set (to replay a failure), else a
 * fresh one. Printed either way, so any failure can be reproduced.
 */
export function fuzzSeed(label: string): number {
  const fromEnv = process.env.PULP_LAZY_FUZZ_SEED;
  const seed = fromEnv ? Number(fromEnv) >>> 0 : (Math.random() * 2 ** 32) >>> 0;
  console.log(`# ${label}: fuzz seed ${seed} (replay with PULP_LAZY_FUZZ_SEED=${seed})`);
  return seed;
}

// --- processes -----------------------------------------------------------------

export interface Proc {
  child: ChildProcess;
  pid: number;
  stdout(): string;
  stderr(): string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  alive(): boolean;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

/** Keeps the last `max` characters of a stream (daemons that log for minutes). */
function tailBuffer(max: number) {
  let text = '';
  return {
    add(c: Buffer) {
      text += c.toString();
      if (text.length > max * 2) text = text.slice(-max);
    },
    get: () => text.slice(-max),
  };
}

/** Every process spawnPulp started and not yet seen exit: SIGKILLed when the test process exits. */
const live = new Set<ChildProcess>();
process.on('exit', () => {
  for (const c of live) c.kill('SIGKILL');
});

/**
 * Runs the built CLI (`bin/pulp-lazy ARGS`) with the fd limit raised to
 * `nofile` (we are root in CI), through `exec` so the pid is node's own.
 * Killed (SIGKILL) by an after() hook of the current test (or file) if still
 * running, unless `keepAfterTest` (then the caller stops it; it is killed
 * at the latest when the test process exits).
 */
export function spawnPulp(
  args: string[],
  env: NodeJS.ProcessEnv,
  opts: { nofile?: number; keep?: number; keepAfterTest?: boolean } = {},
): Proc {
  const quoted = [process.execPath, BIN, ...args].map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  const child = spawn('bash', ['-c', `ulimit -n ${opts.nofile ?? 65536} 2>/dev/null; exec ${quoted}`], {
    cwd: ROOT,
    env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const out = tailBuffer(opts.keep ?? 256 * 1024);
  const err = tailBuffer(opts.keep ?? 256 * 1024);
  child.stdout!.on('data', (c: Buffer) => out.add(c));
  child.stderr!.on('data', (c: Buffer) => err.add(c));
  live.add(child);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      live.delete(child);
      resolve({ code, signal });
    }),
  );
  const alive = () => child.exitCode === null && child.signalCode === null;
  const proc: Proc = {
    child,
    pid: child.pid!,
    stdout: out.get,
    stderr: err.get,
    exited,
    alive,
    async stop(graceMs = 10_000) {
      if (!alive()) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
  if (!opts.keepAfterTest) {
    after(() => {
      if (alive()) child.kill('SIGKILL');
    });
  }
  return proc;
}

/** Runs the CLI to its end. */
export async function runPulp(
  args: string[],
  env: NodeJS.ProcessEnv,
): Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }> {
  const p = spawnPulp(args, env);
  const { code, signal } = await p.exited;
  return { code, signal, stdout: p.stdout(), stderr: p.stderr() };
}

/** Polls `check` every 50 ms until it is true; fails after `maxMs` (a hang guard, not a measurement). */
export async function until(
  check: () => boolean | Promise<boolean>,
  what: string | (() => string),
  maxMs = 30_000,
): Promise<void> {
  const start = Date.now();
  while (!(await check())) {
    if (Date.now() - start > maxMs)
      assert.fail(`still not true after ${maxMs} ms: ${typeof what === 'function' ? what() : what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

/** Waits until `url` answers 200 (a daemon finished starting). */
export async function waitHealthy(url: string, proc?: Proc, maxMs = 30_000): Promise<void> {
  await until(
    async () => {
      if (proc && !proc.alive()) assert.fail(`process exited while starting: ${proc.stderr().slice(-2000)}`);
      return (await rawRequest(url).catch(() => undefined))?.status === 200;
    },
    `${url} answers 200`,
    maxMs,
  );
}

// --- /proc ---------------------------------------------------------------------------

/** Open file descriptors of a process. */
export async function fdCount(pid: number): Promise<number> {
  return (await readdir(`/proc/${pid}/fd`)).length;
}

/** Resident set size of a process, in bytes. */
export async function rssBytes(pid: number): Promise<number> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const m = /^VmRSS:\s+(\d+) kB/m.exec(status);
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]) * 1024;
}

/** What a Node process holds once garbage is collected (bytes), read through its inspector. */
export interface HeapReading {
  /** V8 heap in use after a full GC: objects still referenced. */
  heapUsed: number;
  /** Buffers and other memory V8 tracks outside its heap, after the same GC. */
  external: number;
  rss: number;
}

/**
 * Forces a full garbage collection in a process started with
 * `--inspect=127.0.0.1:0` (NODE_OPTIONS) and reads `process.memoryUsage()`
 * there, over the inspector protocol (Chrome DevTools Protocol on a
 * WebSocket). Unlike RSS, which a Node process rarely gives back after a
 * burst, the heap after a GC grows only with what is still referenced: a
 * leak. The inspector session is closed before returning.
 */
export async function heapAfterGc(proc: Proc): Promise<HeapReading> {
  const wsUrl = /ws:\/\/127\.0\.0\.1:\d+\/[\w-]+/.exec(proc.stderr())?.[0];
  if (!wsUrl)
    throw new Error(`pid ${proc.pid} has no inspector (start it with NODE_OPTIONS=--inspect=127.0.0.1:0)`);
  const ws = new WebSocket(wsUrl);
  await new Promise<void>((resolve, reject) => {
    ws.onopen = () => resolve();
    ws.onerror = () => reject(new Error(`inspector of pid ${proc.pid} refused the connection`));
  });
  const replies = new Map<number, (result: unknown) => void>();
  ws.onmessage = (ev) => {
    const m = JSON.parse(String(ev.data)) as { id?: number; result?: unknown };
    if (m.id !== undefined) replies.get(m.id)?.(m.result);
  };
  let nextId = 0;
  const call = (method: string, params: object = {}) =>
    new Promise<unknown>((resolve) => {
      const id = ++nextId;
      replies.set(id, resolve);
      ws.send(JSON.stringify({ id, method, params }));
    });
  try {
    // Two passes: the first may only queue finalizers (closed sockets, file handles).
    await call('HeapProfiler.collectGarbage');
    await new Promise((r) => setTimeout(r, 200));
    await call('HeapProfiler.collectGarbage');
    const reply = (await call('Runtime.evaluate', {
      expression: 'JSON.stringify(process.memoryUsage())',
      returnByValue: true,
    })) as { result: { value: string } };
    const m = JSON.parse(reply.result.value) as { heapUsed: number; external: number; rss: number };
    return { heapUsed: m.heapUsed, external: m.external, rss: m.rss };
  } finally {
    const closed = new Promise((r) => {
      ws.onclose = r;
    });
    ws.close();
    await closed;
  }
}

/** Reads the fd count until it stops changing (connections closing after a load), bounded. */
export async function settledFdCount(pid: number, maxMs = 20_000): Promise<number> {
  let last = await fdCount(pid);
  let stable = 0;
  const start = Date.now();
  while (stable < 5 && Date.now() - start < maxMs) {
    await new Promise((r) => setTimeout(r, 200));
    const now = await fdCount(pid);
    stable = now === last ? stable + 1 : 0;
    last = now;
  }
  return last;
}

/**
 * The pid (among `pids`) that owns the client end of a loopback TCP
 * connection whose client port is `port`: /proc/net/tcp gives the socket
 * inode, /proc/<pid>/fd the owner. Undefined when none of them holds it.
 */
export function peerPid(port: number, pids: readonly number[]): number | undefined {
  const hexPort = port.toString(16).toUpperCase().padStart(4, '0');
  const inodes = new Set<string>();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10) continue;
      if (f[1]!.endsWith(`:${hexPort}`)) inodes.add(f[9]!);
    }
  }
  inodes.delete('0');
  if (inodes.size === 0) return undefined;
  for (const pid of pids) {
    let fds: string[] = [];
    try {
      fds = readdirSync(`/proc/${pid}/fd`);
    } catch {
      continue;
    }
    for (const fd of fds) {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
        if (m && inodes.has(m[1]!)) return pid;
      } catch {
        // fd closed meanwhile
      }
    }
  }
  return undefined;
}

// --- a local upstream with faults ------------------------------------------------------

/**
 * What the upstream does for a path:
 *   ok       the bytes, Content-Length set
 *   slow     the bytes in 16 KiB pieces every `slowMs`
 *   reset    half the bytes, then a TCP reset
 *   stall    half the bytes, then nothing (the connection stays open)
 *   short    Content-Length of the full size, half the bytes, then the connection closes
 *   long     no Content-Length, the bytes followed by 4 KiB more
 *   corrupt  same size, one byte flipped in the middle
 *   badlength Content-Length one byte more than the file, and that many bytes
 *   status500 an HTTP 500
 */
export type FaultMode =
  | 'ok'
  | 'slow'
  | 'reset'
  | 'stall'
  | 'short'
  | 'long'
  | 'corrupt'
  | 'badlength'
  | 'status500';

export interface FaultyUpstream {
  base: string;
  files: Map<string, Buffer>;
  modes: Map<string, FaultMode>;
  /** GETs per path. */
  gets: Map<string, number>;
  getsOf(p: string): number;
  /** GETs per path and requesting process (when `pids` is set). */
  getsByPid: Map<string, Map<number | 'unknown', number>>;
  /** Processes to attribute GETs to (see peerPid). */
  pids: number[];
  /** Body bytes written per path (all requests). */
  sent: Map<string, number>;
  slowMs: number;
  server: http.Server;
  close(): Promise<void>;
}

export async function startFaultyUpstream(): Promise<FaultyUpstream> {
  const stalled = new Set<http.ServerResponse>();
  const up: FaultyUpstream = {
    base: '',
    files: new Map(),
    modes: new Map(),
    gets: new Map(),
    getsOf: (p) => up.gets.get(p) ?? 0,
    getsByPid: new Map(),
    pids: [],
    sent: new Map(),
    slowMs: 5,
    server: http.createServer((req, res) => {
      const p = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
      if (req.method === 'GET') {
        up.gets.set(p, (up.gets.get(p) ?? 0) + 1);
        if (up.pids.length > 0) {
          const who = peerPid(req.socket.remotePort ?? 0, up.pids) ?? 'unknown';
          const m = up.getsByPid.get(p) ?? new Map<number | 'unknown', number>();
          m.set(who, (m.get(who) ?? 0) + 1);
          up.getsByPid.set(p, m);
        }
      }
      const body = up.files.get(p);
      if (!body) {
        res.writeHead(404, { 'content-type': 'text/plain' }).end('no such file');
        return;
      }
      const mode = up.modes.get(p) ?? 'ok';
      const count = (n: number) => up.sent.set(p, (up.sent.get(p) ?? 0) + n);
      const half = body.subarray(0, body.length >> 1);
      const head = (extra: http.OutgoingHttpHeaders = { 'content-length': body.length }) =>
        res.writeHead(200, { 'content-type': 'application/octet-stream', ...extra });
      if (req.method === 'HEAD') {
        head();
        res.end();
        return;
      }
      switch (mode) {
        case 'ok':
          head();
          count(body.length);
          res.end(body);
          return;
        case 'slow': {
          head();
          let pos = 0;
          let timer: NodeJS.Timeout | undefined;
          res.on('close', () => clearTimeout(timer));
          const step = () => {
            if (res.destroyed) return;
            const next = Math.min(pos + 16 * 1024, body.length);
            res.write(body.subarray(pos, next));
            count(next - pos);
            pos = next;
            if (pos >= body.length) res.end();
            else timer = setTimeout(step, up.slowMs);
          };
          step();
          return;
        }
        case 'reset':
          head();
          res.write(half, () => setTimeout(() => req.socket.resetAndDestroy(), 20));
          count(half.length);
          return;
        case 'stall':
          head();
          res.write(half);
          count(half.length);
          stalled.add(res);
          res.on('close', () => stalled.delete(res));
          return;
        case 'short':
          head();
          res.write(half, () => setTimeout(() => req.socket.destroy(), 20));
          count(half.length);
          return;
        case 'long':
          head({ 'transfer-encoding': 'chunked' });
          count(body.length + 4096);
          res.end(Buffer.concat([body, Buffer.alloc(4096, 0x55)]));
          return;
        case 'corrupt': {
          const bad = Buffer.from(body);
          bad[bad.length >> 1] = bad[bad.length >> 1]! ^ 0xff;
          head();
          count(bad.length);
          res.end(bad);
          return;
        }
        case 'badlength':
          head({ 'content-length': body.length + 1 });
          count(body.length + 1);
          res.end(Buffer.concat([body, Buffer.from('x')]));
          return;
        case 'status500':
          res.writeHead(500, { 'content-type': 'text/plain' }).end('upstream broke');
          return;
      }
    }),
    async close() {
      for (const r of stalled) r.destroy();
      up.server.closeAllConnections();
      await new Promise<void>((r) => up.server.close(() => r()));
    },
  };
  up.server.listen(0, '127.0.0.1');
  await once(up.server, 'listening');
  up.base = `http://127.0.0.1:${(up.server.address() as AddressInfo).port}`;
  after(() => up.close());
  return up;
}

// --- raw HTTP ---------------------------------------------------------------------------

export interface RawReply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** The whole message arrived (false: the connection was cut, or the reply never came). */
  complete: boolean;
  error?: string;
}

/**
 * One GET on a fresh connection with the request target sent byte for byte
 * (no URL normalisation, no client-side validation). Never rejects: a cut
 * or refused connection is a reply with `complete: false`.
 */
export function rawRequest(
  url: string,
  opts: { target?: string; method?: string; headers?: Record<string, string>; timeoutMs?: number } = {},
): Promise<RawReply> {
  const u = new URL(url);
  const target = opts.target ?? url.slice(u.origin.length);
  return new Promise((resolve) => {
    const socket = net.connect({ host: u.hostname, port: Number(u.port) });
    const chunks: Buffer[] = [];
    let done = false;
    const finish = (error?: string) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(parseRaw(Buffer.concat(chunks), error));
    };
    const timer = setTimeout(() => finish('timeout'), opts.timeoutMs ?? 60_000);
    socket.on('connect', () => {
      const headers = { host: u.host, connection: 'close', ...(opts.headers ?? {}) };
      const lines = [`${opts.method ?? 'GET'} ${target} HTTP/1.1`];
      for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
      socket.write(Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'));
    });
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('end', () => finish());
    socket.on('error', (err) => finish(err.message));
  });
}

function parseRaw(buf: Buffer, error: string | undefined): RawReply {
  const sep = buf.indexOf('\r\n\r\n');
  if (sep < 0)
    return { status: 0, headers: {}, body: Buffer.alloc(0), complete: false, error: error ?? 'no reply' };
  const lines = buf.subarray(0, sep).toString('latin1').split('\r\n');
  const status = Number(/^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '')?.[1] ?? 0);
  const headers: http.IncomingHttpHeaders = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  let body = buf.subarray(sep + 4);
  let complete = !error;
  const te = String(headers['transfer-encoding'] ?? '');
  if (/chunked/i.test(te)) {
    const out: Buffer[] = [];
    let pos = 0;
    complete = false;
    for (;;) {
      const eol = body.indexOf('\r\n', pos);
      if (eol < 0) break;
      const size = Number.parseInt(body.subarray(pos, eol).toString('latin1'), 16);
      if (!Number.isFinite(size)) break;
      if (size === 0) {
        complete = !error;
        break;
      }
      if (eol + 2 + size > body.length) {
        out.push(body.subarray(eol + 2));
        break;
      }
      out.push(body.subarray(eol + 2, eol + 2 + size));
      pos = eol + 2 + size + 2;
    }
    body = Buffer.concat(out);
  } else if (headers['content-length'] !== undefined) {
    const len = Number(headers['content-length']);
    complete = complete && body.length === len;
    body = body.subarray(0, len);
  }
  return { status, headers, body, complete, ...(error ? { error } : {}) };
}

// --- invariants -------------------------------------------------------------------------

export const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

async function walk(dir: string): Promise<string[]> {
  const out: string[] = [];
  const entries = await readdir(dir, { withFileTypes: true }).catch(() => []);
  for (const e of entries) {
    const full = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...(await walk(full)));
    else out.push(full);
  }
  return out;
}

export interface StorageReport {
  /** Files found in storage (all verified). */
  files: number;
  downloaded: number;
  notDownloaded: number;
}

/**
 * Every file in storage is hashed against the unit that owns it (a file no
 * unit owns, or that is not a regular file, fails), and every unit marked
 * downloaded has all its files there and verified.
 */
export async function verifyStorage(db: Database, storageRoot: string): Promise<StorageReport> {
  const units = await db.units.find({}).toArray();
  const owners = new Map<string, { unit: string; checksum: string; algorithm: string; size: number }>();
  for (const u of units) {
    for (const f of u.files) {
      owners.set(f.storage_path, {
        unit: u._id,
        checksum: f.checksum,
        algorithm: f.checksum_algorithm,
        size: f.size,
      });
    }
  }
  const files = await walk(storageRoot);
  for (const file of files) {
    const owner = owners.get(file);
    assert.ok(owner, `storage holds ${file}, which no unit owns (a stray or half-written file)`);
    const st = await stat(file);
    assert.ok(st.isFile(), `${file} is not a regular file`);
    const got = await hashFile(file, owner.algorithm as 'sha256');
    assert.equal(got.size, owner.size, `${file} (unit ${owner.unit}) has the wrong size: corrupt`);
    assert.equal(got.digest, owner.checksum, `${file} (unit ${owner.unit}) has the wrong bytes: corrupt`);
  }
  const present = new Set(files);
  let downloaded = 0;
  for (const u of units) {
    if (!u.downloaded) continue;
    downloaded++;
    for (const f of u.files) {
      assert.ok(present.has(f.storage_path), `unit ${u._id} is marked downloaded without ${f.storage_path}`);
    }
  }
  return { files: files.length, downloaded, notDownloaded: units.length - downloaded };
}

/**
 * The queue after clients missed `missed` (unit ids): every one of them that
 * is not downloaded either has a deferred_download entry or has all its files
 * in storage; no entry names a unit that does not exist; one entry per unit.
 */
export async function verifyQueue(db: Database, missed: Iterable<string>): Promise<void> {
  const entries = await db.deferred.find({}).toArray();
  const byUnit = new Map<string, number>();
  for (const e of entries) byUnit.set(e.unit_id, (byUnit.get(e.unit_id) ?? 0) + 1);
  for (const [unit, n] of byUnit) assert.equal(n, 1, `unit ${unit} has ${n} deferred_download entries`);
  const ids = [...new Set(missed)];
  const units = await db.units.find({ _id: { $in: [...new Set([...ids, ...byUnit.keys()])] } }).toArray();
  const byId = new Map(units.map((u) => [u._id, u]));
  for (const unit of byUnit.keys()) assert.ok(byId.has(unit), `deferred entry for missing unit ${unit}`);
  for (const id of ids) {
    const u = byId.get(id);
    assert.ok(u, `missed unit ${id} does not exist`);
    if (u.downloaded || byUnit.has(id)) continue;
    for (const f of u.files) {
      const st = await stat(f.storage_path).catch(() => undefined);
      assert.ok(
        st?.isFile() && st.size === f.size,
        `unit ${id} was missed by a client, is not downloaded, not stored and not queued`,
      );
    }
  }
}

/** No stack trace in a CLI's output: node frames or internal paths. */
export function assertNoStackTrace(text: string, what: string): void {
  assert.doesNotMatch(
    text,
    /^\s+at .+\(.*:\d+:\d+\)$|^\s+at .+:\d+:\d+$|node:internal/m,
    `${what}: stack trace`,
  );
}

/** Files below a folder, recursively (none when it does not exist). */
export async function filesBelow(dir: string): Promise<string[]> {
  return walk(dir);
}

/** Runs `fn` on up to `n` items at once. */
export async function mapLimit<T, R>(
  items: readonly T[],
  n: number,
  fn: (x: T, i: number) => Promise<R>,
): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(n, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i]!, i);
      }
    }),
  );
  return out;
}

// --- a synced file repository ---------------------------------------------------------

export interface RepoFile {
  rel: string;
  body: Buffer;
  sha256: string;
  /** Path on the upstream server. */
  upstreamPath: string;
  storagePath: string;
  unitId: string;
}

/**
 * Serves `files` (relative path → bytes) and their PULP_MANIFEST under
 * `/<name>/` on `up`, creates file repository `name` and syncs it (real
 * importer: units, catalog, published links). Nothing is downloaded.
 */
export async function syncFileRepo(
  db: Database,
  paths: { storage: string; published: string; working: string },
  up: Pick<FaultyUpstream, 'base' | 'files'>,
  name: string,
  files: Map<string, Buffer>,
): Promise<Map<string, RepoFile>> {
  const manifest = [...files].map(([rel, b]) => `${rel},${sha256(b)},${b.length}\n`).join('');
  up.files.set(`/${name}/PULP_MANIFEST`, Buffer.from(manifest));
  for (const [rel, b] of files) up.files.set(`/${name}/${rel}`, b);
  await createRepo(db, await buildRepo({ name, type: 'file', feed: `${up.base}/${name}/` }));
  await syncIn(db, paths, name, { timeouts: { connectMs: 10_000, headersMs: 30_000, bodyIdleMs: 30_000 } });
  const out = new Map<string, RepoFile>();
  for (const [rel, body] of files) {
    const sum = sha256(body);
    const storagePath = unitStoragePath(paths.storage, 'file', sum, path.posix.basename(rel));
    out.set(rel, {
      rel,
      body,
      sha256: sum,
      upstreamPath: `/${name}/${rel}`,
      storagePath,
      unitId: unitId('file', { name: path.posix.basename(rel), checksum: sum, size: body.length }),
    });
  }
  return out;
}

/** Queues `unitIds` in deferred_download (what clients' misses with save off, or a sync policy, leave). */
export async function queueUnits(db: Database, unitIds: readonly string[]): Promise<void> {
  const now = new Date();
  if (unitIds.length === 0) return;
  await db.deferred.insertMany(
    unitIds.map((id) => newDeferredEntry({ unit_id: id, unit_type_id: 'file' }, now)),
  );
}
