/**
 * The database launcher killed (SIGKILL) and restarted under a running
 * `pulp-lazy serve`: a private FerretDB launcher (src/devdb.ts) on its own
 * data dir and a fixed port, never the shared test database. While it is
 * down, hits are still served (they need no database) and misses wait or
 * fail; a download that finishes meanwhile holds its last byte until the
 * database answers. After the restart the same server (no manual step)
 * serves every file, every stored file verifies, no unit is downloaded
 * without its files and each missed unit is downloaded, stored or queued.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { connect, migrate } from '../../src/db/index.ts';
import { type DevDb, startDevDb } from '../../src/devdb.ts';
import { freePorts } from '../helpers/proxies.ts';
import {
  type RawReply,
  type RepoFile,
  rawRequest,
  spawnPulp,
  startFaultyUpstream,
  syncFileRepo,
  until,
  verifyQueue,
  verifyStorage,
  waitHealthy,
} from '../helpers/reliability.ts';
import { bytes, taskEnv } from '../helpers/tasks.ts';

const MiB = 1024 * 1024;

test('the database launcher killed and restarted under a running server: hits go on, misses recover, nothing inconsistent', async () => {
  const [dbPort, port] = await freePorts(2);
  const dataDir = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-rel-devdb-'));
  let devdb: DevDb | undefined;
  after(async () => {
    await devdb?.stop();
    await rm(dataDir, { recursive: true, force: true });
  });
  const listen = `127.0.0.1:${dbPort}`;
  devdb = await startDevDb({ dataDir, listen, stderr: 'ignore' });
  const url = devdb.url;

  // Config, keys and temp root from taskEnv; the server and this test use the private launcher.
  const te = await taskEnv('rel-dbrestart', {
    serve: { listen: `127.0.0.1:${port}` },
    log: { level: 'warn' },
  });
  const env = { ...te.env, MONGODB_URL: url };
  const db = await connect(url, te.dbName);
  after(() => db.close());
  await migrate(db);
  const up = await startFaultyUpstream();
  up.slowMs = 10;
  const files = new Map<string, Buffer>([
    ['hot.bin', bytes(300 * 1024, 'hot')],
    ['slow.bin', bytes(4 * MiB, 'slow')],
    ...Array.from(
      { length: 6 },
      (_, i) => [`cold/c${i}.bin`, bytes(200 * 1024 + i, `cold${i}`)] as [string, Buffer],
    ),
  ]);
  const repo = await syncFileRepo(db, te.config.paths, up, 'dbr', files);
  const f = (rel: string): RepoFile => repo.get(rel)!;

  const server = spawnPulp(['serve'], env);
  const base = `http://127.0.0.1:${port}`;
  await waitHealthy(`${base}/healthz`, server);
  const get = (x: RepoFile) => rawRequest(`${base}/pulp/content/dbr/${x.rel}`, { timeoutMs: 180_000 });
  const right = (r: RawReply, x: RepoFile) => r.status === 200 && r.complete && r.body.equals(x.body);
  const noWrongBytes = (r: RawReply, x: RepoFile, what: string) => {
    if (r.status === 200 && r.complete)
      assert.ok(r.body.equals(x.body), `${what}: a complete reply with wrong bytes`);
  };

  // Before: a miss that becomes a hit.
  assert.ok(right(await get(f('hot.bin')), f('hot.bin')), 'first request');
  await until(
    async () => (await db.units.findOne({ _id: f('hot.bin').unitId }))?.downloaded === true,
    'hot saved',
  );

  // A slow miss under way when the launcher dies.
  up.modes.set(f('slow.bin').upstreamPath, 'slow');
  const slow = get(f('slow.bin'));
  await until(() => (up.sent.get(f('slow.bin').upstreamPath) ?? 0) >= MiB, 'the slow transfer is under way');
  devdb.process.kill('SIGKILL');
  await new Promise((r) => devdb!.process.once('exit', r));
  devdb = undefined;

  // Down: hits are served; a cold miss is asked for (it waits for the database, or fails).
  for (let i = 0; i < 5; i++) {
    assert.ok(right(await get(f('hot.bin')), f('hot.bin')), 'a hit while the database is down');
  }
  const cold = [0, 1, 2].map((i) => f(`cold/c${i}.bin`));
  const during = cold.map((x) => get(x));
  await new Promise((r) => setTimeout(r, 1500));

  // Restarted on the same port and data dir.
  devdb = await startDevDb({ dataDir, listen, stderr: 'ignore' });
  assert.equal(devdb.url, url);
  const results = await Promise.all([slow, ...during]);
  const asked = [f('slow.bin'), ...cold];
  for (const [i, r] of results.entries()) noWrongBytes(r, asked[i]!, `${asked[i]!.rel} across the restart`);
  // A miss the database could not answer is 503 (try again), never 500.
  for (const [i, r] of results.entries())
    assert.ok(
      [200, 503].includes(r.status) || !r.complete,
      `${asked[i]!.rel}: HTTP ${r.status} ${r.body.subarray(0, 200)}`,
    );
  console.log(
    `# database restart: replies across it: ${results.map((r, i) => `${asked[i]!.rel}=${r.status}${r.complete ? '' : ' (cut)'}`).join(', ')}`,
  );

  // After: the same server serves everything, with no manual step.
  assert.ok(
    server.alive(),
    `the server survived: ${server.stdout().slice(-2000)}${server.stderr().slice(-1000)}`,
  );
  for (const x of [...asked, ...[3, 4, 5].map((i) => f(`cold/c${i}.bin`))]) {
    let last: RawReply | undefined;
    await until(
      async () => {
        last = await get(x);
        return right(last, x);
      },
      () =>
        `${x.rel} is served after the restart (last: HTTP ${last?.status} ${last?.body.subarray(0, 200)})`,
      60_000,
    );
  }
  const report = await verifyStorage(db, te.config.paths.storage);
  const { stat } = await import('node:fs/promises');
  const notStored: string[] = [];
  for (const x of repo.values())
    if (!(await stat(x.storagePath).catch(() => undefined))) notStored.push(x.rel);
  assert.deepEqual(notStored, [], `served but not stored: ${server.stdout().slice(-3000)}`);
  assert.equal(report.files, repo.size, 'every requested file is stored and verified');
  await verifyQueue(
    db,
    [...repo.values()].map((x) => x.unitId),
  );
  const stale = (await db.units.find({ downloaded: false }).toArray()).map((u) => u._id);
  const queued = await db.deferred.countDocuments({});
  console.log(
    `# database restart: ${stale.length} unit(s) stored but not marked downloaded, ${queued} queued`,
  );
});
