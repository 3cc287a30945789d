/**
 * Fixtures for the queue and download-task tests: a temp root with a config
 * file (rewritable once ports are known), signing keys, the test database,
 * a local upstream that counts GETs per path (with slow and corrupt modes),
 * an in-process streamer daemon, and seeded repos/units/catalog/queue.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import { catalogEntryId } from '../../src/catalog/index.ts';
import { type Config, parseConfig, rootedPaths } from '../../src/config.ts';
import { createStreamer, type Streamer } from '../../src/daemons/streamer.ts';
import { connect, type Database, migrate, newDeferredEntry, type UnitFile } from '../../src/db/index.ts';
import { silentLogger } from '../../src/log.ts';
import { generateKeys } from '../../src/signing/index.ts';
import { hashFile, unitStoragePath } from '../../src/storage/index.ts';
import { BIN, ROOT } from './cli.ts';
import { mongoUrl } from './db.ts';
import { toToml } from './env.ts';
import { listenForTestFile } from './upstream.ts';

export type Sections = Record<string, Record<string, unknown>>;

export interface TaskEnv {
  root: string;
  configPath: string;
  config: Config;
  db: Database;
  dbName: string;
  env: NodeJS.ProcessEnv;
  /** Rewrites the config file (and `config`) with these sections merged in. */
  reconfigure(extra: Sections): Promise<void>;
}

let n = 0;

function merge(a: Sections, b: Sections): Sections {
  const out: Sections = { ...a };
  for (const [k, v] of Object.entries(b)) out[k] = { ...(out[k] ?? {}), ...v };
  return out;
}

export async function taskEnv(label: string, extra: Sections = {}): Promise<TaskEnv> {
  const root = await mkdtemp(path.join(tmpdir(), `pulp-lazy-${label}-`));
  const dbName = `t_${label.replace(/[^A-Za-z0-9]/g, '_').slice(0, 20)}_${process.pid}_${n++}`;
  let sections = merge(
    {
      database: { name: dbName },
      paths: { ...rootedPaths(root) },
      log: { level: 'warn' },
      streamer: { listen: '127.0.0.1:0' },
    },
    extra,
  );
  const configPath = path.join(root, 'config.toml');
  const env = { ...process.env, MONGODB_URL: mongoUrl(), PULP_LAZY_CONFIG: configPath };
  const db = await connect(mongoUrl(), dbName);
  await migrate(db);
  const te: TaskEnv = {
    root,
    configPath,
    config: parseConfig(JSON.parse(JSON.stringify(sections)), configPath, env),
    db,
    dbName,
    env,
    async reconfigure(more) {
      sections = merge(sections, more);
      await writeFile(configPath, toToml(sections));
      te.config = parseConfig(JSON.parse(JSON.stringify(sections)), configPath, env);
    },
  };
  await te.reconfigure({});
  await generateKeys(te.config.paths.keys);
  after(async () => {
    await db.db.dropDatabase().catch(() => {});
    await db.close();
    await rm(root, { recursive: true, force: true });
  });
  return te;
}

/** Starts the streamer daemon in-process and points the tasks' proxy URL at it (redirect.path "/"). */
export async function startTaskStreamer(te: TaskEnv): Promise<{ streamer: Streamer; port: number }> {
  const streamer = createStreamer(te.config, { db: te.db, logger: silentLogger });
  const addr = (await streamer.listen()) as AddressInfo;
  after(() => streamer.close({ deadlineMs: 1000 }));
  await te.reconfigure({
    redirect: { scheme: 'http', host: '127.0.0.1', port: addr.port, path: '/' },
    tasks: { fetch: 'proxy' },
  });
  return { streamer, port: addr.port };
}

export interface Upstream {
  base: string;
  files: Map<string, Buffer>;
  /** GETs per path. */
  gets: Map<string, number>;
  getsOf(p: string): number;
  /** Paths served with their bytes altered (same size). */
  corrupt: Set<string>;
  /** Milliseconds to wait between 1 KiB chunks (0: send at once). */
  delayMs: number;
  /** GET responses open now. */
  open: number;
  /** The most GET responses ever open at once. */
  maxOpen: number;
  server: http.Server;
}

