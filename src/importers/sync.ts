/**
 * The sync driver shared by all importers. The importer reads upstream
 * metadata into a plan spooled to disk (plan.ts: nothing written to the
 * database yet, so a bad manifest or an unreachable feed fails before the
 * first write and the database and the published tree stay as they were);
 * then the plan is streamed into the database, WRITE_CHUNK documents at a
 * time, and the published tree: units, the catalog as a new revision, the
 * tree (built beside the current one and swapped in atomically), the content
 * associations, and last of all the repository's last_sync, which puts the
 * new catalog revision in force. A sync that fails before the swap deletes
 * its revision; the previous catalog and tree stay in force. Memory does not
 * grow with the number of packages: the plan is read back sorted, from disk.
 * The download policy acts around the publish (policy.ts): `immediate`
 * downloads the missing units before it, `background` queues them after it.
 */
import { mkdir } from 'node:fs/promises';
import {
  CatalogHasher,
  completeCatalog,
  discardRevision,
  type NewCatalogEntry,
  retireOlderRevisions,
  writeCatalog,
} from '../catalog/index.ts';
import {
  chunked,
  type Database,
  type DownloadPolicy,
  type RepoContentUnitDoc,
  type RepoDoc,
  type RepoType,
  type UnitDoc,
  WRITE_CHUNK,
} from '../db/index.ts';
import type { Logger } from '../log.ts';
import { publishTree } from '../publish/index.ts';
import { deleteAssociations, insertAssociations } from '../repos/associations.ts';
import {
  acquireSyncLease,
  getRepo,
  recordLastSync,
  recordPolicyInForce,
  recordSyncEnd,
  recordSyncStart,
  releaseSyncLease,
  renewSyncLease,
} from '../repos/index.ts';
import { fileMatches } from '../storage/index.ts';
import { insertUnits } from '../storage/units.ts';
import type { TaskDeps } from '../tasks/setup.ts';
import type { DispatcherPool } from '../upstream/dispatcher.ts';
import { planDebSync } from './deb.ts';
import { planFileSync } from './file.ts';
import { HeapGuard } from './heap-guard.ts';
import { Plan, type PublishedRecord, treeKey, type UnitRecord } from './plan.ts';
import { downloadBeforePublish, policyOf, queueAfterPublish } from './policy.ts';
import { UnitPresence } from './presence.ts';
import type { Spool } from './spool.ts';
import type { Importer } from './types.ts';
import { planYumSync } from './yum.ts';

const IMPORTERS: Partial<Record<RepoType, Importer>> = {
  // A manifest is read whole (one line per file, no metadata files): its plan comes in memory.
  file: async (repo, deps, plan) => plan.add(await planFileSync(repo, deps)),
  yum: planYumSync,
  deb: planDebSync,
};

export interface SyncSummary {
  repo: string;
  type: RepoType;
  units: number;
  units_created: number;
  published: number;
  paths_added: number;
  paths_removed: number;
  catalog_revision: number;
  catalog_changed: boolean;
  tree_changed: boolean;
  /** Links of earlier trees kept in the published one (publish.keep_previous). */
  kept_paths: number;
  changed: boolean;
  policy: DownloadPolicy;
  /** Units downloaded before the tree was published (policy immediate). */
  downloaded: number;
  /** Units queued for the sweep after it was published (policy background). */
  queued: number;
}

export interface SyncDeps {
  db: Database;
  pool: DispatcherPool;
  storageRoot: string;
  publishedRoot: string;
  workingDir: string;
  logger: Logger;
  /** Lease on the repository while syncing (default 1 h). */
  leaseMs?: number;
  /** Characters of plan records each spool keeps in memory (spool.ts RUN_CHARS by default). */
  spoolChars?: number;
  /** The download tasks' deps, opened when the policy `immediate` has units to download. */
  tasks?: () => Promise<TaskDeps>;
  /**
   * publish.keep_previous (ms): the previous tree's files the new one lacks stay published this
   * long, and the catalog revisions they may need (src/publish/keep.ts). Default 0: not kept.
   */
  keepPreviousMs?: number;
}

