/** Syncs that must fail: one line on stderr, and nothing the previous sync left is changed. */
import assert from 'node:assert/strict';
import { readdir, readlink } from 'node:fs/promises';
import path from 'node:path';
import type { Database } from '../../src/db/index.ts';
import { runCli } from './cli.ts';
import { dbSnapshot } from './db.ts';
import type { TestEnv } from './env.ts';
import { readTree } from './pkgrepos.ts';
import type { Upstream } from './upstream.ts';

/** A name, what breaks the feed, and the one stderr line `pulp-lazy sync` must print. */
export type RefusedSyncCase = [string, () => void | Promise<void>, RegExp];

/**
 * For repository `repo`, synced once from `up`: each case starts from the feed as it is now, breaks
 * it, and `pulp-lazy sync` must exit 1 with one stderr line matching the case's pattern, leaving the
 * published tree, the database, storage and the temp dir as they were. The feed is whole again
 * afterwards.
 */
export async function checkRefusedSyncs(
  env: TestEnv,
  db: Database,
  repo: string,
  up: Upstream,
  cases: RefusedSyncCase[],
): Promise<void> {
  const linkPath = path.join(env.config.paths.published, repo);
  const tree = await readlink(linkPath);
  const before = await dbSnapshot(db);
  const stored = async () =>
    [...(await readTree(path.join(env.config.paths.storage, 'units'))).keys()].sort();
  const storedBefore = await stored();
  const good = new Map(up.files);
  const restore = () => {
    up.files.clear();
    for (const [k, v] of good) up.files.set(k, v);
  };
  for (const [name, breakIt, re] of cases) {
    restore();
    await breakIt();
    const r = await runCli(['sync', repo], { env: env.env });
    assert.equal(r.code, 1, `${name}: ${r.stdout}`);
    const lines = r.stderr.trim().split('\n');
    assert.equal(lines.length, 1, `${name}: one line: ${r.stderr}`);
    assert.match(lines[0]!, re, name);
    assert.equal(await readlink(linkPath), tree, `${name}: published tree untouched`);
    assert.deepEqual(await dbSnapshot(db), before, `${name}: database untouched`);
    assert.deepEqual(await stored(), storedBefore, `${name}: nothing new in storage`);
    assert.deepEqual(
      await readdir(path.join(env.config.paths.working, 'tmp')),
      [],
      `${name}: temp files removed`,
    );
  }
  restore();
}
