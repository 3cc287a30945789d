/**
 * Data access: the MongoDB connection, typed collections and index migration.
 * Everything here must work on MongoDB and on FerretDB (see docs/ferretdb.md):
 * no multi-document transactions, coordination by single-document atomic ops.
 */
import {
  type Collection,
  type Db,
  MongoClient,
  MongoNetworkError,
  MongoNotConnectedError,
  MongoServerError,
  MongoServerSelectionError,
  MongoTopologyClosedError,
} from 'mongodb';
import { DatabaseError, oneLine } from '../errors.ts';
import { redactUrl } from '../util/redact.ts';
import type { ServerKind } from './by-id.ts';
import type {
  CatalogEntryDoc,
  CounterDoc,
  DeferredDownloadDoc,
  LockDoc,
  RemoteHealthDoc,
  RepoContentUnitDoc,
  RepoDoc,
  TaskRunDoc,
  UnitAccessDoc,
  UnitDoc,
} from './models.ts';

export { existingById, existingIds, type ServerKind, updateOneById } from './by-id.ts';
export { chunked, WRITE_CHUNK } from './chunks.ts';
export * from './models.ts';

export interface Collections {
  repos: Collection<RepoDoc>;
  units: Collection<UnitDoc>;
  repoContentUnits: Collection<RepoContentUnitDoc>;
  catalog: Collection<CatalogEntryDoc>;
  deferred: Collection<DeferredDownloadDoc>;
  counters: Collection<CounterDoc>;
  locks: Collection<LockDoc>;
  taskRuns: Collection<TaskRunDoc>;
  unitAccess: Collection<UnitAccessDoc>;
  remoteHealth: Collection<RemoteHealthDoc>;
}

export interface Database extends Collections {
  client: MongoClient;
  db: Db;
  /** FerretDB runs only `{ _id }` filters in SQLite; see by-id.ts. */
  server: ServerKind;
  close(): Promise<void>;
}

export const COLLECTION_NAMES = {
  repos: 'repos',
  units: 'units',
  repoContentUnits: 'repo_content_units',
  catalog: 'lazy_content_catalog',
  deferred: 'deferred_download',
  counters: 'counters',
  locks: 'locks',
  taskRuns: 'task_runs',
  unitAccess: 'unit_access',
  remoteHealth: 'remote_health',
} as const;

/** Connects and checks the server answers (fails fast with a one-line error). */
export async function connect(
  url: string,
  name: string,
  opts: { timeoutMs?: number } = {},
): Promise<Database> {
  const timeout = opts.timeoutMs ?? 5000;
  let server: ServerKind = 'mongodb';
  const client = new MongoClient(url, {
    serverSelectionTimeoutMS: timeout,
    connectTimeoutMS: timeout,
    appName: 'pulp-lazy',
  });
  try {
    await client.connect();
    await client.db(name).command({ ping: 1 });
    const info = await client.db('admin').command({ buildInfo: 1 });
    server = 'ferretdbVersion' in info ? 'ferretdb' : 'mongodb';
  } catch (err) {
    await client.close().catch(() => {});
    throw new DatabaseError(`cannot reach MongoDB at ${redactUrl(url)}: ${oneLine(err)}`, err);
  }
  const db = client.db(name);
  return {
    client,
    db,
    server,
    repos: db.collection<RepoDoc>(COLLECTION_NAMES.repos),
    units: db.collection<UnitDoc>(COLLECTION_NAMES.units),
    repoContentUnits: db.collection<RepoContentUnitDoc>(COLLECTION_NAMES.repoContentUnits),
    catalog: db.collection<CatalogEntryDoc>(COLLECTION_NAMES.catalog),
    deferred: db.collection<DeferredDownloadDoc>(COLLECTION_NAMES.deferred),
    counters: db.collection<CounterDoc>(COLLECTION_NAMES.counters),
    locks: db.collection<LockDoc>(COLLECTION_NAMES.locks),
    taskRuns: db.collection<TaskRunDoc>(COLLECTION_NAMES.taskRuns),
    unitAccess: db.collection<UnitAccessDoc>(COLLECTION_NAMES.unitAccess),
    remoteHealth: db.collection<RemoteHealthDoc>(COLLECTION_NAMES.remoteHealth),
    close: () => client.close(),
  };
}

/** Creates every index; idempotent (`pulp-lazy db migrate`, also run by init). */
export async function migrate(d: Database): Promise<string[]> {
  const created: string[] = [];
  const ensure = async <T extends object>(
    coll: Collection<T>,
    spec: Record<string, 1 | -1>,
    options: { name: string; unique?: boolean },
  ) => {
    try {
      await coll.createIndex(spec, options);
    } catch (err) {
      if (err instanceof MongoServerError)
        throw new DatabaseError(`creating index ${options.name}: ${oneLine(err)}`, err);
      throw err;
    }
    created.push(`${coll.collectionName}.${options.name}`);
  };
  await ensure(d.units, { downloaded: 1 }, { name: 'downloaded' });
  await ensure(d.units, { unit_type_id: 1 }, { name: 'unit_type_id' });
  await ensure(d.units, { 'gone_upstream.at': 1 }, { name: 'gone_upstream' });
  await ensure(d.repoContentUnits, { repo_id: 1, relative_path: 1 }, { name: 'repo_path', unique: true });
  await ensure(d.repoContentUnits, { unit_id: 1 }, { name: 'unit_id' });
  await ensure(
    d.catalog,
    { path: -1, importer_id: -1, revision: -1 },
    { name: 'path_importer_revision', unique: true },
  );
  await ensure(d.catalog, { importer_id: 1 }, { name: 'importer_id' });
  await ensure(d.catalog, { unit_id: 1, unit_type_id: 1 }, { name: 'unit' });
  await ensure(d.deferred, { unit_id: 1, unit_type_id: 1 }, { name: 'unit', unique: true });
  await ensure(d.deferred, { state: 1, next_attempt_at: 1 }, { name: 'state_next_attempt' });
  await ensure(d.deferred, { lease_expires_at: 1 }, { name: 'lease_expires_at' });
  await ensure(d.taskRuns, { finished_at: -1 }, { name: 'finished_at' });
  return created;
}

/**
 * A driver error saying the database cannot be reached right now (network,
 * no server selected, client closed), as a DatabaseError (HTTP 503); other
 * errors (a command the server refused) give undefined.
 */
export function databaseUnavailable(err: unknown): DatabaseError | undefined {
  if (
    err instanceof MongoNetworkError ||
    err instanceof MongoServerSelectionError ||
    err instanceof MongoNotConnectedError ||
    err instanceof MongoTopologyClosedError
  )
    return new DatabaseError(`database unavailable: ${oneLine(err)}`, err);
  return undefined;
}
