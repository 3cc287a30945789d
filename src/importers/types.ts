/** What an importer produces from upstream metadata, before anything is written. */
import type { RepoDoc, UnitDoc } from '../db/index.ts';
import type { Logger } from '../log.ts';
import type { DispatcherPool } from '../upstream/dispatcher.ts';
import type { HeapGuard } from './heap-guard.ts';
import type { Plan } from './plan.ts';

export interface PlannedUnit {
  unit: Omit<UnitDoc, 'downloaded' | 'created_at' | 'download_lease'>;
  /** Upstream URL of each file, by storage path. */
  urls: Map<string, string>;
  /** True when the importer already stored the files (eager metadata). */
  stored?: boolean;
}

export interface PublishedFile {
  /** Path inside the repository's published tree. */
  relative_path: string;
  unit_id: string;
  unit_type_id: string;
  /** The storage path the link points at. */
  target: string;
}

/** A plan held in memory (a manifest, the metadata files); large ones go to a Plan (plan.ts). */
export interface SyncPlan {
  units: PlannedUnit[];
  published: PublishedFile[];
}

export interface ImporterDeps {
  pool: DispatcherPool;
  storageRoot: string;
  workingDir: string;
  logger: Logger;
  /** Told the bytes each download brings (the sync's heap guard). */
  heap?: Pick<HeapGuard, 'bytes'>;
}

/**
 * Reads upstream metadata into `plan` (spooled to disk, see plan.ts) as it
 * streams; throws BadMetadata / FeedUnreachable. Writes nothing to the DB.
 */
export type Importer = (repo: RepoDoc, deps: ImporterDeps, plan: Plan) => Promise<void>;
