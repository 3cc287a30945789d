/**
 * Documents stored in MongoDB. Collection and field names follow Pulp 2
 * where it had them (lazy_content_catalog, deferred_download, units'
 * `downloaded` flag) so the model is recognisable.
 */
import type { ObjectId } from 'mongodb';

export type RepoType = 'file' | 'yum' | 'deb';
export type ChecksumAlgorithm = 'md5' | 'sha1' | 'sha224' | 'sha256' | 'sha384' | 'sha512';

/** Upstream connection settings of a repository (its importer, in Pulp's terms). */
export interface UpstreamSettings {
  /** PEM text of the CA bundle that signs the feed's certificate. */
  ca_cert?: string | undefined;
  /** PEM text of the TLS client certificate and key presented to the feed. */
  client_cert?: string | undefined;
  client_key?: string | undefined;
  /** Verify the feed's TLS certificate (default true). */
  tls_verify: boolean;
  /** HTTP(S) proxy URL, credentials included if needed. */
  proxy_url?: string | undefined;
  basic_auth?: { username: string; password: string } | undefined;
  /** Extra request headers sent to the feed (`repo create/update --header`), in order. */
  headers?: Array<{ name: string; value: string }> | undefined;
  /** Most connections open to the feed's host at once, per process (undici's per-origin limit; default 64). */
  max_connections?: number | undefined;
  /** Most requests per second started to the feed, per process (default: no limit). */
  rate_limit?: number | undefined;
}

/**
 * How a repository's content reaches storage:
 * - on_demand: published at sync, each file fetched when first asked for (streamer) or swept;
 * - background: as on_demand, and the sync queues every unit not yet stored for the sweep;
 * - immediate: the sync downloads every unit not yet stored before it publishes the new tree;
 * - streamed: misses are streamed to clients and never saved nor queued.
 */
export type DownloadPolicy = 'on_demand' | 'background' | 'immediate' | 'streamed';
export const DOWNLOAD_POLICIES: readonly DownloadPolicy[] = [
  'on_demand',
  'background',
  'immediate',
  'streamed',
];

export interface RepoDoc {
  /** The repository name. */
  _id: string;
  type: RepoType;
  feed: string;
  /** Catalog entries of this repository carry this importer id. */
  importer_id: string;
  upstream: UpstreamSettings;
  /** Entitlement: when set, clients must present a certificate signed by this CA (PEM). */
  protection?: { ca_cert: string } | undefined;
  /** Published path below the published root (and below /pulp/content/). */
  published_path: string;
  /** Type-specific options (deb dists/components/architectures, ...). */
  options?: Record<string, unknown> | undefined;
  created_at: Date;
  last_sync?:
    | { finished_at: Date; revision: number; units: number; added: number; removed: number }
    | undefined;
  /** OpenPGP public key (binary packets, base64) that must sign the upstream metadata; absent: not checked. */
  gpg_key?: string | undefined;
  /** Download policy (absent: on_demand). Takes effect at the next sync. */
  policy?: DownloadPolicy | undefined;
  /** The policy of the last successful sync: the one the streamer follows (absent: `policy`). */
  policy_in_force?: DownloadPolicy | undefined;
  /** Scheduled sync every this many ms (absent or null: off). */
  sync_interval_ms?: number | null | undefined;
  /** A sync asked for outside the schedule (upstream drift), run by the scheduler once; null when none. */
  sync_requested?: { at: Date; reason: string } | null | undefined;
  /** The last sync, whoever ran it (CLI or scheduler); written by src/repos/index.ts. */
  sync_state?: SyncState | undefined;
}

/** How the last sync of a repository went; the scheduler derives the next one from it. */
export interface SyncState {
  last_started_at: Date;
  /** Absent while the first sync runs. */
  last_finished_at?: Date | undefined;
  last_result?: 'ok' | 'failed' | undefined;
  last_error?: string | null | undefined;
  last_duration_ms?: number | undefined;
  /** Failed syncs in a row (0 after a success). */
  failures: number;
}

export interface UnitFile {
  /** Path of the file inside the unit (its basename for single-file units). */
  relative_path: string;
  size: number;
  checksum: string;
  checksum_algorithm: ChecksumAlgorithm;
  /** Absolute path in permanent storage. */
  storage_path: string;
}

export interface UnitDoc {
  /** Stable id derived from the unit key. */
  _id: string;
  unit_type_id: string;
  /** Natural key of the unit (type specific). */
  unit_key: Record<string, unknown>;
  files: UnitFile[];
  /** Pulp 2's flag: true once every file is in storage and verified. */
  downloaded: boolean;
  /** Lease taken by a download task while it fetches this unit (no two tasks fetch one unit). */
  download_lease?: { owner: string; expires_at: Date } | null | undefined;
  created_at: Date;
  /**
   * When associations of the unit were last removed (a re-sync dropped it, a repository was
   * deleted): with created_at, the start of its orphan protection (src/storage/orphans.ts).
   */
  unassociated_at?: Date | undefined;
  /**
   * Set when every catalog entry of a file of the unit answered 404 or 410 upstream (upstream
   * drift): when, and the status; cleared by the next fetch that succeeds. A sync leaves it alone.
   */
  gone_upstream?: { at: Date; status: number } | null | undefined;
  /** Type-specific metadata (package NEVRA, ...). */
  metadata?: Record<string, unknown> | undefined;
}

