/**
 * File importer: Pulp's PULP_MANIFEST format, one CSV line per file:
 * `relative/path,sha256,size`. Only the manifest is downloaded.
 */
import path from 'node:path';
import type { RepoDoc } from '../db/index.ts';
import { BadMetadata } from '../errors.ts';
import { isSafeRelativePath } from '../publish/index.ts';
import { unitId, unitStoragePath } from '../storage/index.ts';
import { fetchBuffer } from '../upstream/fetch.ts';
import type { ImporterDeps, PlannedUnit, PublishedFile, SyncPlan } from './types.ts';

export const MANIFEST = 'PULP_MANIFEST';

export interface ManifestEntry {
  relative_path: string;
  sha256: string;
  size: number;
  line: number;
}

/** Parses a manifest; collects every bad line and throws one BadMetadata naming them. */
export function parseManifest(text: string, source = MANIFEST): ManifestEntry[] {
  const entries: ManifestEntry[] = [];
  const problems: string[] = [];
  const seen = new Map<string, number>();
  const lines = text.split(/\r?\n/);
  lines.forEach((raw, i) => {
    const line = i + 1;
    if (raw.trim() === '') return;
    const fields = raw.split(',');
    if (fields.length !== 3) {
      problems.push(`line ${line}: expected 3 fields "path,sha256,size", got ${fields.length}`);
      return;
    }
    const [rel, sum, sizeText] = fields.map((f) => f.trim()) as [string, string, string];
    if (!isSafeRelativePath(rel)) {
      problems.push(`line ${line}: unsafe or empty path ${quoted(rel)}`);
      return;
    }
    if (!/^[0-9a-fA-F]{64}$/.test(sum)) {
      problems.push(`line ${line}: bad sha256 ${quoted(sum)}`);
      return;
    }
    if (!/^\d+$/.test(sizeText) || !Number.isSafeInteger(Number(sizeText))) {
      problems.push(`line ${line}: bad size ${quoted(sizeText)}`);
      return;
    }
    const prev = seen.get(rel);
    if (prev !== undefined) {
      problems.push(`line ${line}: duplicate path ${quoted(rel)} (first on line ${prev})`);
      return;
    }
    seen.set(rel, line);
    entries.push({ relative_path: rel, sha256: sum.toLowerCase(), size: Number(sizeText), line });
  });
  if (problems.length) {
    const more = problems.length > 3 ? ` (and ${problems.length - 3} more)` : '';
    throw new BadMetadata(`${source}: ${problems.slice(0, 3).join('; ')}${more}`);
  }
  return entries;
}

/** A field for an error message: quoted, at most 100 characters (a bad line may be megabytes long). */
function quoted(field: string): string {
  return JSON.stringify(field.length > 100 ? `${field.slice(0, 100)}…` : field);
}

/** URL of a repository-relative path below the feed, each segment percent-encoded. */
export function feedUrl(feed: string, relativePath: string): string {
  return new URL(relativePath.split('/').map(encodeURIComponent).join('/'), feed).toString();
}

export async function planFileSync(repo: RepoDoc, deps: ImporterDeps): Promise<SyncPlan> {
  const manifestUrl = feedUrl(repo.feed, MANIFEST);
  const text = (await fetchBuffer(manifestUrl, repo, deps.pool, { maxBytes: 256 * 1024 * 1024 })).toString(
    'utf8',
  );
  const entries = parseManifest(text, manifestUrl);
  const units = new Map<string, PlannedUnit>();
  const published: PublishedFile[] = [];
  for (const e of entries) {
    const basename = path.posix.basename(e.relative_path);
    const id = unitId('file', { name: basename, checksum: e.sha256, size: e.size });
    const storagePath = unitStoragePath(deps.storageRoot, 'file', e.sha256, basename);
    if (!units.has(id)) {
      units.set(id, {
        unit: {
          _id: id,
          unit_type_id: 'file',
          unit_key: { name: basename, checksum: e.sha256, size: e.size },
          files: [
            {
              relative_path: basename,
              size: e.size,
              checksum: e.sha256,
              checksum_algorithm: 'sha256',
              storage_path: storagePath,
            },
          ],
        },
        urls: new Map([[storagePath, feedUrl(repo.feed, e.relative_path)]]),
      });
    }
    published.push({
      relative_path: e.relative_path,
      unit_id: id,
      unit_type_id: 'file',
      target: storagePath,
    });
  }
  return { units: [...units.values()], published };
}
