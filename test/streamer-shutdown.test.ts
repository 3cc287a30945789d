/**
 * Shutdown: `pulp-lazy run streamer` stops accepting on SIGTERM, lets a
 * transfer run until the deadline, cuts it, exits 0 and leaves no temp file;
 * a second signal exits at once. In-process: close() lets a transfer that
 * ends before the deadline finish.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { after, test } from 'node:test';
import { connect, type Database, migrate } from '../src/db/index.ts';
import { ROOT, runDaemon } from './helpers/cli.ts';
import { mongoUrl } from './helpers/db.ts';
import { testEnv } from './helpers/env.ts';
import {
  addRepo,
  bytes,
  exists,
  fetchRaw,
  type RawResponse,
  seedUnit,
  serveSlowly,
  settled,
  sha256,
  startOrigin,
  startStreamer,
  tempFiles,
  urlFor,
} from './helpers/streamer.ts';

const body = bytes(4 * 1024 * 1024, 50);
// About 13 s upstream: much longer than the shutdown deadline of the first test.
const origin = await startOrigin({ '/slow.iso': serveSlowly(body, { chunk: 16 * 1024, intervalMs: 50 }) });

interface Daemon {
  child: ChildProcess;
  base: string;
  logs: Array<Record<string, unknown>>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  tempDir: string;
  unitId: string;
  storagePath: string;
  db: Database;
}

/** Spawns `pulp-lazy run streamer` with a temp config and a seeded slow file. */
async function spawnStreamer(label: string, shutdownTimeout: string): Promise<Daemon> {
  assert.ok(existsSync(path.join(ROOT, 'dist/commands/run.js')), 'run "npm run build:ts" before this test');
  const env = await testEnv(label, {
    streamer: { listen: '127.0.0.1:0', shutdown_timeout: shutdownTimeout },
    log: { level: 'info' },
  });
  const db = await connect(mongoUrl(), env.dbName);
  after(async () => {
    await db.db.dropDatabase().catch(() => {});
    await db.close();
  });
  await migrate(db);
  await addRepo(db, `imp-${label}`);
  const { unitId, paths } = await seedUnit({ db, config: env.config }, [
    { name: `${label}.iso`, body, sources: [{ importer: `imp-${label}`, url: `${origin.base}/slow.iso` }] },
  ]);

  const { child, listen, logs, exited } = await runDaemon('streamer', env.env, 'streamer listening');
  const base = `http://${listen}`;
  const tempDir = path.join(env.config.paths.working, 'tmp');
  return { child, base, logs, exited, tempDir, unitId, storagePath: paths[0]!, db };
}

/** Starts a GET and resolves once body bytes arrived (wrapped: an async function would adopt the promise). */
async function startDownload(url: string): Promise<{ done: Promise<RawResponse> }> {
  let firstBytes!: () => void;
  const gotBytes = new Promise<void>((resolve) => {
    firstBytes = resolve;
  });
  const done = fetchRaw(url, { onResponse: (res) => res.once('data', () => firstBytes()) });
  await gotBytes;
  return { done };
}

test('SIGTERM during a stream: stops accepting, cuts the stream at the deadline, exits 0, no temp file', {
  timeout: 90_000,
}, async () => {
  const d = await spawnStreamer('sigterm', '1500ms');
  const { done: download } = await startDownload(urlFor(d.base, d.storagePath));
  d.child.kill('SIGTERM');

  // New connections are refused while the transfer is still running.
  let refused = false;
  for (let i = 0; i < 100 && !refused; i++) {
    refused = await fetchRaw(`${d.base}/healthz`).then(
      () => false,
      (err: NodeJS.ErrnoException) => err.code === 'ECONNREFUSED',
    );
    if (!refused) await new Promise((r) => setTimeout(r, 20));
  }
  assert.ok(refused, 'the listening socket is closed after SIGTERM');
  assert.equal(d.child.exitCode, null, 'the process waits for the running transfer');

  assert.deepEqual(await d.exited, { code: 0, signal: null });
  const r = await download;
  assert.equal(r.complete, false, 'the transfer was cut at the deadline');
  assert.ok(r.body.length < body.length);
  assert.ok(d.logs.some((l) => l.msg === 'shutting down' && l.signal === 'SIGTERM'));
  assert.ok(d.logs.some((l) => l.msg === 'shutdown deadline reached; aborting transfers'));
  assert.deepEqual(await tempFiles(d), []);
  assert.equal(await exists(d.storagePath), false, 'the cut transfer saved nothing');
  assert.equal((await d.db.units.findOne({ _id: d.unitId }))?.downloaded, false);
});

test('a second signal exits at once with code 1', { timeout: 90_000 }, async () => {
  const d = await spawnStreamer('sigtwice', '60s');
  const { done: download } = await startDownload(urlFor(d.base, d.storagePath));
  d.child.kill('SIGTERM');
  // Wait until the first signal was handled, then send the second.
  for (let i = 0; i < 200 && !d.logs.some((l) => l.msg === 'shutting down'); i++) {
    await new Promise((r) => setTimeout(r, 20));
  }
  d.child.kill('SIGINT');
  assert.deepEqual(await d.exited, { code: 1, signal: null });
  const r = await download;
  assert.equal(r.complete, false, 'the transfer (13 s upstream) did not get to finish');
  assert.ok(d.logs.some((l) => l.msg === 'second signal: exiting now'));
});

test('close() lets a transfer that ends before the deadline finish', { timeout: 60_000 }, async () => {
  const fx = await startStreamer('shutdown-inproc');
  const small = bytes(512 * 1024, 51);
  const o = await startOrigin({ '/s.rpm': serveSlowly(small, { chunk: 64 * 1024, intervalMs: 50 }) });
  await addRepo(fx.db, 'imp-inproc');
  const { unitId, paths } = await seedUnit(fx, [
    { name: 's.rpm', body: small, sources: [{ importer: 'imp-inproc', url: `${o.base}/s.rpm` }] },
  ]);
  const { done: download } = await startDownload(urlFor(fx.base, paths[0]!));
  await fx.streamer.close({ deadlineMs: 30_000 });
  const r = await download;
  assert.ok(r.complete);
  assert.equal(sha256(r.body), sha256(small));
  await settled(fx);
  assert.equal((await fx.db.units.findOne({ _id: unitId }))?.downloaded, true);
  assert.deepEqual(await tempFiles(fx), []);
});
