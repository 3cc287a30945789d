/**
 * The sync driver shared by all importers: plan from upstream metadata
 * (nothing written yet), then write units, catalog, content associations,
 * and finally publish the tree atomically. A bad manifest or an unreachable
 * feed fails before the first write, so the database and the published
 * tree stay as they were.
 */
import { mkdir } from 'node:fs/promises';
import { type NewCatalogEntry, replaceCatalog } from '../catalog/index.ts';
import {
  type Database,
  existingIds,
  type RepoContentUnitDoc,
  type RepoDoc,
  type RepoType,
  type UnitDoc,
} from '../db/index.ts';
import { isDuplicateKey } from '../errors.ts';
import type { Logger } from '../log.ts';
import { publishTree } from '../publish/index.ts';
import { acquireSyncLease, getRepo, releaseSyncLease } from '../repos/index.ts';
import { fileMatches } from '../storage/index.ts';
import type { DispatcherPool } from '../upstream/dispatcher.ts';
import { planDebSync } from './deb.ts';
import { planFileSync } from './file.ts';
import type { Importer, SyncPlan } from './types.ts';
import { planYumSync } from './yum.ts';

const IMPORTERS: Partial<Record<RepoType, Importer>> = {
  file: planFileSync,
  yum: planYumSync,
  deb: planDebSync,
};

/** Registers the importer of a repository type (yum and deb add theirs). */
export function registerImporter(type: RepoType, importer: Importer): void {
  IMPORTERS[type] = importer;
}

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
  changed: boolean;
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
}

export async function syncRepo(name: string, deps: SyncDeps): Promise<SyncSummary> {
  const { db, logger } = deps;
  const repo = await getRepo(db, name);
  const importer = IMPORTERS[repo.type];
  if (!importer) throw new Error(`no importer for repository type ${repo.type}`);
  // The content daemon resolves links against existing roots: make sure they exist.
  for (const dir of [deps.storageRoot, deps.publishedRoot, deps.workingDir])
    await mkdir(dir, { recursive: true });
  const owner = await acquireSyncLease(db, repo._id, deps.leaseMs ?? 3_600_000);
  try {
    const plan = await importer(repo, {
      pool: deps.pool,
      storageRoot: deps.storageRoot,
      workingDir: deps.workingDir,
      logger,
    });
    const created = await writeUnits(db, plan);
    const catalog = await replaceCatalog(db, repo.importer_id, catalogEntries(plan));
    const assoc = await writeAssociations(db, repo, plan);
    const tree = await publishTree(
      deps.publishedRoot,
      repo.published_path,
      new Map(plan.published.map((p) => [p.relative_path, p.target])),
    );
    const summary: SyncSummary = {
      repo: repo._id,
      type: repo.type,
      units: plan.units.length,
      units_created: created,
      published: plan.published.length,
      paths_added: assoc.added,
      paths_removed: assoc.removed,
      catalog_revision: catalog.revision,
      catalog_changed: catalog.changed,
      tree_changed: tree.changed,
      changed: created > 0 || catalog.changed || assoc.added + assoc.removed > 0 || tree.changed,
    };
    if (summary.changed) {
      await db.repos.updateOne(
        { _id: repo._id },
        {
          $set: {
            last_sync: {
              finished_at: new Date(),
              revision: catalog.revision,
              units: summary.units,
              added: assoc.added,
              removed: assoc.removed,
            },
          },
        },
      );
    }
    logger.info({ event: 'sync.done', ...summary }, 'sync finished');
    return summary;
  } finally {
    await releaseSyncLease(db, repo._id, owner);
  }
}

/** Inserts units not yet known; returns how many were created. */
async function writeUnits(db: Database, plan: SyncPlan): Promise<number> {
  const known = await existingIds(
    db.server,
    db.units,
    plan.units.map((u) => u.unit._id),
  );
  const fresh: UnitDoc[] = [];
  const now = new Date();
  for (const p of plan.units) {
    if (known.has(p.unit._id)) continue;
    let downloaded = p.stored === true;
    if (!downloaded) {
      downloaded = true;
      for (const f of p.unit.files) {
        if (!(await fileMatches(f.storage_path, f))) {
          downloaded = false;
          break;
        }
      }
    }
    fresh.push({ ...p.unit, downloaded, created_at: now, download_lease: null });
  }
  for (let i = 0; i < fresh.length; i += 1000) {
    try {
      await db.units.insertMany(fresh.slice(i, i + 1000), { ordered: false });
    } catch (err) {
      // Another sync created some of the same units meanwhile: they are identical.
      if (!isDuplicateKey(err) && !(err as { writeErrors?: unknown }).writeErrors) throw err;
    }
  }
  return fresh.length;
}

function catalogEntries(plan: SyncPlan): NewCatalogEntry[] {
  const entries: NewCatalogEntry[] = [];
  for (const p of plan.units) {
    for (const f of p.unit.files) {
      const url = p.urls.get(f.storage_path);
      if (!url) continue;
      entries.push({
        path: f.storage_path,
        unit_id: p.unit._id,
        unit_type_id: p.unit.unit_type_id,
        url,
        checksum: f.checksum,
        checksum_algorithm: f.checksum_algorithm,
        size: f.size,
      });
    }
  }
  return entries;
}

async function writeAssociations(
  db: Database,
  repo: RepoDoc,
  plan: SyncPlan,
): Promise<{ added: number; removed: number }> {
  const current = await db.repoContentUnits.find({ repo_id: repo._id }).toArray();
  const byPath = new Map(current.map((c) => [c.relative_path, c]));
  const desired = new Map(plan.published.map((p) => [p.relative_path, p]));
  const removedPaths = current
    .filter((c) => desired.get(c.relative_path)?.unit_id !== c.unit_id)
    .map((c) => c.relative_path);
  const additions: RepoContentUnitDoc[] = [];
  for (const p of plan.published) {
    if (byPath.get(p.relative_path)?.unit_id === p.unit_id) continue;
    additions.push({
      repo_id: repo._id,
      unit_id: p.unit_id,
      unit_type_id: p.unit_type_id,
      relative_path: p.relative_path,
    });
  }
  for (let i = 0; i < removedPaths.length; i += 1000) {
    await db.repoContentUnits.deleteMany({
      repo_id: repo._id,
      relative_path: { $in: removedPaths.slice(i, i + 1000) },
    });
  }
  for (let i = 0; i < additions.length; i += 1000) {
    await db.repoContentUnits.insertMany(additions.slice(i, i + 1000), { ordered: false });
  }
  const removed = removedPaths.filter((r) => !desired.has(r)).length;
  return { added: additions.length, removed };
}