export async function startUpstream(): Promise<Upstream> {
  const up: Upstream = {
    base: '',
    files: new Map(),
    gets: new Map(),
    getsOf: (p) => up.gets.get(p) ?? 0,
    corrupt: new Set(),
    delayMs: 0,
    open: 0,
    maxOpen: 0,
    server: http.createServer((req, res) => {
      const p = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
      if (req.method === 'GET') up.gets.set(p, (up.gets.get(p) ?? 0) + 1);
      const body = up.files.get(p);
      if (!body) {
        res.writeHead(404).end('no such file');
        return;
      }
      let out = body;
      if (up.corrupt.has(p)) {
        out = Buffer.from(body);
        out[0] = out[0]! ^ 0xff;
      }
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': out.length });
      if (req.method === 'HEAD') {
        res.end();
        return;
      }
      up.open++;
      up.maxOpen = Math.max(up.maxOpen, up.open);
      res.on('close', () => up.open--);
      if (up.delayMs <= 0) {
        res.end(out);
        return;
      }
      let pos = 0;
      let timer: NodeJS.Timeout | undefined;
      res.on('close', () => clearTimeout(timer));
      const step = () => {
        if (res.destroyed) return;
        const next = Math.min(pos + 1024, out.length);
        res.write(out.subarray(pos, next));
        pos = next;
        if (pos >= out.length) res.end();
        else timer = setTimeout(step, up.delayMs);
      };
      step();
    }),
  };
  up.base = `http://127.0.0.1:${await listenForTestFile(up.server)}`;
  return up;
}

/** Deterministic pseudo-random bytes. */
export function bytes(size: number, seed: number | string): Buffer {
  const out = Buffer.allocUnsafe(size);
  let block = createHash('sha256').update(`seed:${seed}`).digest();
  for (let pos = 0; pos < size; pos += block.length) {
    block.copy(out, pos, 0, Math.min(block.length, size - pos));
    block = createHash('sha256').update(block).digest();
  }
  return out;
}

export const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

export interface SeedFile {
  /** Path inside the unit (may contain folders). */
  relative: string;
  body: Buffer;
}

export interface SeededUnit {
  id: string;
  files: Array<UnitFile & { upstreamPath: string; body: Buffer }>;
}

/**
 * Inserts a repository with `units` (each a list of files), their catalog
 * entries (served by `up`), repo_content_units and, with `queue`, one
 * pending deferred entry per unit. Bulk inserts, so thousands are cheap.
 */
