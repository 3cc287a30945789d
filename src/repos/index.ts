/**
 * Repositories: creation and update with validated settings (settings.ts), lookup, deletion, the
 * record of the last sync, and sync leases (`locks`). The one writer of
 * repos and locks; associations.ts writes repo_content_units.
 */
import { randomBytes } from 'node:crypto';
import { hostname } from 'node:os';
import { purgeImporter } from '../catalog/index.ts';
import { retryBusy } from '../db/busy.ts';
import type { Database, DownloadPolicy, RepoDoc, RepoType, SyncState } from '../db/index.ts';
import { isDuplicateKey, oneLine, RepoExists, RepoNotFound, SyncInProgress, UsageError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { isSafeRelativePath, unpublish } from '../publish/index.ts';
import { deleteRepoAssociations } from './associations.ts';
import { type RepoSettingsInput, settingsPatch } from './settings.ts';

export const REPO_TYPES: readonly RepoType[] = ['file', 'yum', 'deb'];

export interface CreateRepoInput extends RepoSettingsInput {
  name: string;
  type: string;
  feed: string;
  publishedPath?: string | undefined;
}

/** Validates the input into a repository document (reads certificate files). */
export async function buildRepo(input: CreateRepoInput, now = new Date()): Promise<RepoDoc> {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(input.name)) {
    throw new UsageError(`bad repository name "${input.name}": use letters, digits, ".", "_" and "-"`);
  }
  if (!REPO_TYPES.includes(input.type as RepoType)) {
    throw new UsageError(`bad repository type "${input.type}": expected one of ${REPO_TYPES.join(', ')}`);
  }
  for (const [option, v] of [
    ['--ca-cert', input.caCertFile],
    ['--client-cert', input.clientCertFile],
    ['--client-key', input.clientKeyFile],
    ['--protect-ca', input.protectCaFile],
    ['--gpg-key', input.gpgKeyFile],
  ] as const) {
    if (v === '') throw new UsageError(`${option} needs a file`);
  }
  const publishedPath = input.publishedPath ?? input.name;
  if (!isSafeRelativePath(publishedPath) || publishedPath.startsWith('.')) {
    throw new UsageError(`bad published path "${publishedPath}"`);
  }
  const patch = await settingsPatch({ upstream: { tls_verify: true } }, input);
  const doc: RepoDoc = {
    _id: input.name,
    type: input.type as RepoType,
    feed: patch.feed!,
    importer_id: `${input.name}-${randomBytes(4).toString('hex')}`,
    upstream: patch.upstream ?? { tls_verify: true },
    protection: patch.protection,
    published_path: publishedPath,
    options: patch.options,
    created_at: now,
  };
  if (patch.policy) doc.policy = patch.policy;
  if (patch.sync_interval_ms) doc.sync_interval_ms = patch.sync_interval_ms;
  if (patch.gpg_key) doc.gpg_key = patch.gpg_key;
  return doc;
}

/**
 * Changes a repository's settings (`repo update`); returns the updated
 * document. Daemons and tasks read repositories through short caches, so
 * the new settings are in use within seconds. A changed feed keeps the
 * catalog until the next sync; a changed policy takes effect at the next sync.
 */
export async function updateRepo(db: Database, name: string, input: RepoSettingsInput): Promise<RepoDoc> {
  const repo = await getRepo(db, name);
  const patch = await settingsPatch(repo, input);
  const $set: Record<string, unknown> = {};
  const $unset: Record<string, ''> = {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === undefined || v === null) $unset[k] = '';
    else $set[k] = k === 'upstream' ? withoutUndefined(v as Record<string, unknown>) : v;
  }
  if (Object.keys($set).length + Object.keys($unset).length === 0) return repo;
  const update = {
    ...(Object.keys($set).length ? { $set } : {}),
    ...(Object.keys($unset).length ? { $unset } : {}),
  };
  const r = await retryBusy(() => db.repos.updateOne({ _id: repo._id }, update));
  if (r.matchedCount === 0) throw new RepoNotFound(name);
  return getRepo(db, name);
}

const withoutUndefined = (o: Record<string, unknown>) =>
  Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined));

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

