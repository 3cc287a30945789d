/** Reading a published tree's links (shared by index.ts and keep.ts). */
import type { Dirent } from 'node:fs';
import { readdir, readlink } from 'node:fs/promises';
import path from 'node:path';

/** Where the version dirs live, under the published root. */
export const VERSIONS_DIR = '.versions';

/** The links below `base`, depth first: [relative path, target]. */
export async function* walk(base: string, rel = ''): AsyncGenerator<[string, string]> {
  const dir = rel ? path.join(base, rel) : base;
  let names: Dirent[];
  try {
    names = await readdir(dir, { withFileTypes: true });
  } catch {
    return;
  }
  for (const d of names) {
    const r = rel ? `${rel}/${d.name}` : d.name;
    if (d.isSymbolicLink()) yield [r, await readlink(path.join(dir, d.name))];
    else if (d.isDirectory()) yield* walk(base, r);
  }
}
