/**
 * A sync's plan as the importer reads it from upstream metadata: its units
 * and the paths they are published at, spooled to files below the working
 * dir (spool.ts) instead of held in memory, then read back sorted and
 * without repeats by the writes (sync.ts). One directory per sync,
 * `<working>/sync/<repo>-XXXXXX`; a sync removes its own at the end and
 * those a dead sync of the same repository left behind at its start.
 */
import { mkdir, mkdtemp, readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { BadMetadata } from '../errors.ts';
import { isPlanDirOf, planDirPrefix, syncPlansDir } from '../storage/temp-files.ts';
import { Spool } from './spool.ts';
import type { PlannedUnit, PublishedFile, SyncPlan } from './types.ts';

/** A unit as spooled: its URLs as pairs (JSON has no Map). */
export interface UnitRecord {
  unit: PlannedUnit['unit'];
  urls: Array<[string, string]>;
  stored?: boolean;
}

/** A published path as spooled; `at` says where the importer found it, for error messages. */
export interface PublishedRecord extends PublishedFile {
  at?: string | undefined;
}

/**
 * The order of published paths: "/" before any other character, so the
 * paths below a directory follow its name at once (a file "a" is followed by
 * "a/b" when both are listed), as a walk of the tree with sorted names meets them.
 */
export function treeKey(relativePath: string): string {
  return relativePath.replaceAll('/', '\0');
}

/** What an importer's metadata forbids, and its error messages. */
export interface PathRules {
  /** Whether the metadata itself publishes `relativePath`. */
  reserved(relativePath: string): boolean;
  /** The error for `p`, at whose path an earlier entry publishes another unit. */
  conflict(p: PublishedRecord, first: PublishedRecord): Error;
  /** The error for a package at a path the metadata publishes. */
  clash(p: PublishedRecord): Error;
}

const where = (p: PublishedRecord) => (p.at ? `${p.at}: ` : '');

/** Any importer's plan, once its own rules were checked. */
const SAFETY_NET: PathRules = {
  reserved: () => false,
  conflict: (p) => new BadMetadata(`${where(p)}${p.relative_path} is listed twice with different contents`),
  clash: (p) => new BadMetadata(`${where(p)}${p.relative_path} clashes with metadata`),
};

export class Plan {
  readonly #dir: string;
  readonly #runChars: number | undefined;
  #spools = 0;
  readonly units: Spool<UnitRecord>;
  readonly published: Spool<PublishedRecord>;

  private constructor(dir: string, runChars: number | undefined) {
    this.#dir = dir;
    this.#runChars = runChars;
    this.units = this.spool((r) => r.unit._id);
    this.published = this.spool((r) => treeKey(r.relative_path));
  }

  /**
   * A plan for a sync of `repo` (its sync lease held, so any older plan
   * directory of the repository belongs to a dead sync and is removed).
   * `runChars`: memory per spool (spool.ts RUN_CHARS by default).
   */
  static async create(workingDir: string, repo: string, runChars?: number): Promise<Plan> {
    const parent = syncPlansDir(workingDir);
    await mkdir(parent, { recursive: true });
    for (const name of await readdir(parent)) {
      if (isPlanDirOf(name, repo)) await rm(path.join(parent, name), { recursive: true, force: true });
    }
    return new Plan(await mkdtemp(path.join(parent, planDirPrefix(repo))), runChars);
  }

  /** A further spool in the plan's directory (for the writes' own sorting). */
  spool<T>(key: (record: T) => string): Spool<T> {
    return new Spool<T>(path.join(this.#dir, `s${this.#spools++}`), { key, runChars: this.#runChars });
  }

  async unit(p: PlannedUnit): Promise<void> {
    const record: UnitRecord = { unit: p.unit, urls: [...p.urls] };
    if (p.stored) record.stored = true;
    await this.units.add(record);
  }

  /** `at`: where the importer found it (the start of an error message about it). */
  async publish(p: PublishedFile, at?: string): Promise<void> {
    await this.published.add(at === undefined ? p : { ...p, at });
  }

  /** Every unit and path of a plan held in memory (metadata, a manifest). */
  async add(plan: SyncPlan): Promise<void> {
    for (const u of plan.units) await this.unit(u);
    for (const p of plan.published) await this.publish(p);
  }

  /**
   * Reads the published paths once: throws the importer's errors for a path
   * listed with two units or one its metadata publishes, and BadMetadata for a
   * path below another (a file cannot be a directory too).
   */
  async check(rules: PathRules): Promise<void> {
    for await (const _ of this.#distinct(rules));
  }

  /** The published paths, sorted by treeKey, each once. */
  distinctPublished(): AsyncGenerator<PublishedRecord> {
    return this.#distinct(SAFETY_NET);
  }

  /** The units, sorted by `_id`, each once (the first listed). */
  async *distinctUnits(): AsyncGenerator<UnitRecord> {
    let last: string | undefined;
    for await (const u of this.units.sorted()) {
      if (u.unit._id === last) continue;
      last = u.unit._id;
      yield u;
    }
  }

  /** Removes the plan's files. */
  async discard(): Promise<void> {
    await rm(this.#dir, { recursive: true, force: true });
  }

  async *#distinct(rules: PathRules): AsyncGenerator<PublishedRecord> {
    let prev: PublishedRecord | undefined;
    let prevKey = '';
    for await (const p of this.published.sorted()) {
      const key = treeKey(p.relative_path);
      if (prev && key === prevKey) {
        if (p.unit_id !== prev.unit_id) throw rules.conflict(p, prev);
        continue;
      }
      if (prev && key.startsWith(`${prevKey}\0`)) {
        throw new BadMetadata(
          `${where(p)}${p.relative_path} would lie below ${prev.relative_path}, which is published as a file`,
        );
      }
      if (rules.reserved(p.relative_path)) throw rules.clash(p);
      prev = p;
      prevKey = key;
      yield p;
    }
  }
}
