/**
 * The disk guard (storage.min_free) on a real 40 MiB tmpfs holding storage
 * and the working dir, min_free 16 MiB, filled by a ballast file: a cold
 * miss is still served whole but nothing is saved (no temp file left, the
 * unit queued), `status` and `top` warn, /metrics says so, a sweep claims
 * nothing and says it paused; once the ballast is gone the next miss is
 * saved and a sweep stores the queued unit. download-repo stops claiming too. And the parsing of min_free.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { parseConfig } from '../src/config.ts';
import { ConfigError } from '../src/errors.ts';
import { componentStatus } from '../src/lifecycle/index.ts';
import { silentLogger } from '../src/log.ts';
import { DiskGuard, freeSpace, minFreeBytes } from '../src/storage/free-space.ts';
import { downloadUnits } from '../src/tasks/download-repo.ts';
import { createFileSource, taskDeps } from '../src/tasks/setup.ts';
import { runSweep } from '../src/tasks/sweep.ts';
import { collectSnapshot } from '../src/tui/data.ts';
import { DEFAULT_MIN_FREE } from '../src/util/size.ts';
import {
  addRepo,
  bytes,
  exists,
  fetchRaw,
  seedUnit,
  serve,
  settled,
  sha256,
  startOrigin,
  startStreamer,
  tempFiles,
  urlFor,
} from './helpers/streamer.ts';

const run = promisify(execFile);
const MiB = 1 << 20;
const GiB = 1 << 30;

test('storage.min_free: a size, a percentage, or by default the smaller of 2GiB and 5 %', () => {
  const minFree = (v?: unknown) =>
    parseConfig(v === undefined ? {} : { storage: { min_free: v } }, 'x.toml', {}).storage.min_free;
  assert.deepEqual(minFree('16MiB'), { bytes: 16 * MiB });
  assert.deepEqual(minFree(4096), { bytes: 4096 });
  assert.deepEqual(minFree('5%'), { percent: 5 });
  assert.deepEqual(minFree('2.5 %'), { percent: 2.5 });
  assert.deepEqual(minFree(), DEFAULT_MIN_FREE);
  assert.deepEqual(minFree('default'), DEFAULT_MIN_FREE);
  assert.deepEqual(minFree('off'), { off: true });
  // The default: 5 % of a 10 GiB filesystem, 2 GiB of a 100 GiB one.
  assert.equal(minFreeBytes(minFree(), 10 * GiB), 512 * MiB);
  assert.equal(minFreeBytes(minFree(), 100 * GiB), 2 * GiB);
  assert.equal(minFreeBytes(minFree('5%'), 100 * GiB), 5 * GiB);
  assert.equal(minFreeBytes(minFree('16MiB'), 100 * GiB), 16 * MiB);
  for (const bad of ['lots', '150%', '-1%', '5 percent']) {
    assert.throws(
      () => minFree(bad),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError, String(err));
        assert.match(err.message, /storage\.min_free/);
        return true;
      },
    );
  }
});

const mnt = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-diskguard-mnt-'));
await run('mount', ['-t', 'tmpfs', '-o', 'size=40m', 'tmpfs', mnt]);
after(async () => {
  await run('umount', ['-l', mnt]);
  await rm(mnt, { recursive: true, force: true });
});
const ballast = path.join(mnt, 'ballast');
/** Fills the tmpfs until `free` bytes are left. */
async function fillTo(free: number): Promise<void> {
  const now = (await freeSpace(mnt)).free;
  await writeFile(ballast, Buffer.alloc(Math.max(0, now - free), 1));
}
/** Longer than the guard's 1 s measurement cache. */
const pastGuardCache = () => new Promise((r) => setTimeout(r, 1200));

await fillTo(10 * MiB);
const fx = await startStreamer(
  'diskguard',
  {},
  {
    paths: { storage: path.join(mnt, 'content'), working: path.join(mnt, 'work') },
    storage: { min_free: '16MiB' },
  },
);
await addRepo(fx.db, 'imp-dg');
const [bodyA, bodyB] = [bytes(2 * MiB, 31), bytes(2 * MiB, 32)];
const origin = await startOrigin({ '/a.rpm': serve(bodyA), '/b.rpm': serve(bodyB) });
const seed = (name: string, body: Buffer) =>
  seedUnit(fx, [{ name, body, sources: [{ importer: 'imp-dg', url: `${origin.base}/${name}` }] }]);

