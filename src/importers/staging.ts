/**
 * Eager repository metadata (repomd.xml and repodata/*, Release and
 * Packages indexes): downloaded into temp files in the working dir while
 * hashing, verified against the checksums the parent metadata lists, and
 * committed to content-addressed storage only when the whole plan has
 * succeeded. A failed plan discards its temp files and leaves storage and
 * the published tree as they were.
 */
import { createHash, type Hash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rm } from 'node:fs/promises';
import path from 'node:path';
import type { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { ChecksumAlgorithm, RepoDoc } from '../db/index.ts';
import { BadMetadata, FeedUnreachable } from '../errors.ts';
import { isSafeRelativePath } from '../publish/index.ts';
import { commitFile, fileMatches, tempPath, unitId, unitStoragePath } from '../storage/index.ts';
import { redactUrl } from '../upstream/describe.ts';
import { feedError, openFeedFile } from '../upstream/fetch.ts';
import { feedUrl } from './file.ts';
import type { ImporterDeps, PlannedUnit, PublishedFile } from './types.ts';

export interface ExpectedDigest {
  algorithm: ChecksumAlgorithm;
  checksum: string;
}

export interface FetchOptions {
  /** Checksums the file must match (all of them). */
  digests?: ExpectedDigest[];
  size?: number | undefined;
  /** A 404 returns undefined instead of failing. */
  optional?: boolean;
  /** The metadata file that lists this one, for error messages. */
  listedIn?: string;
}

export interface StagedFile {
  /** Path inside the repository (the published path). */
  relative_path: string;
  url: string;
  /** Temp file in the working dir until commit. */
  temp: string;
  size: number;
  sha256: string;
  /** Every digest computed while downloading (sha256 plus the expected ones). */
  digests: Partial<Record<ChecksumAlgorithm, string>>;
}

export class MetadataStage {
  readonly #files: StagedFile[] = [];
  /** Extra published paths of a staged file (by-hash copies). */
  readonly #aliases: Array<{ relative_path: string; file: StagedFile }> = [];
  readonly #repo: RepoDoc;
  readonly #deps: ImporterDeps;
  readonly #unitType: string;

  constructor(repo: RepoDoc, deps: ImporterDeps, unitType: string) {
    this.#repo = repo;
    this.#deps = deps;
    this.#unitType = unitType;
  }

  /** Every staged file, in fetch order. */
  get files(): readonly StagedFile[] {
    return this.#files;
  }

  /** Paths published so far (staged files and their aliases). */
  has(relativePath: string): boolean {
    return (
      this.#files.some((f) => f.relative_path === relativePath) ||
      this.#aliases.some((a) => a.relative_path === relativePath)
    );
  }

  /**
   * Downloads `relativePath` (below the feed) into a temp file and verifies
   * it. Throws FeedUnreachable (transport, HTTP error) or BadMetadata
   * (checksum or size mismatch, a listed file missing).
   */
  async fetch(relativePath: string, opts: FetchOptions = {}): Promise<StagedFile | undefined> {
    if (!isSafeRelativePath(relativePath)) {
      throw new BadMetadata(`${opts.listedIn ?? 'metadata'}: unsafe path "${relativePath}"`);
    }
    const url = feedUrl(this.#repo.feed, relativePath);
    const temp = await tempPath(this.#deps.workingDir, relativePath);
    const algorithms = new Set<ChecksumAlgorithm>([
      'sha256',
      ...(opts.digests ?? []).map((d) => d.algorithm),
    ]);
    const got = await download(url, temp, algorithms, this.#repo, this.#deps);
    if (got === 'missing') {
      if (opts.optional) return undefined;
      if (opts.listedIn) {
        throw new BadMetadata(`${relativePath} is listed in ${opts.listedIn} but the feed answers HTTP 404`);
      }
      throw new FeedUnreachable(`cannot fetch ${redactUrl(url)}: HTTP 404`);
    }
    const file: StagedFile = {
      relative_path: relativePath,
      url,
      temp,
      size: got.size,
      sha256: got.digests.sha256!,
      digests: got.digests,
    };
    // Tracked before verification so discard() removes it on failure.
    this.#files.push(file);
    if (opts.size !== undefined && got.size !== opts.size) {
      throw new BadMetadata(`${relativePath}: size ${got.size}, ${listed(opts)} ${opts.size}`);
    }
    for (const d of opts.digests ?? []) {
      const digest = got.digests[d.algorithm];
      if (digest !== d.checksum.toLowerCase()) {
        throw new BadMetadata(
          `${relativePath}: ${d.algorithm} ${digest}, ${listed(opts)} ${d.checksum.toLowerCase()} (checksum mismatch)`,
        );
      }
    }
    return file;
  }

  /** Publishes a staged file under another path too (its by-hash name). */
  alias(relativePath: string, file: StagedFile): void {
    if (!isSafeRelativePath(relativePath)) throw new BadMetadata(`unsafe path "${relativePath}"`);
    if (!this.has(relativePath)) this.#aliases.push({ relative_path: relativePath, file });
  }

  /**
   * Moves every staged file into content-addressed storage (skipped when an
   * identical file is there already) and returns its units (stored eagerly)
   * and published paths.
   */
  async commit(): Promise<{ units: PlannedUnit[]; published: PublishedFile[] }> {
    const units = new Map<string, PlannedUnit>();
    const published: PublishedFile[] = [];
    const ids = new Map<StagedFile, { id: string; target: string }>();
    for (const f of this.#files) {
      const name = path.posix.basename(f.relative_path);
      const target = unitStoragePath(this.#deps.storageRoot, this.#unitType, f.sha256, name);
      const id = unitId(this.#unitType, { name, checksum: f.sha256, size: f.size });
      ids.set(f, { id, target });
      const expected = { size: f.size, checksum: f.sha256, checksum_algorithm: 'sha256' as const };
      if (await fileMatches(target, expected)) await rm(f.temp, { force: true });
      else await commitFile(f.temp, target);
      if (!units.has(id)) {
        units.set(id, {
          unit: {
            _id: id,
            unit_type_id: this.#unitType,
            unit_key: { name, checksum: f.sha256, size: f.size },
            files: [{ relative_path: name, ...expected, storage_path: target }],
          },
          urls: new Map(),
          stored: true,
        });
      }
      published.push({ relative_path: f.relative_path, unit_id: id, unit_type_id: this.#unitType, target });
    }
    for (const a of this.#aliases) {
      const { id, target } = ids.get(a.file)!;
      published.push({ relative_path: a.relative_path, unit_id: id, unit_type_id: this.#unitType, target });
    }
    this.#files.length = 0;
    this.#aliases.length = 0;
    return { units: [...units.values()], published };
  }

  /** Removes the temp files of anything not committed (call in `finally`). */
  async discard(): Promise<void> {
    await Promise.all(this.#files.map((f) => rm(f.temp, { force: true })));
    this.#files.length = 0;
    this.#aliases.length = 0;
  }
}

function listed(opts: FetchOptions): string {
  return opts.listedIn ? `${opts.listedIn} says` : 'expected';
}

/** Streams `url` into `dest` while hashing; 'missing' on HTTP 404 or 410. */
async function download(
  url: string,
  dest: string,
  algorithms: Set<ChecksumAlgorithm>,
  repo: RepoDoc,
  deps: ImporterDeps,
): Promise<'missing' | { size: number; digests: Partial<Record<ChecksumAlgorithm, string>> }> {
  const res = await openFeedFile(url, repo, deps.pool, { missingOk: true });
  if (res === 'missing') return 'missing';
  const hashes = new Map<ChecksumAlgorithm, Hash>([...algorithms].map((a) => [a, createHash(a)]));
  let size = 0;
  const out = createWriteStream(dest);
  try {
    await pipeline(
      res.body,
      async function* (source: AsyncIterable<Buffer>) {
        for await (const chunk of source) {
          size += chunk.length;
          deps.heap?.bytes(chunk.length);
          for (const h of hashes.values()) h.update(chunk);
          yield chunk;
        }
      },
      out as Writable,
    );
  } catch (err) {
    await rm(dest, { force: true });
    throw feedError(err, url);
  }
  const length = Number(res.headers['content-length']);
  if (Number.isFinite(length) && res.headers['content-length'] !== undefined && length !== size) {
    await rm(dest, { force: true });
    throw new FeedUnreachable(`cannot fetch ${redactUrl(url)}: got ${size} of ${length} bytes`);
  }
  const digests: Partial<Record<ChecksumAlgorithm, string>> = {};
  for (const [a, h] of hashes) digests[a] = h.digest('hex');
  return { size, digests };
}