/**
 * Moves the expiry of `owner`'s sync lease to now + ttlMs; false when the lease is no longer
 * its own (it expired and another sync took it).
 */
export async function renewSyncLease(
  db: Database,
  name: string,
  owner: string,
  ttlMs: number,
): Promise<boolean> {
  const r = await retryBusy(() =>
    db.locks.updateOne(
      { _id: `sync:${name}`, owner },
      { $set: { expires_at: new Date(Date.now() + ttlMs) } },
    ),
  );
  return r.matchedCount === 1;
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

/** The policy the repository's last successful sync applied (the asked one before any sync). */
export function policyInForce(repo: Pick<RepoDoc, 'policy' | 'policy_in_force'>): DownloadPolicy {
  return repo.policy_in_force ?? repo.policy ?? 'on_demand';
}

/** Records the policy a successful sync applied: from now on the streamer follows it. */
export async function recordPolicyInForce(
  db: Database,
  repoId: string,
  policy: DownloadPolicy,
): Promise<void> {
  await retryBusy(() => db.repos.updateOne({ _id: repoId }, { $set: { policy_in_force: policy } }));
}

/** The repository owning an importer id (streamer, tasks). */
export async function repoByImporter(db: Database, importerId: string): Promise<RepoDoc | null> {
  return db.repos.findOne({ importer_id: importerId });
}

/** How long a re-sync request keeps further requests of its repository out (its `locks` document). */
export const RESYNC_DEBOUNCE_MS = 60_000;

/**
 * Asks for a sync of the repository outside its schedule (upstream drift):
 * sets `sync_requested: {at, reason}` unless a request is pending, so one
 * request per repository however many callers; returns whether this call set
 * it. Callers in any process are decided by unique inserts into `locks`
 * (FerretDB's conditional updates and deletes are not atomic; docs/ferretdb.md):
 * one document `resync:<repo>@<g>:<n>` per window `n` of `debounceMs` within
 * generation `g` (the start time of the repository's last sync), whose
 * inserter wins unless the previous window's request of that generation is
 * younger than `debounceMs`. So after a request, none is made for
 * `debounceMs`, unless a sync has started since: that sync may have read the
 * feed before the file went, so a request made while it runs stays for the
 * next one. Expired windows are removed by purgeScheduleClaims.
 */
export async function requestSync(
  db: Database,
  repoId: string,
  reason: string,
  opts: { now?: Date; debounceMs?: number } = {},
): Promise<boolean> {
  const now = opts.now ?? new Date();
  const debounce = opts.debounceMs ?? RESYNC_DEBOUNCE_MS;
  const repo = await db.repos.findOne({ _id: repoId }, { projection: { sync_requested: 1, sync_state: 1 } });
  if (!repo || repo.sync_requested) return false;
  const generation = `resync:${repoId}@${repo.sync_state?.last_started_at?.getTime() ?? 0}`;
  const window = Math.floor(now.getTime() / debounce);
  const lock = {
    _id: `${generation}:${window}`,
    owner: `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`,
    expires_at: new Date(now.getTime() + debounce),
  };
  try {
    await retryBusy(() => db.locks.insertOne(lock));
  } catch (err) {
    if (isDuplicateKey(err)) return false;
    throw err;
  }
  const previous = await db.locks.findOne({ _id: `${generation}:${window - 1}` });
  if (previous && previous.expires_at > now) return false;
  const sync_requested = { at: now, reason: reason.slice(0, 500) };
  await retryBusy(() => db.repos.updateOne({ _id: repoId }, { $set: { sync_requested } }));
  return true;
}

/**
 * Puts back the request a failed sync answered, unless a newer one is pending
 * (one caller: the sync that holds the lease, so no debounce), so the scheduler
 * runs it again with the backoff of src/scheduler/plan.ts.
 */
async function restoreSyncRequest(
  db: Database,
  repoId: string,
  request: { at: Date; reason: string },
): Promise<void> {
  await retryBusy(() =>
    db.repos.updateOne({ _id: repoId, sync_requested: null }, { $set: { sync_requested: request } }),
  );
}

/** What a running sync remembers of its start (see recordSyncStart). */
export interface SyncStart {
  startedAt: Date;
  /** The request this sync answers (cleared at its start), if one was pending. */
  request: { at: Date; reason: string } | null;
}

/**
 * Records that a sync of the repository started (the caller holds its sync lease) and
 * clears the pending sync request, if any: this sync answers it. A request made from
 * now on stays for the next sync. Best effort: a failure is logged, and the sync goes
 * on unrecorded (null).
 */
export async function recordSyncStart(
  db: Database,
  repoId: string,
  logger: Logger,
  now = new Date(),
): Promise<SyncStart | null> {
  try {
    const repo = await getRepo(db, repoId);
    const request = repo.sync_requested && repo.sync_requested.at <= now ? repo.sync_requested : null;
    const failures = repo.sync_state?.failures ?? 0;
    const sync_state: SyncState = { ...repo.sync_state, last_started_at: now, failures };
    await retryBusy(() => db.repos.updateOne({ _id: repoId }, { $set: { sync_state } }));
    if (request)
      await retryBusy(() =>
        db.repos.updateOne(
          { _id: repoId, 'sync_requested.at': request.at },
          { $set: { sync_requested: null } },
        ),
      );
    return { startedAt: now, request };
  } catch (err) {
    logger.warn({ event: 'sync.record_failed', repo: repoId, err }, 'could not record the sync start');
    return null;
  }
}

/**
 * Records how a sync ended (`error` undefined: it succeeded): time, result, duration, and
 * failures in a row. A failed sync that answered a request puts the request back (unless
 * a newer one is pending), so it is retried with the backoff of src/scheduler/plan.ts.
 * Best effort, like recordSyncStart.
 */
export async function recordSyncEnd(
  db: Database,
  repoId: string,
  start: SyncStart | null,
  error: unknown,
  logger: Logger,
  now = new Date(),
): Promise<void> {
  if (!start) return;
  try {
    const repo = await getRepo(db, repoId);
    const failed = error !== undefined;
    const sync_state: SyncState = {
      last_started_at: start.startedAt,
      last_finished_at: now,
      last_result: failed ? 'failed' : 'ok',
      last_error: failed ? oneLine(error) : null,
      last_duration_ms: now.getTime() - start.startedAt.getTime(),
      failures: failed ? (repo.sync_state?.failures ?? 0) + 1 : 0,
    };
    await retryBusy(() => db.repos.updateOne({ _id: repoId }, { $set: { sync_state } }));
    if (failed && start.request) await restoreSyncRequest(db, repoId, start.request);
  } catch (err) {
    logger.warn({ event: 'sync.record_failed', repo: repoId, err }, 'could not record the sync result');
  }
}

/**
 * Claims one scheduled sync of the repository (`key` names the slot, retry or request it is
 * for) by inserting `schedule:<repo>:<key>` into `locks`: of several schedulers, only the
 * one whose insert succeeds runs it (a unique insert is atomic on FerretDB too).
 */
export async function claimScheduledSync(
  db: Database,
  repoId: string,
  key: string,
  owner: string,
  expiresAt: Date,
): Promise<boolean> {
  try {
    await retryBusy(() =>
      db.locks.insertOne({ _id: `schedule:${repoId}:${key}`, owner, expires_at: expiresAt }),
    );
    return true;
  } catch (err) {
    if (isDuplicateKey(err)) return false;
    throw err;
  }
}

/** Gives a claim back (its sync could not start: another sync held the lease). */
export async function releaseScheduledSync(
  db: Database,
  repoId: string,
  key: string,
  owner: string,
): Promise<void> {
  await retryBusy(() => db.locks.deleteOne({ _id: `schedule:${repoId}:${key}`, owner }));
}

/** Removes expired schedule claims and re-sync windows (their slots are long past). */
export async function purgeScheduleClaims(db: Database, now = new Date()): Promise<number> {
  const r = await retryBusy(() =>
    db.locks.deleteMany({ _id: { $regex: '^(schedule|resync):' }, expires_at: { $lt: now } }),
  );
  return r.deletedCount;
}