export async function syncRepo(name: string, deps: SyncDeps): Promise<SyncSummary> {
  const { db, logger } = deps;
  const repo = await getRepo(db, name);
  const importer = IMPORTERS[repo.type];
  if (!importer) throw new Error(`no importer for repository type ${repo.type}`);
  // The content daemon resolves links against existing roots: make sure they exist.
  for (const dir of [deps.storageRoot, deps.publishedRoot, deps.workingDir])
    await mkdir(dir, { recursive: true });
  const leaseMs = deps.leaseMs ?? 3_600_000;
  const owner = await acquireSyncLease(db, repo._id, leaseMs);
  const renewal = renewWhileRunning(db, repo._id, owner, leaseMs, logger);
  const guard = new HeapGuard();
  let plan: Plan | undefined;
  // Every sync, whoever runs it, is recorded in the repository's sync_state (repo list, scheduler).
  const start = await recordSyncStart(db, repo._id, logger);
  let failure: unknown;
  try {
    plan = await Plan.create(deps.workingDir, repo._id, deps.spoolChars);
    await importer(
      repo,
      { pool: deps.pool, storageRoot: deps.storageRoot, workingDir: deps.workingDir, logger, heap: guard },
      plan,
    );
    const summary = await writePlan(repo, plan, deps);
    logger.info({ event: 'sync.done', ...summary }, 'sync finished');
    logger.debug(
      { event: 'sync.heap', repo: repo._id, collections: guard.runs },
      'collections run by the heap guard',
    );
    return summary;
  } catch (err) {
    failure = err;
    throw err;
  } finally {
    clearInterval(renewal);
    guard.stop();
    // A plan left behind is removed by the next sync of the repository.
    await plan?.discard().catch(() => {});
    await recordSyncEnd(db, repo._id, start, failure, logger);
    await releaseSyncLease(db, repo._id, owner);
  }
}

/**
 * Renews the sync lease every third of its term while the sync runs, so a long sync (an
 * `immediate` one downloading a large repository) keeps it: with the lease gone, another
 * sync could start and remove this one's plan. A lease found taken is logged (it only
 * happens when this process stalled for longer than the lease).
 */
function renewWhileRunning(
  db: Database,
  repo: string,
  owner: string,
  leaseMs: number,
  logger: Logger,
): NodeJS.Timeout {
  const timer = setInterval(
    () => {
      renewSyncLease(db, repo, owner, leaseMs).then(
        (held) => {
          if (!held) logger.error({ event: 'sync.lease_lost', repo, owner }, 'the sync lease was lost');
        },
        (err: unknown) =>
          logger.warn({ event: 'sync.lease_renewal_failed', repo, err }, 'sync lease not renewed'),
      );
    },
    Math.max(10, Math.floor(leaseMs / 3)),
  );
  timer.unref();
  return timer;
}

/** Streams the plan into the database and the published tree (see the module comment). */
async function writePlan(repo: RepoDoc, plan: Plan, deps: SyncDeps): Promise<SyncSummary> {
  const { db, logger } = deps;
  const entries = plan.spool<NewCatalogEntry>((e) => e.path);
  const units = await writeUnits(db, plan, entries);
  logger.debug({ event: 'sync.units', repo: repo._id, ...units }, 'units written');

  const hash = new CatalogHasher();
  let count = 0;
  for await (const e of distinctEntries(entries)) {
    hash.add(e);
    count++;
  }
  const digest = hash.digest();
  const catalog = await writeCatalog(db, repo.importer_id, digest, distinctEntries(entries));
  logger.debug({ event: 'sync.catalog', repo: repo._id, entries: count, ...catalog }, 'catalog written');

  const keepMs = deps.keepPreviousMs ?? 0;
  let tree: { changed: boolean; kept: number };
  let downloaded = 0;
  try {
    downloaded = await downloadBeforePublish(repo, plan, deps);
    tree = await publishTree(
      deps.publishedRoot,
      repo.published_path,
      async function* () {
        for await (const p of plan.distinctPublished()) yield [p.relative_path, p.target] as const;
      },
      { keepMs },
    );
  } catch (err) {
    // The previous tree is still published: its catalog stays in force, the new revision goes.
    if (catalog.changed) await discardRevision(db, repo.importer_id, catalog.revision).catch(() => {});
    throw err;
  }
  const assoc = await writeAssociations(db, repo, plan);
  // A revision written by a sync that died before recording it may be the one in hand.
  const moved = catalog.changed || repo.last_sync?.revision !== catalog.revision;
  const summary: SyncSummary = {
    repo: repo._id,
    type: repo.type,
    units: units.units,
    units_created: units.created,
    published: assoc.published,
    paths_added: assoc.added,
    paths_removed: assoc.removed,
    catalog_revision: catalog.revision,
    catalog_changed: catalog.changed,
    tree_changed: tree.changed,
    kept_paths: tree.kept,
    changed: units.created > 0 || moved || assoc.added + assoc.removed > 0 || tree.changed,
    policy: policyOf(repo),
    downloaded,
    queued: 0,
  };
  if (catalog.changed) await completeCatalog(db, repo.importer_id, catalog.revision, digest, count);
  if (summary.changed) {
    await recordLastSync(db, repo._id, {
      finished_at: new Date(),
      revision: catalog.revision,
      units: summary.units,
      added: assoc.added,
      removed: assoc.removed,
    });
  }
  // Kept links may need older revisions: those are retired at a later sync, once past keepMs.
  if (moved || keepMs > 0) await retireOlderRevisions(db, repo.importer_id, catalog.revision, { keepMs });
  summary.queued = await queueAfterPublish(repo, plan, db);
  // A changed policy is in force from here (the streamer reads policy_in_force).
  if (repo.policy_in_force !== summary.policy) await recordPolicyInForce(db, repo._id, summary.policy);
  return summary;
}

