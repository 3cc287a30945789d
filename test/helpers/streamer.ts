/**
 * Streamer test fixtures: a configured streamer on port 0 with a fresh
 * database, local origin servers with scripted behaviour, seeded
 * repos/units/catalog entries, and a raw HTTP client that reports
 * destroyed connections instead of throwing.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir, stat } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after } from 'node:test';
import type { Config } from '../../src/config.ts';
import { createStreamer, type Streamer } from '../../src/daemons/streamer.ts';
import type { Database, UpstreamSettings } from '../../src/db/index.ts';
import { silentLogger } from '../../src/log.ts';
import { unitId, unitStoragePath } from '../../src/storage/index.ts';
import { testDatabase } from './db.ts';
import { testEnv } from './env.ts';
import { listenForTestFile } from './upstream.ts';

export interface StreamerFixture {
  config: Config;
  db: Database;
  streamer: Streamer;
  /** http://127.0.0.1:port */
  base: string;
  /** The working dir's temp folder (src/storage tempPath). */
  tempDir: string;
}

/** Starts a streamer with `streamer` config overrides (and other sections' in `extra`); closed after the file. */
export async function startStreamer(
  label: string,
  streamer: Record<string, unknown> = {},
  extra: Record<string, Record<string, unknown>> = {},
): Promise<StreamerFixture> {
  const env = await testEnv(label, { ...extra, streamer: { listen: '127.0.0.1:0', ...streamer } });
  const db = await testDatabase(label);
  const s = createStreamer(env.config, { db, logger: silentLogger });
  const addr = (await s.listen()) as AddressInfo;
  after(() => s.close({ deadlineMs: 1000 }));
  return {
    config: env.config,
    db,
    streamer: s,
    base: `http://127.0.0.1:${addr.port}`,
    tempDir: path.join(env.config.paths.working, 'tmp'),
  };
}

export interface Origin {
  base: string;
  /** GET requests received, by path. */
  gets: Map<string, number>;
  getsOf(p: string): number;
  server: http.Server;
}

export type OriginHandler = (req: http.IncomingMessage, res: http.ServerResponse) => void;

/** A local upstream whose behaviour per path is given by `routes` (404 otherwise). */
export async function startOrigin(routes: Record<string, OriginHandler>): Promise<Origin> {
  const gets = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const p = new URL(req.url ?? '/', 'http://x').pathname;
    if (req.method === 'GET') gets.set(p, (gets.get(p) ?? 0) + 1);
    const route = routes[p];
    if (!route) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('no such file');
      return;
    }
    route(req, res);
  });
  const port = await listenForTestFile(server);
  return { base: `http://127.0.0.1:${port}`, gets, getsOf: (p) => gets.get(p) ?? 0, server };
}

/** Origin route: sends `body` at once. */
export function serve(body: Buffer, headers: http.OutgoingHttpHeaders = {}): OriginHandler {
  return (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/x-rpm', 'content-length': body.length, ...headers });
    res.end(body);
  };
}

/** Origin route: waits `headerDelayMs`, then sends `body` in `chunk`-byte pieces every `intervalMs`. */
export function serveSlowly(
  body: Buffer,
  opts: { headerDelayMs?: number; chunk: number; intervalMs: number },
): OriginHandler {
  return (_req, res) => {
    let timer: NodeJS.Timeout | undefined;
    res.on('close', () => clearTimeout(timer));
    timer = setTimeout(() => {
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
      let pos = 0;
      const step = () => {
        if (res.destroyed) return;
        const next = Math.min(pos + opts.chunk, body.length);
        res.write(body.subarray(pos, next));
        pos = next;
        if (pos >= body.length) res.end();
        else timer = setTimeout(step, opts.intervalMs);
      };
      step();
    }, opts.headerDelayMs ?? 0);
  };
}

/** Deterministic pseudo-random bytes (xorshift32, seeded). */
export function bytes(size: number, seed = 1): Buffer {
  const words = new Uint32Array(Math.ceil(size / 4));
  let x = (seed * 2654435761) >>> 0 || 1;
  for (let i = 0; i < words.length; i++) {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    words[i] = x;
  }
  return Buffer.from(words.buffer, 0, size);
}

export function sha256(b: Buffer): string {
  return createHash('sha256').update(b).digest('hex');
}

/**
 * Inserts a repository whose catalog entries carry `importer` (idempotent).
 * Credentials (basic auth, client certificate) go only to the origin of
 * `feed`: give the origin's URL when the test uses them.
 */