/** When a stored unit file was last served (src/storage/access.ts; reclaim reads it). */
export interface UnitAccessDoc {
  /** The storage path of the file. */
  _id: string;
  last_served_at: Date;
}

export interface RepoContentUnitDoc {
  _id?: ObjectId;
  repo_id: string;
  unit_id: string;
  unit_type_id: string;
  /** Where the unit's file is published inside the repository. */
  relative_path: string;
}

export interface CatalogEntryDoc {
  /** `catalogEntryId(importer_id, revision, path)` (src/catalog), so lookups read by _id. */
  _id?: string;
  /** Absolute storage path of the file: the lookup key. */
  path: string;
  importer_id: string;
  unit_id: string;
  unit_type_id: string;
  /** Real upstream URL. */
  url: string;
  checksum: string;
  checksum_algorithm: ChecksumAlgorithm;
  size?: number | undefined;
  revision: number;
  data?: Record<string, unknown> | undefined;
  /** Set when bytes from this entry failed verification; skipped until then. */
  failed_until?: Date | null | undefined;
  last_error?: string | undefined;
}

export type DeferredState = 'pending' | 'failed';

/** A unit named by id and type: what its deferred_download entry is keyed on. */
export interface UnitRef {
  unit_id: string;
  unit_type_id: string;
}

/** The _id of a unit's deferred_download entry (one per unit). */
export function deferredId(unit: UnitRef): string {
  return `${unit.unit_type_id}:${unit.unit_id}`;
}

/** A new, unleased deferred_download entry for `unit`, claimable from `notBefore` (default `now`). */
export function newDeferredEntry(
  unit: UnitRef,
  now: Date,
  opts: { error?: string | null; notBefore?: Date } = {},
): DeferredDownloadDoc {
  return {
    _id: deferredId(unit),
    unit_id: unit.unit_id,
    unit_type_id: unit.unit_type_id,
    state: 'pending',
    created_at: now,
    lease_owner: null,
    lease_expires_at: null,
    attempts: 0,
    last_error: opts.error ?? null,
    next_attempt_at: opts.notBefore ?? now,
  };
}

export interface DeferredDownloadDoc {
  /** `deferredId(unit)`: `<unit_type_id>:<unit_id>`, so the entry of a unit is found by _id. */
  _id: string;
  unit_id: string;
  unit_type_id: string;
  state: DeferredState;
  created_at: Date;
  /** Lease: which worker holds the entry, and until when. */
  lease_owner?: string | null;
  lease_expires_at?: Date | null;
  attempts: number;
  last_error?: string | null;
  /** Not claimed before this time (exponential backoff). */
  next_attempt_at: Date;
}

/** Monotonic counters (catalog revisions per importer). */
export interface CounterDoc {
  _id: string;
  value: number;
  /** Catalog revisions (`catalog:<importer>#<n>`): set once every entry of the revision is written. */
  digest?: string | undefined;
  entries?: number | undefined;
  /** Catalog revisions: when a newer revision was put in force (its entries stay for publish.keep_previous). */
  superseded_at?: Date | undefined;
  /** Catalog revisions: set once a superseded revision's entries are deleted. */
  retired?: boolean | undefined;
}

/** A lease decided by a unique insert (`sync:<repo>`): atomic on MongoDB and FerretDB. */
export interface LockDoc {
  _id: string;
  owner: string;
  expires_at: Date;
}

export type TaskRunKind = 'sweep' | 'download_repo';

/** One finished task run (collection task_runs, about the last 200; see src/tasks/runs.ts). */
export interface TaskRunDoc {
  _id?: ObjectId;
  kind: TaskRunKind;
  /** The worker id of the run (`host:pid:random`). */
  worker: string;
  /** download_repo: the repository. */
  repo?: string | undefined;
  started_at: Date;
  finished_at: Date;
  /** Units taken on: queue entries claimed (sweep) or units considered (download_repo). */
  claimed: number;
  stored: number;
  /** Units that could not be stored. */
  failed: number;
  files: number;
  bytes: number;
  seconds: number;
}

/**
 * The health of one upstream origin (collection remote_health, src/upstream/health.ts): consecutive
 * connection failures, and while blocked, when the next probe is due.
 */
export interface RemoteHealthDoc {
  /** The origin, `scheme://host:port` of the URL fetched. */
  _id: string;
  /** Connection failures since the last answer. */
  failures: number;
  /** When it was blocked (null: not blocked). */
  blocked_at: Date | null;
  /** While blocked: when the next probe is due (the probe claims it by moving it on). */
  next_probe_at: Date | null;
  /** While blocked: the wait after the next probe (doubled by each probe, up to remotes.probe_max). */
  probe_backoff_ms: number | null;
  last_error: string | null;
  last_failure_at: Date | null;
  last_ok_at: Date | null;
  /** The feed of the repository whose request failed last (its TLS and proxy settings are the probe's). */
  feed: string | null;
}