/** The catalog entries in path order, each path once (the first listed). */
async function* distinctEntries(entries: Spool<NewCatalogEntry>): AsyncGenerator<NewCatalogEntry> {
  let last: string | undefined;
  for await (const e of entries.sorted()) {
    if (e.path === last) continue;
    last = e.path;
    yield e;
  }
}

/**
 * Inserts the units not yet known, WRITE_CHUNK at a time, and spools the
 * catalog entry of every unit file with an upstream URL into `entries`.
 * Returns how many units the plan has and how many were created.
 */
async function writeUnits(
  db: Database,
  plan: Plan,
  entries: Spool<NewCatalogEntry>,
): Promise<{ units: number; created: number }> {
  const presence = await UnitPresence.open(db, plan);
  let units = 0;
  let created = 0;
  const now = new Date();
  try {
    for await (const batch of chunked(plan.distinctUnits())) {
      units += batch.length;
      const known = await presence.existing(batch.map((p) => p.unit._id));
      const fresh: UnitDoc[] = [];
      for (const p of batch) {
        for (const f of p.unit.files) {
          const url = p.urls.find(([storagePath]) => storagePath === f.storage_path)?.[1];
          if (!url) continue;
          await entries.add({
            path: f.storage_path,
            unit_id: p.unit._id,
            unit_type_id: p.unit.unit_type_id,
            url,
            checksum: f.checksum,
            checksum_algorithm: f.checksum_algorithm,
            size: f.size,
          });
        }
        if (known.has(p.unit._id)) continue;
        fresh.push({ ...p.unit, downloaded: await isStored(p), created_at: now, download_lease: null });
      }
      if (fresh.length === 0) continue;
      // Another sync may have created some of the same units meanwhile: they are identical.
      await insertUnits(db, fresh);
      created += fresh.length;
    }
  } finally {
    await presence.close();
  }
  return { units, created };
}

/** Whether a new unit's files are in storage already (stored by the importer, or verified there). */
async function isStored(p: UnitRecord): Promise<boolean> {
  if (p.stored) return true;
  for (const f of p.unit.files) if (!(await fileMatches(f.storage_path, f))) return false;
  return true;
}

/**
 * Makes the repository's content associations those of the plan: the
 * current ones (spooled and sorted like the plan's published paths) merged
 * with the plan's; the association of a path whose unit changed is deleted,
 * then the new one inserted. Deletes go by `_id`, WRITE_CHUNK at a time like
 * the inserts. Returns the plan's published paths and the changes.
 */
async function writeAssociations(
  db: Database,
  repo: RepoDoc,
  plan: Plan,
): Promise<{ published: number; added: number; removed: number }> {
  /** [relative_path, unit_id, _id] of each current association. */
  const current = plan.spool<[string, string, string]>((c) => treeKey(c[0]));
  for await (const c of db.repoContentUnits.find(
    { repo_id: repo._id },
    { projection: { relative_path: 1, unit_id: 1 }, batchSize: 1000 },
  )) {
    await current.add([c.relative_path, c.unit_id, c._id!.toHexString()]);
  }
  /** [association _id, its unit_id] of each association to delete. */
  let removals: Array<[string, string]> = [];
  let additions: RepoContentUnitDoc[] = [];
  const remove = async () => {
    if (removals.length === 0) return;
    const gone = removals;
    removals = [];
    await deleteAssociations(
      db,
      gone.map((r) => r[0]),
      gone.map((r) => r[1]),
    );
  };
  const add = async () => {
    await remove(); // A path's old association goes first (repo_id + relative_path is unique).
    if (additions.length === 0) return;
    const docs = additions;
    additions = [];
    await insertAssociations(db, docs);
  };
  let published = 0;
  let added = 0;
  let removed = 0;
  const want = plan.distinctPublished();
  const have = current.sorted();
  let d = await want.next();
  let c = await have.next();
  while (!d.done || !c.done) {
    // < 0: a path only the plan has; > 0: only the current associations; 0: both.
    const order = d.done ? 1 : c.done ? -1 : compareKeys(d.value, c.value[0]);
    const differs = order === 0 && d.value!.unit_id !== c.value![1];
    if (order > 0 || differs) {
      removals.push([c.value![2], c.value![1]]);
      if (order > 0) removed++;
    }
    if (order < 0 || differs) {
      const p = d.value!;
      additions.push({
        repo_id: repo._id,
        unit_id: p.unit_id,
        unit_type_id: p.unit_type_id,
        relative_path: p.relative_path,
      });
      added++;
    }
    if (order >= 0) c = await have.next();
    if (order <= 0) {
      published++;
      d = await want.next();
    }
    if (removals.length >= WRITE_CHUNK) await remove();
    if (additions.length >= WRITE_CHUNK) await add();
  }
  await add();
  return { published, added, removed };
}

function compareKeys(p: PublishedRecord, relativePath: string): number {
  const a = treeKey(p.relative_path);
  const b = treeKey(relativePath);
  return a < b ? -1 : a > b ? 1 : 0;
}
