/**
 * Disk full: the whole var/lib/pulp-lazy (storage, published tree, working
 * dir) on an 8 MiB tmpfs, filled to the brim by a filler file. A sweep
 * (`pulp-lazy sweep`, fetching through the streamer logic in-process) and a
 * client of `pulp-lazy serve` both run out of space. Checked: the sweep
 * exits 1 naming "no space left on device" for each failed unit, the client
 * never gets a complete response, nothing half-written is left (no temp
 * file, every stored file verified, no unit marked downloaded without its
 * files, failed units still queued); once the filler is removed the next
 * sweep stores everything and the client is served.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdir, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { freePorts } from '../helpers/proxies.ts';
import {
  filesBelow,
  queueUnits,
  rawRequest,
  runPulp,
  spawnPulp,
  startFaultyUpstream,
  syncFileRepo,
  until,
  verifyQueue,
  verifyStorage,
  waitHealthy,
} from '../helpers/reliability.ts';
import { bytes, taskEnv } from '../helpers/tasks.ts';

const run = promisify(execFile);
const MiB = 1024 * 1024;

const cleanups: Array<() => Promise<unknown>> = [];
async function cleanup(): Promise<void> {
  for (const f of cleanups.splice(0).reverse()) await f().catch((err) => console.log(`# cleanup: ${err}`));
}

/** Mounts a small filesystem on `dir`: tmpfs, else a loop-mounted ext4 image. Says which. */
async function mountSmall(dir: string, mb: number): Promise<string> {
  await mkdir(dir, { recursive: true });
  try {
    await run('mount', ['-t', 'tmpfs', '-o', `size=${mb}m`, 'tmpfs', dir]);
    cleanups.push(() => run('umount', ['-l', dir]));
    return 'tmpfs';
  } catch (tmpfsErr) {
    const img = `${dir}.img`;
    try {
      await run('truncate', ['-s', `${mb}M`, img]);
      await run('mkfs.ext4', ['-q', '-F', img]);
      await run('mount', ['-o', 'loop', img, dir]);
      cleanups.push(async () => {
        await run('umount', ['-l', dir]);
        await rm(img, { force: true });
      });
      return 'ext4 loop image';
    } catch (loopErr) {
      assert.fail(`cannot mount a small filesystem (tmpfs: ${tmpfsErr}; loop ext4: ${loopErr}): blocked`);
    }
  }
}

