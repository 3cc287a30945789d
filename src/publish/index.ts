/**
 * Published trees: one symlink per file, from the published root to the
 * file's storage path (dangling until the file is downloaded).
 *
 * Layout: `<published>/<published_path>` is itself a symlink to a complete
 * tree under `<published>/.versions/`. Republishing builds a new tree and
 * swaps that one link with an atomic rename, so a client never sees a mix
 * of old and new files (metadata pointing at unpublished packages, or the
 * reverse). An unchanged tree is left alone.
 */
import { randomBytes } from 'node:crypto';
import { lstat, mkdir, readdir, readlink, rename, rm, symlink } from 'node:fs/promises';
import path from 'node:path';

export const VERSIONS_DIR = '.versions';

/** Relative path inside a repository → absolute target path. */
export type Tree = Map<string, string>;

/** Checks a repository-relative path: no absolute, `..`, `.`, empty segments, backslashes or NUL. */
export function isSafeRelativePath(p: string): boolean {
  if (p === '' || p.startsWith('/') || p.includes('\0') || p.includes('\\')) return false;
  return p.split('/').every((seg) => seg !== '' && seg !== '.' && seg !== '..');
}

/** Reads the tree currently published at `<root>/<publishedPath>` (empty map when none). */
export async function readPublished(root: string, publishedPath: string): Promise<Tree> {
  const tree: Tree = new Map();
  const top = path.join(root, publishedPath);
  let base: string;
  try {
    base = path.resolve(path.dirname(top), await readlink(top));
  } catch {
    return tree;
  }
  const walk = async (dir: string, rel: string): Promise<void> => {
    let names: import('node:fs').Dirent[];
    try {
      names = await readdir(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const d of names) {
      const r = rel ? `${rel}/${d.name}` : d.name;
      const full = path.join(dir, d.name);
      if (d.isSymbolicLink()) tree.set(r, await readlink(full));
      else if (d.isDirectory()) await walk(full, r);
    }
  };
  await walk(base, '');
  return tree;
}

function sameTree(a: Tree, b: Tree): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

/** Publishes `tree` atomically; returns whether anything changed. */
export async function publishTree(
  root: string,
  publishedPath: string,
  tree: Tree,
): Promise<{ changed: boolean }> {
  if (!isSafeRelativePath(publishedPath)) throw new Error(`unsafe published path: ${publishedPath}`);
  for (const rel of tree.keys()) if (!isSafeRelativePath(rel)) throw new Error(`unsafe path in tree: ${rel}`);
  const current = await readPublished(root, publishedPath);
  const top = path.join(root, publishedPath);
  const hasLink = await lstat(top).then(
    (s) => s.isSymbolicLink(),
    () => false,
  );
  if (hasLink && sameTree(current, tree)) return { changed: false };

  const versionName = `${publishedPath.replace(/\//g, '%')}@${Date.now().toString(36)}-${randomBytes(4).toString('hex')}`;
  const versionDir = path.join(root, VERSIONS_DIR, versionName);
  await mkdir(versionDir, { recursive: true });
  const dirs = new Set<string>();
  for (const rel of tree.keys()) dirs.add(path.dirname(rel));
  for (const d of [...dirs].sort()) if (d !== '.') await mkdir(path.join(versionDir, d), { recursive: true });
  for (const [rel, target] of tree) await symlink(target, path.join(versionDir, rel));

  await mkdir(path.dirname(top), { recursive: true });
  const previous = hasLink ? await readlink(top) : undefined;
  const tmpLink = `${top}.${randomBytes(4).toString('hex')}.tmp`;
  await symlink(versionDir, tmpLink);
  await rename(tmpLink, top);
  if (previous) await removeVersion(root, path.resolve(path.dirname(top), previous));
  return { changed: true };
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
  if (dir.startsWith(versions)) await rm(dir, { recursive: true, force: true });
}