test('low disk: misses streamed, not saved, queued; status, top and /metrics warn; the sweep pauses; all resume once space returns', {
  timeout: 120_000,
}, async () => {
  const a = await seed('a.rpm', bodyA);
  const ra = await fetchRaw(urlFor(fx.base, a.paths[0]!));
  assert.equal(ra.status, 200);
  assert.ok(ra.complete, 'the miss is served whole');
  assert.equal(sha256(ra.body), sha256(bodyA));
  await settled(fx);
  assert.equal(await exists(a.paths[0]!), false, 'nothing saved under min_free');
  assert.deepEqual(await tempFiles(fx), [], 'no temp file left');
  assert.equal((await fx.db.units.findOne({ _id: a.unitId }))?.downloaded, false);
  assert.equal(await fx.db.deferred.countDocuments({ unit_id: a.unitId, state: 'pending' }), 1);
  const m = fx.streamer.metrics;
  assert.equal(m.diskGuardActive.get(), 1);
  assert.ok(m.diskFreeBytes.get({ dir: fx.config.paths.storage }) < 16 * MiB);
  assert.equal(m.saves.get({ result: 'not_saved' }), 1);

  // `status --json` prints componentStatus; `top` shows collectSnapshot's diskWarning.
  const st = await componentStatus(fx.config, 'streamer');
  assert.match(st.warning ?? '', /low disk: .*min_free 16\.0 MiB/);
  assert.equal((await componentStatus(fx.config, 'content')).warning, undefined);
  assert.match((await collectSnapshot(fx.config, null)).diskWarning ?? '', /low disk/);

  const source = createFileSource(fx.config, { db: fx.db, logger: silentLogger }, 'local');
  after(() => source.close());
  const deps = taskDeps(fx.config, { db: fx.db, logger: silentLogger, source });
  const paused = await runSweep(deps);
  assert.equal(paused.paused_low_disk, true);
  assert.equal(paused.claimed, 0);
  const entry = await fx.db.deferred.findOne({ unit_id: a.unitId });
  assert.equal(entry?.state, 'pending', 'nothing claimed under min_free');
  assert.equal(await exists(a.paths[0]!), false);
  // download-repo (and an immediate sync) stop claiming too, and say so.
  const unitA = await fx.db.units.findOne({ _id: a.unitId });
  const dr = await downloadUnits(deps, 'imp-dg', [unitA!], { queueFailures: false });
  assert.deepEqual([dr.low_disk, dr.stored, dr.failed.length], [1, 0, 0]);
  assert.equal(await exists(a.paths[0]!), false);
  assert.deepEqual(await tempFiles(fx), [], 'no temp file left');

  await rm(ballast);
  await pastGuardCache();
  const b = await seed('b.rpm', bodyB);
  const rb = await fetchRaw(urlFor(fx.base, b.paths[0]!));
  assert.equal(rb.status, 200);
  assert.equal(sha256(rb.body), sha256(bodyB));
  await settled(fx);
  assert.equal(await exists(b.paths[0]!), true, 'saving resumed by itself');
  assert.equal((await fx.db.units.findOne({ _id: b.unitId }))?.downloaded, true);
  assert.equal(m.diskGuardActive.get(), 0);
  assert.equal((await componentStatus(fx.config, 'streamer')).warning, undefined);

  const resumed = await runSweep(deps);
  assert.equal(resumed.paused_low_disk, false);
  assert.equal(resumed.stored, 1);
  assert.equal(await exists(a.paths[0]!), true);
  assert.equal((await fx.db.units.findOne({ _id: a.unitId }))?.downloaded, true);
  assert.equal(await fx.db.deferred.countDocuments({ unit_id: a.unitId }), 0);
});

test('the guard measures at most once per interval, and counts the expected size', async () => {
  await rm(ballast, { force: true });
  let now = 0;
  const guard = new DiskGuard([mnt], { bytes: 16 * MiB }, { clock: () => now });
  assert.equal(await guard.canSave(), true);
  assert.equal(await guard.canSave(64 * MiB), false, 'a file that would leave less than min_free');
  await fillTo(10 * MiB);
  after(() => rm(ballast, { force: true }));
  assert.equal(await guard.canSave(), true, 'the measurement is reused within the interval');
  now += 1000;
  assert.equal(await guard.canSave(), false);
  assert.equal((await guard.check()).low, true);
  assert.equal(await new DiskGuard([mnt], { off: true }).canSave(), true, 'min_free = "off": no guard');
});