test('disk full: clear errors, nothing half-written, everything stored once space is freed', async () => {
  // Registered before taskEnv's hook (hooks run in order), which removes the temp root: the
  // filesystem must be unmounted, and its users stopped, first.
  after(cleanup);
  const [port] = await freePorts(1);
  const te = await taskEnv('rel-diskfull', {
    serve: { listen: `127.0.0.1:${port}` },
    tasks: { fetch: 'local', concurrency: 1, backoff_base: '1s', backoff_max: '1s', max_attempts: 100 },
    log: { level: 'warn' },
    // The last resort, ENOSPC mid-file, with the disk guard off (test/disk-guard.test.ts tests the guard).
    storage: { min_free: 'off' },
  });
  const mount = path.dirname(te.config.paths.storage);
  const kind = await mountSmall(mount, 8);
  console.log(`# disk full: ${kind} of 8 MiB on ${mount}`);

  const up = await startFaultyUpstream();
  const files = new Map<string, Buffer>();
  for (let i = 0; i < 5; i++) files.set(`big/f${i}.bin`, bytes(Math.round(1.5 * MiB) + i, `full${i}`));
  const repo = await syncFileRepo(te.db, te.config.paths, up, 'full', files);
  const [first, ...rest] = [...repo.values()];
  const queued = rest.slice(0, 3);
  const forClient = rest[3]!;

  // Fill the disk: leave about 1 MiB, less than one file.
  const filler = path.join(mount, 'filler');
  const df = async () => {
    const { stdout } = await run('df', ['-B1', '--output=avail', mount]);
    return Number(stdout.trim().split('\n').pop());
  };
  await writeFile(filler, Buffer.alloc(Math.max(0, (await df()) - 1 * MiB)));
  assert.ok((await df()) < 1.5 * MiB, `the filesystem is full (${await df()} bytes free)`);

  // 1. A sweep over three queued units: each fails with a clear error, nothing is left behind.
  await queueUnits(
    te.db,
    queued.map((f) => f.unitId),
  );
  const sweep = await runPulp(['sweep', '--json'], te.env);
  assert.equal(sweep.code, 1, `the sweep reports failure: ${sweep.stderr}`);
  const summary = JSON.parse(sweep.stdout) as {
    failed: Array<{ unit_id: string; error: string }>;
    stored: number;
  };
  assert.equal(summary.failed.length, 3, `three units failed: ${sweep.stdout}`);
  for (const f of summary.failed)
    assert.match(f.error, /no space left on device|ENOSPC/i, `a clear error: ${f.error}`);
  assert.match(sweep.stderr, /^pulp-lazy: 3 unit\(s\) could not be stored/m);
  await checkNothingHalfWritten(te, repo.size);
  const entries = await te.db.deferred.find({}).toArray();
  assert.deepEqual(
    entries.map((e) => e.unit_id).sort(),
    queued.map((f) => f.unitId).sort(),
    'the failed units are still queued',
  );
  for (const e of entries) assert.match(e.last_error ?? '', /no space left on device|ENOSPC/i);

  // 2. A client of the all-in-one server misses a file that does not fit: never a complete reply.
  const server = spawnPulp(['serve'], te.env);
  cleanups.push(() => server.stop());
  const base = `http://127.0.0.1:${port}`;
  await waitHealthy(`${base}/healthz`, server);
  const url = `${base}/pulp/content/full/${forClient.rel}`;
  const cut = await rawRequest(url);
  assert.ok(
    !(cut.complete && cut.status === 200),
    `no complete 200 while the disk is full (HTTP ${cut.status}, ${cut.body.length} bytes)`,
  );
  if (cut.status === 200) assert.ok(cut.body.length < forClient.body.length, 'the reply was cut short');
  await until(
    () => /no space left on device|ENOSPC/i.test(server.stdout()), // daemons log on stdout
    'the server logs the cause (no space left on device)',
    10_000,
  );
  assert.equal((await rawRequest(`${base}/healthz`)).status, 200, 'the server is still up');
  await checkNothingHalfWritten(te, repo.size);
  await until(
    async () => (await te.db.deferred.findOne({ unit_id: forClient.unitId })) !== null,
    "the client's failed miss is queued for the sweep",
  );

  // 3. Space is freed: the next sweep stores the queued units, the client is served and the file saved.
  await rm(filler);
  await until(async () => {
    const due = await te.db.deferred.countDocuments({ next_attempt_at: { $gt: new Date() } });
    return due === 0;
  }, 'the failed entries are due again');
  const again = await runPulp(['sweep', '--json'], te.env);
  assert.equal(again.code, 0, `the sweep succeeds once space is freed: ${again.stdout} ${again.stderr}`);
  assert.equal(
    (JSON.parse(again.stdout) as { stored: number }).stored,
    4,
    "the three queued units and the client's",
  );
  const ok = await rawRequest(url);
  assert.equal(ok.status, 200);
  assert.ok(ok.complete && ok.body.equals(forClient.body), 'the client gets the right bytes');
  await until(
    async () => (await te.db.units.findOne({ _id: forClient.unitId }))?.downloaded === true,
    'saved',
  );
  const report = await verifyStorage(te.db, te.config.paths.storage);
  assert.equal(report.files, 4);
  assert.equal(report.downloaded, 4);
  assert.equal(await te.db.deferred.countDocuments({}), 0, 'the queue is empty');
  await verifyQueue(
    te.db,
    [...queued, forClient].map((f) => f.unitId),
  );
  assert.equal((await te.db.units.findOne({ _id: first!.unitId }))?.downloaded, false, 'untouched unit');
});

/** Storage holds only verified files of their units, no unit is downloaded, no temp file is left. */
async function checkNothingHalfWritten(te: Awaited<ReturnType<typeof taskEnv>>, units: number) {
  const report = await verifyStorage(te.db, te.config.paths.storage);
  assert.equal(report.files, 0, 'nothing stored');
  assert.equal(report.notDownloaded, units, 'no unit marked downloaded');
  assert.deepEqual(await filesBelow(te.config.paths.working), [], 'no temp file left in the working dir');
}
