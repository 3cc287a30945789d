/**
 * A file repository on the edge upstream (test/helpers/edge-upstream.ts),
 * synced in-process, then read through the all-in-one server (`serve`) or a
 * sweep with the in-process streamer: the three ways a request reaches
 * upstream.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { readdir } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import { after } from 'node:test';
import type { Config } from '../../src/config.ts';
import { createAllInOne } from '../../src/daemons/serve.ts';
import { type Database, newDeferredEntry, type RepoDoc, type UnitDoc } from '../../src/db/index.ts';
import type { SyncSummary } from '../../src/importers/sync.ts';
import { type Logger, silentLogger } from '../../src/log.ts';
import { buildRepo, createRepo } from '../../src/repos/index.ts';
import { generateKeys } from '../../src/signing/index.ts';
import { unitStoragePath } from '../../src/storage/index.ts';
import { createFileSource, taskDeps, tasksWorkingDir } from '../../src/tasks/setup.ts';
import { runSweep, type SweepSummary } from '../../src/tasks/sweep.ts';
import { testDatabase } from './db.ts';
import { testEnv } from './env.ts';
import { syncIn } from './sync.ts';

export const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

/** PULP_MANIFEST text for `files` (name → bytes). */
export function manifestOf(files: Map<string, Buffer>): Buffer {
  return Buffer.from([...files].map(([name, b]) => `${name},${sha256(b)},${b.length}\n`).join(''));
}

export interface EdgeRepo {
  config: Config;
  db: Database;
  repo: RepoDoc;
  /** The storage path of a file of the manifest. */
  storagePath(name: string): string;
  unitOf(name: string): Promise<UnitDoc | null>;
  /** Temp files left in the working dir (the streamer's and the tasks'). */
  temps(): Promise<string[]>;
}

/** A fresh env and database with repository "r" (file, or yum) of `feed`; `upstream` overrides its settings. */
export async function edgeRepo(
  label: string,
  feed: string,
  files: Map<string, Buffer>,
  opts: {
    upstream?: Partial<RepoDoc['upstream']>;
    basicAuth?: string;
    streamer?: Record<string, unknown>;
    type?: 'file' | 'yum';
  } = {},
): Promise<EdgeRepo> {
  const env = await testEnv(label, { serve: { listen: '127.0.0.1:0' }, streamer: opts.streamer ?? {} });
  await generateKeys(env.config.paths.keys);
  const db = await testDatabase(label);
  const built = await buildRepo({
    name: 'r',
    type: opts.type ?? 'file',
    feed,
    ...(opts.basicAuth ? { basicAuth: opts.basicAuth } : {}),
  });
  const repo = await createRepo(db, { ...built, upstream: { ...built.upstream, ...opts.upstream } });
  const config = env.config;
  const storagePath = (name: string) =>
    unitStoragePath(config.paths.storage, 'file', sha256(files.get(name)!), name);
  const dirs = [
    path.join(config.paths.working, 'tmp'),
    path.join(tasksWorkingDir(config.paths.working), 'tmp'),
  ];
  return {
    config,
    db,
    repo,
    storagePath,
    unitOf: (name) => db.units.findOne({ 'files.storage_path': storagePath(name) }),
    temps: async () => (await Promise.all(dirs.map((d) => readdir(d).catch(() => [])))).flat(),
  };
}

/** Syncs repository "r" in-process (the CLI's code path without the process). */
export async function syncEdge(
  r: EdgeRepo,
  timeouts = { connectMs: 5000, headersMs: 5000, bodyIdleMs: 5000 },
): Promise<SyncSummary> {
  return syncIn(r.db, r.config.paths, 'r', { timeouts });
}

/** Starts `serve` on the repo's database (logging to `logger`); closed after the test file. Returns its base URL. */
export async function serveEdge(r: EdgeRepo, logger: Logger = silentLogger): Promise<string> {
  const server = createAllInOne(r.config, { db: r.db, logger });
  const addr = (await server.listen()) as AddressInfo;
  after(() => server.close({ deadlineMs: 2000 }));
  return `http://127.0.0.1:${addr.port}`;
}

/** Queues every unit of the database and runs one sweep through the in-process streamer. */
export async function sweepEdge(r: EdgeRepo): Promise<SweepSummary> {
  const units = await r.db.units.find({ downloaded: false }).toArray();
  assert.ok(units.length > 0, 'units to sweep');
  await r.db.deferred.insertMany(
    units.map((u) => newDeferredEntry({ unit_id: u._id, unit_type_id: u.unit_type_id }, new Date())),
  );
  const source = createFileSource(r.config, { db: r.db, logger: silentLogger }, 'local');
  try {
    return await runSweep(taskDeps(r.config, { db: r.db, logger: silentLogger, source }));
  } finally {
    await source.close();
  }
}
