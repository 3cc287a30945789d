/**
 * A multi-file unit whose two files share a basename in different folders
 * (Pulp 2 derived temp names from the basename, so they collided): both are
 * fetched at the same time and both stored correctly, through the signed
 * proxy URL and through the in-process streamer.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import { silentLogger } from '../src/log.ts';
import { createFileSource, type FetchMode, taskDeps } from '../src/tasks/setup.ts';
import { runSweep } from '../src/tasks/sweep.ts';
import {
  bytes,
  checkStorage,
  filesIn,
  seedRepo,
  startTaskStreamer,
  startUpstream,
  taskEnv,
  tasksTempDir,
} from './helpers/tasks.ts';

for (const mode of ['proxy', 'local'] as FetchMode[]) {
  test(`two files named alike in one unit are both stored (${mode} fetch)`, async () => {
    const te = await taskEnv(`multi-${mode}`);
    const up = await startUpstream();
    const { streamer } = await startTaskStreamer(te);
    // Slow enough that both transfers are in flight at once.
    up.delayMs = 5;
    const a = bytes(64 * 1024, `${mode}-a`);
    const b = bytes(64 * 1024 + 7, `${mode}-b`);
    const [unit] = await seedRepo(
      te,
      up,
      `tree-${mode}`,
      [
        [
          { relative: 'images/pxeboot/vmlinuz', body: a },
          { relative: 'isolinux/vmlinuz', body: b },
        ],
      ],
      { queue: true, type: 'distribution' },
    );
    const source = createFileSource(te.config, { db: te.db, logger: silentLogger }, mode);
    try {
      const deps = taskDeps(te.config, { db: te.db, logger: silentLogger, source });
      const s = await runSweep(deps, { concurrency: 2 });
      assert.deepEqual(s.failed, []);
      assert.equal(s.stored, 1);
      assert.equal(s.files_fetched, 2);
    } finally {
      await source.close();
    }
    const [fa, fb] = unit!.files;
    assert.notEqual(fa!.storage_path, fb!.storage_path);
    assert.ok(fa!.storage_path.endsWith('/images/pxeboot/vmlinuz'));
    assert.ok(fb!.storage_path.endsWith('/isolinux/vmlinuz'));
    assert.deepEqual(await readFile(fa!.storage_path), a);
    assert.deepEqual(await readFile(fb!.storage_path), b);
    const doc = await te.db.units.findOne({ _id: unit!.id });
    assert.equal(doc!.downloaded, true);
    assert.equal(await te.db.deferred.countDocuments({}), 0, 'entry deleted once stored');
    assert.deepEqual(await checkStorage(te), { downloaded: 1, notDownloaded: 0 });
    for (const f of unit!.files)
      assert.equal(up.getsOf(f.upstreamPath), 1, `one upstream GET for ${f.upstreamPath}`);
    if (mode === 'proxy') assert.equal(streamer.metrics.saves.get({ result: 'saved' }), 2);
    assert.deepEqual(await filesIn(tasksTempDir(te)), [], 'no temp files left');
  });
}
