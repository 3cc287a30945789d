/**
 * Repositories: creation with validated settings, lookup, deletion, the
 * record of the last sync, and sync leases (`locks`). The one writer of
 * repos and locks; associations.ts writes repo_content_units.
 */
import { createPrivateKey, randomBytes, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { purgeImporter } from '../catalog/index.ts';
import { retryBusy } from '../db/busy.ts';
import type { Database, RepoDoc, RepoType } from '../db/index.ts';
import { isDuplicateKey, RepoExists, RepoNotFound, SyncInProgress, UsageError } from '../errors.ts';
import { isSafeRelativePath, unpublish } from '../publish/index.ts';
import { deleteRepoAssociations } from './associations.ts';

export const REPO_TYPES: readonly RepoType[] = ['file', 'yum', 'deb'];

export interface CreateRepoInput {
  name: string;
  type: string;
  feed: string;
  caCertFile?: string | undefined;
  clientCertFile?: string | undefined;
  clientKeyFile?: string | undefined;
  tlsVerify?: boolean | undefined;
  proxy?: string | undefined;
  basicAuth?: string | undefined;
  protectCaFile?: string | undefined;
  publishedPath?: string | undefined;
  options?: Record<string, unknown> | undefined;
}

async function readPem(file: string, what: string, check: (pem: string) => void): Promise<string> {
  let pem: string;
  try {
    pem = await readFile(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
  try {
    check(pem);
  } catch {
    throw new UsageError(`${what} ${file} is not a valid PEM file`);
  }
  return pem;
}

const checkCert = (pem: string) => void new X509Certificate(pem);
const checkKey = (pem: string) => void createPrivateKey(pem);

/** Validates the input into a repository document (reads certificate files). */
export async function buildRepo(input: CreateRepoInput, now = new Date()): Promise<RepoDoc> {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(input.name)) {
    throw new UsageError(`bad repository name "${input.name}": use letters, digits, ".", "_" and "-"`);
  }
  if (!REPO_TYPES.includes(input.type as RepoType)) {
    throw new UsageError(`bad repository type "${input.type}": expected one of ${REPO_TYPES.join(', ')}`);
  }
  let feed: URL;
  try {
    feed = new URL(input.feed);
  } catch {
    throw new UsageError(`bad feed URL "${input.feed}"`);
  }
  if (feed.protocol !== 'http:' && feed.protocol !== 'https:') {
    throw new UsageError(`bad feed URL "${input.feed}": only http and https are supported`);
  }
  if (!feed.pathname.endsWith('/')) feed.pathname += '/';
  if (input.proxy) {
    try {
      const p = new URL(input.proxy);
      if (p.protocol !== 'http:' && p.protocol !== 'https:') throw new Error();
    } catch {
      throw new UsageError(`bad proxy URL "${input.proxy}"`);
    }
  }
  let basicAuth: RepoDoc['upstream']['basic_auth'];
  if (input.basicAuth !== undefined) {
    const i = input.basicAuth.indexOf(':');
    if (i <= 0) throw new UsageError('--basic-auth must be USER:PASS');
    basicAuth = { username: input.basicAuth.slice(0, i), password: input.basicAuth.slice(i + 1) };
  }
  if (Boolean(input.clientCertFile) !== Boolean(input.clientKeyFile)) {
    throw new UsageError('--client-cert and --client-key go together');
  }
  const publishedPath = input.publishedPath ?? input.name;
  if (!isSafeRelativePath(publishedPath) || publishedPath.startsWith('.')) {
    throw new UsageError(`bad published path "${publishedPath}"`);
  }
  return {
    _id: input.name,
    type: input.type as RepoType,
    feed: feed.toString(),
    importer_id: `${input.name}-${randomBytes(4).toString('hex')}`,
    upstream: {
      ca_cert: input.caCertFile ? await readPem(input.caCertFile, 'CA certificate', checkCert) : undefined,
      client_cert: input.clientCertFile
        ? await readPem(input.clientCertFile, 'client certificate', checkCert)
        : undefined,
      client_key: input.clientKeyFile
        ? await readPem(input.clientKeyFile, 'client key', checkKey)
        : undefined,
      tls_verify: input.tlsVerify ?? true,
      proxy_url: input.proxy,
      basic_auth: basicAuth,
    },
    protection: input.protectCaFile
      ? { ca_cert: await readPem(input.protectCaFile, 'protection CA certificate', checkCert) }
      : undefined,
    published_path: publishedPath,
    options: input.options,
    created_at: now,
  };
}

export async function createRepo(db: Database, doc: RepoDoc): Promise<RepoDoc> {
  const clash = await db.repos.findOne({ published_path: doc.published_path });
  if (clash) throw new UsageError(`published path "${doc.published_path}" is already used by "${clash._id}"`);
  try {
    await retryBusy(() => db.repos.insertOne(doc));
  } catch (err) {
    if (isDuplicateKey(err)) throw new RepoExists(doc._id);
    throw err;
  }
  return doc;
}

export async function getRepo(db: Database, name: string): Promise<RepoDoc> {
  const repo = await db.repos.findOne({ _id: name });
  if (!repo) throw new RepoNotFound(name);
  return repo;
}

export async function listRepos(db: Database): Promise<RepoDoc[]> {
  return db.repos.find({}).sort({ _id: 1 }).toArray();
}

/**
 * Deletes a repository: unpublishes it, removes its content associations and
 * catalog entries. Units and stored files stay (other repositories may share them).
 */
export async function deleteRepo(db: Database, name: string, publishedRoot: string): Promise<void> {
  const repo = await getRepo(db, name);
  const owner = await acquireSyncLease(db, repo._id, 10 * 60_000);
  await unpublish(publishedRoot, repo.published_path);
  await deleteRepoAssociations(db, repo._id);
  await purgeImporter(db, repo.importer_id);
  await retryBusy(() => db.repos.deleteOne({ _id: repo._id }));
  await releaseSyncLease(db, repo._id, owner);
}

/**
 * Takes the repository's sync lease (one sync or delete at a time); returns the owner id.
 * The lease is a document in `locks` with a unique `_id`: the insert decides a race, which
 * is atomic on MongoDB and on FerretDB alike (FerretDB's conditional updates are not;
 * docs/ferretdb.md). An expired lease is removed and the insert tried once more.
 */
export async function acquireSyncLease(db: Database, name: string, ttlMs: number): Promise<string> {
  if (!(await db.repos.findOne({ _id: name }, { projection: { _id: 1 } }))) throw new RepoNotFound(name);
  const owner = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`;
  const _id = `sync:${name}`;
  for (let attempt = 0; attempt < 2; attempt++) {
    const now = new Date();
    try {
      await retryBusy(() => db.locks.insertOne({ _id, owner, expires_at: new Date(now.getTime() + ttlMs) }));
      return owner;
    } catch (err) {
      if (!isDuplicateKey(err)) throw err;
    }
    const held = await db.locks.findOne({ _id });
    if (held && held.expires_at >= now) throw new SyncInProgress(name, held.owner);
    if (held)
      await retryBusy(() => db.locks.deleteOne({ _id, owner: held.owner, expires_at: held.expires_at }));
  }
  const held = await db.locks.findOne({ _id });
  throw new SyncInProgress(name, held?.owner ?? 'another process');
}

export async function releaseSyncLease(db: Database, name: string, owner: string): Promise<void> {
  await retryBusy(() => db.locks.deleteOne({ _id: `sync:${name}`, owner }));
}

/** Records a finished sync on the repository: its catalog revision is in force from now on. */
export async function recordLastSync(
  db: Database,
  repoId: string,
  lastSync: NonNullable<RepoDoc['last_sync']>,
): Promise<void> {
  await retryBusy(() => db.repos.updateOne({ _id: repoId }, { $set: { last_sync: lastSync } }));
}

/** The repository owning an importer id (streamer, tasks). */
export async function repoByImporter(db: Database, importerId: string): Promise<RepoDoc | null> {
  return db.repos.findOne({ importer_id: importerId });
}