export async function addRepo(
  db: Database,
  importer: string,
  upstream: Partial<UpstreamSettings> = {},
  feed = 'http://127.0.0.1/',
): Promise<void> {
  await db.repos.updateOne(
    { _id: importer },
    {
      $set: {
        type: 'file',
        feed,
        importer_id: importer,
        upstream: { tls_verify: true, ...upstream },
        published_path: importer,
        created_at: new Date(),
      },
    },
    { upsert: true },
  );
}

export interface SeedSource {
  importer: string;
  url: string;
  revision?: number;
}

export interface SeedFile {
  name: string;
  /** The correct bytes (size and checksum of the catalog come from them). */
  body: Buffer;
  /** Catalog entries offering the file; created with the given revision (default 1). */
  sources: SeedSource[];
  /** Leave the catalog size unset. */
  noSize?: boolean;
}

/** Inserts one unit with `files` and a catalog entry per source; returns the unit id and storage paths. */
export async function seedUnit(
  fx: Pick<StreamerFixture, 'db' | 'config'>,
  files: SeedFile[],
): Promise<{ unitId: string; paths: string[] }> {
  const key = { names: files.map((f) => f.name), digests: files.map((f) => sha256(f.body)) };
  const id = unitId('file', key);
  const unitFiles = files.map((f) => ({
    relative_path: f.name,
    size: f.body.length,
    checksum: sha256(f.body),
    checksum_algorithm: 'sha256' as const,
    storage_path: unitStoragePath(fx.config.paths.storage, 'file', sha256(f.body), f.name),
  }));
  await fx.db.units.insertOne({
    _id: id,
    unit_type_id: 'file',
    unit_key: key,
    files: unitFiles,
    downloaded: false,
    created_at: new Date(),
  });
  for (const [i, f] of files.entries()) {
    for (const src of f.sources) {
      await fx.db.catalog.insertOne({
        path: unitFiles[i]!.storage_path,
        importer_id: src.importer,
        unit_id: id,
        unit_type_id: 'file',
        url: src.url,
        checksum: unitFiles[i]!.checksum,
        checksum_algorithm: 'sha256',
        ...(f.noSize ? {} : { size: f.body.length }),
        revision: src.revision ?? 1,
      });
    }
  }
  return { unitId: id, paths: unitFiles.map((f) => f.storage_path) };
}

export interface RawResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
  /** True when the whole message arrived (false: the connection was cut). */
  complete: boolean;
  error?: Error;
}

/** One request on a fresh connection; resolves even when the connection is destroyed. */
export function fetchRaw(
  url: string,
  opts: {
    method?: string;
    headers?: http.OutgoingHttpHeaders;
    onResponse?: (res: http.IncomingMessage) => void;
  } = {},
): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    // The path is sent exactly as given (no WHATWG normalization of %2e%2e and the like).
    const u = new URL(url);
    const target = { hostname: u.hostname, port: u.port, path: url.slice(u.origin.length) || '/' };
    const req = http.request(
      { ...target, method: opts.method ?? 'GET', headers: opts.headers, agent: false },
      (res) => {
        opts.onResponse?.(res);
        const chunks: Buffer[] = [];
        let error: Error | undefined;
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', (err) => {
          error = err;
        });
        res.on('close', () => {
          const complete = res.complete && !error;
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks),
            complete,
            error,
          });
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** The storage path as a request path (percent-encoded). */
export function urlFor(base: string, storagePath: string): string {
  return base + storagePath.split('/').map(encodeURIComponent).join('/');
}

/** Polls `check` until it returns true (bounded): for server-side effects that follow the response. */
export async function eventually(
  check: () => boolean | Promise<boolean>,
  what: string,
  maxMs = 10_000,
): Promise<void> {
  for (let waited = 0; !(await check()); waited += 20) {
    if (waited > maxMs) assert.fail(`not true after ${maxMs} ms: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Waits until no upstream fetch is running (cleanup done), bounded. */
export async function settled(fx: StreamerFixture, maxMs = 10_000): Promise<void> {
  const gauge = fx.streamer.metrics.activeFlights;
  for (let waited = 0; gauge.get() !== 0; waited += 20) {
    if (waited > maxMs) assert.fail(`still ${gauge.get()} fetches running after ${maxMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** Files left in the working dir's temp folder. */
export async function tempFiles(fx: Pick<StreamerFixture, 'tempDir'>): Promise<string[]> {
  return readdir(fx.tempDir).catch(() => []);
}

export async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}

/** Asserts the daemon still answers /healthz with 200. */
export async function assertHealthy(fx: StreamerFixture): Promise<void> {
  const r = await fetchRaw(`${fx.base}/healthz`);
  assert.equal(r.status, 200);
  assert.deepEqual(JSON.parse(r.body.toString()), { status: 'ok' });
}