export async function seedRepo(
  te: TaskEnv,
  up: Upstream,
  name: string,
  units: SeedFile[][],
  opts: { queue?: boolean; type?: string } = {},
): Promise<SeededUnit[]> {
  const type = opts.type ?? 'file';
  const importer = `imp-${name}`;
  await te.db.repos.insertOne({
    _id: name,
    type: 'file',
    feed: `${up.base}/`,
    importer_id: importer,
    upstream: { tls_verify: true },
    published_path: name,
    created_at: new Date(),
    last_sync: { finished_at: new Date(), revision: 1, units: units.length, added: units.length, removed: 0 },
  });
  const now = new Date();
  const seeded: SeededUnit[] = units.map((files, i) => {
    const id = createHash('sha256').update(`${name}:${i}`).digest('hex');
    const unitDir = unitStoragePath(te.config.paths.storage, type, id, 'x');
    return {
      id,
      files: files.map((f) => {
        const upstreamPath = `/${name}/${i}/${f.relative}`;
        up.files.set(upstreamPath, f.body);
        return {
          relative_path: f.relative,
          size: f.body.length,
          checksum: sha256(f.body),
          checksum_algorithm: 'sha256' as const,
          storage_path:
            files.length === 1
              ? unitStoragePath(te.config.paths.storage, type, id, path.basename(f.relative))
              : path.join(path.dirname(unitDir), f.relative),
          upstreamPath,
          body: f.body,
        };
      }),
    };
  });
  const chunk = <T>(xs: T[]) =>
    Array.from({ length: Math.ceil(xs.length / 1000) }, (_, i) => xs.slice(i * 1000, i * 1000 + 1000));
  for (const part of chunk(seeded)) {
    await te.db.units.insertMany(
      part.map((u) => ({
        _id: u.id,
        unit_type_id: type,
        unit_key: { name: u.id },
        files: u.files.map(({ upstreamPath: _u, body: _b, ...f }) => f),
        downloaded: false,
        download_lease: null,
        created_at: now,
      })),
    );
    await te.db.catalog.insertMany(
      part.flatMap((u) =>
        u.files.map((f) => ({
          _id: catalogEntryId(importer, 1, f.storage_path),
          path: f.storage_path,
          importer_id: importer,
          unit_id: u.id,
          unit_type_id: type,
          url: `${up.base}${f.upstreamPath}`,
          checksum: f.checksum,
          checksum_algorithm: f.checksum_algorithm,
          size: f.size,
          revision: 1,
        })),
      ),
    );
    await te.db.repoContentUnits.insertMany(
      part.flatMap((u) =>
        u.files.map((f) => ({
          repo_id: name,
          unit_id: u.id,
          unit_type_id: type,
          relative_path: `${u.id}/${f.relative_path}`,
        })),
      ),
    );
    if (opts.queue) {
      await te.db.deferred.insertMany(
        part.map((u) => newDeferredEntry({ unit_id: u.id, unit_type_id: type }, now)),
      );
    }
  }
  return seeded;
}

/** `count` single-file units of `size` bytes each. */
export function smallUnits(count: number, size: number, seed = 'u'): SeedFile[][] {
  return Array.from({ length: count }, (_, i) => [
    { relative: `f-${i}.bin`, body: bytes(size, `${seed}${i}`) },
  ]);
}

/** Asserts every file of every downloaded unit is in storage with the right checksum; returns counts. */
export async function checkStorage(te: TaskEnv): Promise<{ downloaded: number; notDownloaded: number }> {
  const units = await te.db.units.find({}).toArray();
  let downloaded = 0;
  for (const u of units) {
    if (!u.downloaded) continue;
    downloaded++;
    for (const f of u.files) {
      const got = await hashFile(f.storage_path, f.checksum_algorithm).catch(() => undefined);
      assert.ok(got, `unit ${u._id} is marked downloaded but ${f.storage_path} is missing`);
      assert.equal(
        got.digest,
        f.checksum,
        `unit ${u._id} is marked downloaded but ${f.storage_path} is corrupt`,
      );
    }
  }
  return { downloaded, notDownloaded: units.length - downloaded };
}

/** Files left in a folder (none when it does not exist). */
export async function filesIn(dir: string): Promise<string[]> {
  return readdir(dir).catch(() => []);
}

export function tasksTempDir(te: TaskEnv): string {
  return path.join(te.config.paths.working, 'tasks', 'tmp');
}

export interface Spawned {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Spawns the built CLI (bin/pulp-lazy) with the env's config; killed after the test file if still running. */
export function spawnCli(te: TaskEnv, args: string[]): Spawned {
  const child = spawn(process.execPath, [BIN, ...args], {
    cwd: ROOT,
    env: te.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout!.on('data', (c: Buffer) => {
    out += c;
  });
  child.stderr!.on('data', (c: Buffer) => {
    err += c;
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => resolve({ code, signal })),
  );
  after(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return { child, stdout: () => out, stderr: () => err, exited };
}

/** Runs the CLI to the end. */
export async function runCliIn(
  te: TaskEnv,
  args: string[],
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const s = spawnCli(te, args);
  const { code } = await s.exited;
  return { code, stdout: s.stdout(), stderr: s.stderr() };
}

/** JSON log lines of a process's stderr. */
export function logLines(stderr: string): Array<Record<string, unknown>> {
  return stderr
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

export async function ensureDir(p: string): Promise<void> {
  await mkdir(p, { recursive: true });
}
