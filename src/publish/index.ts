/**
 * Published trees: one symlink per file, from the published root to the
 * file's storage path (dangling until the file is downloaded).
 *
 * Layout: `<published>/<published_path>` is itself a symlink to a complete
 * tree under `<published>/.versions/`. Republishing builds a new tree and
 * swaps that one link with an atomic rename, so a client never sees a mix
 * of old and new files (metadata pointing at unpublished packages, or the
 * reverse). An unchanged tree is left alone. The links of the previous tree
 * that the new one lacks are kept in it for a while (keep.ts).
 */
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readlink, rename, rm, symlink } from 'node:fs/promises';
import path from 'node:path';
import { carryKept, type Kept, keptManifest, pruneKept, readKept, writeKept } from './keep.ts';
import { VERSIONS_DIR, walk } from './walk.ts';

export { pruneKept } from './keep.ts';
export { VERSIONS_DIR } from './walk.ts';

/** Relative path inside a repository → absolute target path. */
export type Tree = Map<string, string>;

/** Checks a repository-relative path: no absolute, `..`, `.`, empty segments, backslashes or NUL. */
export function isSafeRelativePath(p: string): boolean {
  if (p === '' || p.startsWith('/') || p.includes('\0') || p.includes('\\')) return false;
  return p.split('/').every((seg) => seg !== '' && seg !== '.' && seg !== '..');
}

function checkPath(rel: string): void {
  if (!isSafeRelativePath(rel)) throw new Error(`unsafe path in tree: ${rel}`);
}

/** The directory a published tree's top link points at, or undefined when there is none. */
async function currentBase(root: string, publishedPath: string): Promise<string | undefined> {
  const top = path.join(root, publishedPath);
  try {
    return path.resolve(path.dirname(top), await readlink(top));
  } catch {
    return undefined;
  }
}

/** Reads the tree currently published at `<root>/<publishedPath>` (empty map when none). */
export async function readPublished(root: string, publishedPath: string): Promise<Tree> {
  const tree: Tree = new Map();
  const base = await currentBase(root, publishedPath);
  if (base) for await (const [rel, target] of walk(base)) tree.set(rel, target);
  return tree;
}

/**
 * A tree to publish, read once per pass: [relative path, target] pairs, each
 * path once. A sync streams it from its plan (a Map would hold every path).
 */
export type TreeSource = () => AsyncIterable<readonly [string, string]> | Iterable<readonly [string, string]>;

/**
 * Whether the tree at `base` is exactly `tree` plus the links `kept` there:
 * every link of `tree` is there with its target (read one by one) and is not
 * a kept one, and `base` holds no other link than the kept ones.
 */
async function sameTree(base: string, tree: TreeSource, kept: Kept): Promise<boolean> {
  let n = kept.size;
  for await (const [rel, target] of tree()) {
    n++;
    checkPath(rel);
    if (kept.has(rel)) return false;
    const got = await readlink(path.join(base, rel)).catch(() => undefined);
    if (got !== target) return false;
  }
  for await (const _ of walk(base)) if (--n < 0) return false;
  return n === 0;
}

export interface PublishOptions {
  /** How long the previous tree's links the new one lacks stay published (ms; default 0: not kept). */
  keepMs?: number;
  /** The clock of the kept links' expiries (default Date.now). */
  now?: () => number;
}

/**
 * Publishes `tree` atomically; returns whether anything changed and how many
 * links of earlier trees are kept in it. Expired kept links of every tree
 * under `root` are pruned first (keep.ts). The new tree is built beside the
 * current one, link by link as `tree` yields them, then the current tree's
 * links it lacks are carried into it (for `opts.keepMs`), and it is swapped
 * in by one rename; on failure it is removed and the current tree stays as
 * it was.
 */
export async function publishTree(
  root: string,
  publishedPath: string,
  tree: Tree | TreeSource,
  opts: PublishOptions = {},
): Promise<{ changed: boolean; kept: number }> {
  if (!isSafeRelativePath(publishedPath)) throw new Error(`unsafe published path: ${publishedPath}`);
  const source: TreeSource = typeof tree === 'function' ? tree : () => tree;
  const top = path.join(root, publishedPath);
  const hasLink = await lstat(top).then(
    (s) => s.isSymbolicLink(),
    () => false,
  );
  const base = hasLink ? await currentBase(root, publishedPath) : undefined;
  const now = (opts.now ?? Date.now)();
  await pruneKept(root, now);
  const kept = base ? await readKept(base) : new Map<string, number>();
  if (base && (await sameTree(base, source, kept))) return { changed: false, kept: kept.size };

  const versionName = `${publishedPath.replace(/\//g, '%')}@${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
  const versionDir = path.join(root, VERSIONS_DIR, versionName);
  await mkdir(versionDir, { recursive: true });
  let carried: Kept = new Map();
  try {
    let made = '.';
    for await (const [rel, target] of source()) {
      checkPath(rel);
      const dir = path.posix.dirname(rel);
      if (dir !== made) {
        await mkdir(path.join(versionDir, dir), { recursive: true });
        made = dir;
      }
      await symlink(target, path.join(versionDir, rel));
    }
    if (base) carried = await carryKept(base, versionDir, kept, opts.keepMs ?? 0, now);
    await writeKept(versionDir, carried);
  } catch (err) {
    await removeVersion(root, versionDir);
    throw err;
  }

  await mkdir(path.dirname(top), { recursive: true });
  const previous = hasLink ? await readlink(top) : undefined;
  const tmpLink = `${top}.${randomBytes(4).toString('hex')}.tmp`;
  await symlink(versionDir, tmpLink);
  await rename(tmpLink, top);
  if (previous) await removeVersion(root, path.resolve(path.dirname(top), previous));
  return { changed: true, kept: carried.size };
}

/** Removes a repository's published tree. */
export async function unpublish(root: string, publishedPath: string): Promise<void> {
  const top = path.join(root, publishedPath);
  let target: string | undefined;
  try {
    target = await readlink(top);
  } catch {
    return;
  }
  await rm(top, { force: true });
  await removeVersion(root, path.resolve(path.dirname(top), target));
}

async function removeVersion(root: string, dir: string): Promise<void> {
  // Only ever delete inside <root>/.versions.
  const versions = path.join(root, VERSIONS_DIR) + path.sep;
  if (!dir.startsWith(versions)) return;
  await rm(dir, { recursive: true, force: true });
  await rm(keptManifest(dir), { force: true });
}
