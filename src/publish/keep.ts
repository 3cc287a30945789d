/**
 * Files of the previous tree kept through a republish (`publish.keep_previous`).
 *
 * A client that read `repomd.xml` or `InRelease` just before a sync fetches
 * the files it names just after: the hashed repodata, by-hash indexes, a
 * package the new metadata dropped. So when a tree replaces another, every
 * link of the previous tree that the new one lacks is carried into the new
 * one ("kept"), with an expiry: now + keep_previous for a link dropped now,
 * its first expiry for one already kept. Kept links live in the tree itself,
 * so every serving path (content daemon, `serve`, Apache's fast path) serves
 * them with no change of its own.
 *
 * A version dir's kept links and their expiries are listed in a manifest
 * beside it, `<published>/.versions/<version>.kept` (JSON, path → expiry in
 * ms since the epoch): outside the tree, never served. pruneKept removes the
 * expired links in place: no current metadata names them, so unlinking them
 * from the live tree is safe.
 */
import { randomBytes } from 'node:crypto';
import {
  lstat,
  mkdir,
  readdir,
  readFile,
  rename,
  rm,
  rmdir,
  symlink,
  unlink,
  writeFile,
} from 'node:fs/promises';
import path from 'node:path';
import { VERSIONS_DIR, walk } from './walk.ts';

/** Kept links of one version dir: relative path → expiry (ms since the epoch). */
export type Kept = Map<string, number>;

const SUFFIX = '.kept';

/** The manifest of the kept links of `versionDir`. */
export const keptManifest = (versionDir: string): string => `${versionDir}${SUFFIX}`;

/** The kept links of `versionDir` (empty when it has none, or its manifest is unreadable). */
export async function readKept(versionDir: string): Promise<Kept> {
  let text: string;
  try {
    text = await readFile(keptManifest(versionDir), 'utf8');
  } catch {
    return new Map();
  }
  const kept: Kept = new Map();
  try {
    const o = JSON.parse(text) as Record<string, unknown>;
    for (const [rel, exp] of Object.entries(o)) if (typeof exp === 'number') kept.set(rel, exp);
  } catch {
    // A torn or foreign file: its links are no longer known as kept (they stay until republished).
  }
  return kept;
}

/** Writes (atomically) or, when `kept` is empty, removes the manifest of `versionDir`. */
export async function writeKept(versionDir: string, kept: Kept): Promise<void> {
  const file = keptManifest(versionDir);
  if (kept.size === 0) return void (await rm(file, { force: true }));
  const tmp = `${file}.${randomBytes(4).toString('hex')}.tmp`;
  await writeFile(tmp, JSON.stringify(Object.fromEntries(kept)));
  await rename(tmp, file);
}

/**
 * Carries into `newDir` every link of `oldDir` that `newDir` lacks and whose
 * expiry (from `oldKept`, else now + keepMs) is still ahead; returns the
 * carried links. A path that collides with the new tree's directories or
 * files (a link where the new tree has a directory, or the reverse) is not carried.
 */
export async function carryKept(
  oldDir: string,
  newDir: string,
  oldKept: Kept,
  keepMs: number,
  now: number,
): Promise<Kept> {
  const kept: Kept = new Map();
  if (keepMs <= 0) return kept;
  for await (const [rel, target] of walk(oldDir)) {
    const expires = oldKept.get(rel) ?? now + keepMs;
    if (expires <= now) continue;
    if (!(await makeParents(newDir, rel))) continue;
    const at = path.join(newDir, rel);
    if (
      await lstat(at).then(
        () => true,
        () => false,
      )
    )
      continue;
    await symlink(target, at);
    kept.set(rel, expires);
  }
  return kept;
}

/**
 * Makes the directories of `rel` in `dir`, unless one of them is something
 * else there (a link of the new tree, never followed): then returns false.
 */
async function makeParents(dir: string, rel: string): Promise<boolean> {
  const segments = rel.split('/').slice(0, -1);
  let at = dir;
  for (const seg of segments) {
    at = path.join(at, seg);
    const st = await lstat(at).catch(() => undefined);
    if (!st) await mkdir(at);
    else if (!st.isDirectory()) return false;
  }
  return true;
}

/**
 * Removes the expired kept links of `versionDir` in place (and the
 * directories they leave empty); returns the kept links that remain.
 */
export async function pruneVersion(versionDir: string, now: number): Promise<Kept> {
  const kept = await readKept(versionDir);
  let removed = 0;
  for (const [rel, expires] of kept) {
    if (expires > now) continue;
    kept.delete(rel);
    removed++;
    await unlink(path.join(versionDir, rel)).catch(() => {});
    // Empty directories up to the tree's top go too (rmdir fails on a non-empty one: stop there).
    for (let dir = path.posix.dirname(rel); dir !== '.'; dir = path.posix.dirname(dir)) {
      if (
        !(await rmdir(path.join(versionDir, dir)).then(
          () => true,
          () => false,
        ))
      )
        break;
    }
  }
  if (removed > 0) await writeKept(versionDir, kept);
  return kept;
}

/**
 * Removes the expired kept links of every published tree under
 * `publishedRoot`, and the manifests of version dirs that are gone.
 * Returns how many kept links remain.
 */
export async function pruneKept(publishedRoot: string, now: number = Date.now()): Promise<{ kept: number }> {
  const dir = path.join(publishedRoot, VERSIONS_DIR);
  let names: string[];
  try {
    names = await readdir(dir);
  } catch {
    return { kept: 0 };
  }
  let kept = 0;
  for (const name of names) {
    if (!name.endsWith(SUFFIX)) continue;
    const versionDir = path.join(dir, name.slice(0, -SUFFIX.length));
    if (
      !(await lstat(versionDir).then(
        () => true,
        () => false,
      ))
    ) {
      await rm(path.join(dir, name), { force: true });
      continue;
    }
    kept += (await pruneVersion(versionDir, now)).size;
  }
  return { kept };
}
