/**
 * tasks.concurrency limits the files fetched at once, over every file of
 * every unit of the run (not units, not files per unit): three units of
 * four files each with tasks.concurrency = 3 never have more than three
 * upstream GETs open at the same time, do reach three, and all get stored.
 * Each response is paced so that the transfers overlap.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { test } from 'node:test';
import type { SweepSummary } from '../src/tasks/sweep.ts';
import {
  bytes,
  checkStorage,
  filesIn,
  runCliIn,
  seedRepo,
  startUpstream,
  taskEnv,
  tasksTempDir,
} from './helpers/tasks.ts';

const UNITS = 3;
const FILES_PER_UNIT = 4;
const CONCURRENCY = 3;

test(`tasks.concurrency = ${CONCURRENCY}: at most ${CONCURRENCY} files in flight over ${UNITS} units of ${FILES_PER_UNIT} files`, async () => {
  // fetch = local: every file the sweep fetches is one upstream GET from the sweep process.
  const te = await taskEnv('conc-limit', {
    tasks: { fetch: 'local', concurrency: CONCURRENCY, batch_size: 10 },
  });
  const up = await startUpstream();
  up.delayMs = 50; // 8 KiB files: about 0.4 s each
  const units = await seedRepo(
    te,
    up,
    'multi',
    Array.from({ length: UNITS }, (_, u) =>
      Array.from({ length: FILES_PER_UNIT }, (_, f) => ({
        relative: `d${f}/file-${f}.bin`,
        body: bytes(8 * 1024, `c${u}-${f}`),
      })),
    ),
    { queue: true },
  );

  const r = await runCliIn(te, ['sweep', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout) as SweepSummary;
  console.log(`# at most ${up.maxOpen} upstream GETs open at once`);
  assert.ok(up.maxOpen <= CONCURRENCY, `${up.maxOpen} files fetched at once, limit ${CONCURRENCY}`);
  assert.equal(up.maxOpen, CONCURRENCY, 'the limit is used in full');

  assert.deepEqual(s.failed, []);
  assert.equal(s.claimed, UNITS);
  assert.equal(s.stored, UNITS);
  assert.equal(s.files_fetched, UNITS * FILES_PER_UNIT);
  for (const u of units) {
    for (const f of u.files) {
      assert.equal(
        up.getsOf(f.upstreamPath),
        1,
        `${f.upstreamPath} fetched ${up.getsOf(f.upstreamPath)} times`,
      );
      assert.deepEqual(await readFile(f.storage_path), f.body);
    }
  }
  assert.equal(await te.db.deferred.countDocuments({}), 0, 'every entry gone');
  assert.deepEqual(await checkStorage(te), { downloaded: UNITS, notDownloaded: 0 });
  assert.deepEqual(await filesIn(tasksTempDir(te)), []);
});
