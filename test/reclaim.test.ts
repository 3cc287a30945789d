/**
 * `pulp-lazy reclaim` through the real CLI, database and `pulp-lazy serve`:
 * on a fully downloaded repository `--unused-for 0s` deletes every file and
 * sets every unit back to not downloaded, and each file is served again
 * lazily with the right bytes (and its access recorded by the streamer).
 * Run again and again while 20 clients stream the files and sweeps store
 * them: no client gets wrong bytes, and no unit is left downloaded without
 * its files. Immediate repositories only with --force, --dry-run changes
 * nothing, the default takes only units never served, a unit whose
 * download lease is held is skipped as busy, bad input is a one-line error.
 */
import assert from 'node:assert/strict';
import { readFile, stat } from 'node:fs/promises';
import { test } from 'node:test';
import { connect, type Database, type UnitDoc } from '../src/db/index.ts';
import { claimUnit, enqueue, releaseUnit } from '../src/queue/index.ts';
import type { ReclaimReport } from '../src/tasks/reclaim.ts';
import { runCli, startServe } from './helpers/cli.ts';
import { mongoUrl } from './helpers/db.ts';
import { type TestEnv, testEnv } from './helpers/env.ts';
import { request } from './helpers/http.ts';
import { bytes, sha256 } from './helpers/tasks.ts';
import { startUpstream } from './helpers/upstream.ts';

const manifest = (files: Map<string, Buffer>) =>
  [...files].map(([name, body]) => `${name},${sha256(body)},${body.length}\n`).join('');

const exists = (p: string) =>
  stat(p).then(
    () => true,
    () => false,
  );

/** Repositories `name → {policy, files}` synced from one upstream, in a fresh env; the db and a CLI runner. */
async function setup(label: string, repos: Record<string, { policy: string; files: Map<string, Buffer> }>) {
  // The download tasks fetch through the streamer logic in-process (no Squid here).
  const env = await testEnv(label, { tasks: { fetch: 'local' } });
  const up = await startUpstream(
    new Map(Object.entries(repos).map(([name, r]) => [`/${name}/PULP_MANIFEST`, manifest(r.files)])),
  );
  for (const [name, r] of Object.entries(repos))
    for (const [file, body] of r.files) up.files.set(`/${name}/${file}`, body);
  const cli = cliOf(env);
  await cli(['keys', 'generate']);
  for (const [name, r] of Object.entries(repos)) {
    await cli([
      'repo',
      'create',
      name,
      '--type',
      'file',
      '--feed',
      `${up.url}${name}/`,
      '--policy',
      r.policy,
    ]);
    await cli(['sync', name]);
  }
  const db = await connect(mongoUrl(), env.dbName);
  return { env, up, cli, db };
}

function cliOf(env: TestEnv) {
  return async (args: string[]) => {
    const r = await runCli(args, { env: env.env });
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    return r.stdout;
  };
}

async function reclaimJson(cli: (a: string[]) => Promise<string>, args: string[]): Promise<ReclaimReport> {
  return JSON.parse(await cli(['reclaim', ...args, '--json'])) as ReclaimReport;
}

const unitsOf = (db: Database, repo: string): Promise<UnitDoc[]> =>
  db.repoContentUnits
    .distinct('unit_id', { repo_id: repo })
    .then((ids) => db.units.find({ _id: { $in: ids } }).toArray());

/** Units marked downloaded whose files are not all in storage with the right bytes. */
async function downloadedWithoutFiles(db: Database): Promise<string[]> {
  const bad: string[] = [];
  for (const u of await db.units.find({ downloaded: true }).toArray()) {
    for (const f of u.files) {
      const body = await readFile(f.storage_path).catch(() => undefined);
      if (!body || sha256(body) !== f.checksum) bad.push(`${u._id} ${f.relative_path}`);
    }
  }
  return bad;
}

async function poll(what: string, check: () => Promise<boolean>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

test('reclaim --unused-for 0s on a downloaded repository: every file gone, then served again lazily; racing 20 clients and sweeps, never wrong bytes nor a unit downloaded without its file', async (t) => {
  const files = new Map<string, Buffer>();
  for (let i = 0; i < 12; i++) files.set(`f${i}.bin`, bytes(20_000 + i * 15_000, i));
  const { env, cli, db } = await setup('reclaim', { r: { policy: 'on_demand', files } });
  t.after(() => db.close());
  await cli(['download-repo', 'r']);
  const units = await unitsOf(db, 'r');
  assert.equal(units.length, 12);
  assert.ok(units.every((u) => u.downloaded));
  const total = [...files.values()].reduce((n, b) => n + b.length, 0);

  const report = await reclaimJson(cli, ['r', '--unused-for', '0s']);
  assert.equal(report.units, 12);
  assert.equal(report.files, 12);
  assert.equal(report.bytes, total);
  assert.deepEqual(
    report.repos.map((r) => [r.repo, r.policy, r.units, r.bytes]),
    [['r', 'on_demand', 12, total]],
  );
  for (const u of await unitsOf(db, 'r')) {
    assert.equal(u.downloaded, false, `${u._id} still downloaded`);
    for (const f of u.files) assert.equal(await exists(f.storage_path), false, `${f.storage_path} kept`);
  }
  assert.equal(await db.deferred.countDocuments({}), 0, 'reclaimed units are not queued');

  // Served again lazily, with the right bytes; the streamer saves them and records the access.
  const base = await startServe(env);
  for (const [name, body] of files) {
    const r = await request(`${base}/pulp/content/r/${name}`);
    assert.equal(r.status, 200, name);
    assert.equal(sha256(r.body), sha256(body), `${name}: wrong bytes`);
  }
  await poll('the lazily served units stored again', async () =>
    (await unitsOf(db, 'r')).every((u) => u.downloaded),
  );
  await poll('the streamed files recorded in unit_access', async () => {
    const paths = units.flatMap((u) => u.files.map((f) => f.storage_path));
    return (await db.unitAccess.countDocuments({ _id: { $in: paths } })) === paths.length;
  });
  assert.deepEqual(await downloadedWithoutFiles(db), []);

  // Everything at once: 20 clients in a loop, sweeps of freshly queued units, reclaims.
  const names = [...files.keys()];
  let stop = false;
  let served = 0;
  const wrong: string[] = [];
  const failures: string[] = [];
  const client = async (c: number) => {
    for (let i = c; !stop; i++) {
      const name = names[i % names.length]!;
      const r = await request(`${base}/pulp/content/r/${name}`).catch((err: Error) => err);
      if (r instanceof Error) failures.push(`${name}: ${r.message}`);
      else if (r.status !== 200) failures.push(`${name}: ${r.status}`);
      else if (sha256(r.body) !== sha256(files.get(name)!)) wrong.push(name);
      else served++;
    }
  };
  const clients = Array.from({ length: 20 }, (_, c) => client(c));
  let reclaimed = 0;
  let busy = 0;
  let swept = 0;
  const sweepErrors: string[] = [];
  try {
    for (let round = 0; round < 6; round++) {
      for (const u of units) await enqueue(db, { unit_id: u._id, unit_type_id: u.unit_type_id });
      const [rec, sweep] = await Promise.all([
        reclaimJson(cli, ['r', '--unused-for', '0s']),
        runCli(['sweep', '--json'], { env: env.env }),
      ]);
      if (sweep.code === 0) swept += (JSON.parse(sweep.stdout) as { stored: number }).stored;
      else sweepErrors.push(sweep.stderr);
      reclaimed += rec.units;
      busy += rec.busy.length;
    }
  } finally {
    stop = true;
    await Promise.all(clients);
  }
  t.diagnostic(
    `served ${served} responses; reclaimed ${reclaimed} units, ${busy} busy; swept ${swept}; failures: ${failures.length}`,
  );
  assert.deepEqual(sweepErrors, [], 'a sweep failed');
  assert.deepEqual(wrong, [], 'a client got wrong bytes');
  assert.deepEqual(failures, [], 'a client request failed');
  assert.ok(served > 100, `only ${served} responses`);
  assert.ok(reclaimed > 0, 'the reclaims freed nothing while the clients ran');
  // Whatever finished last: no unit is marked downloaded without every file, with the right bytes.
  assert.deepEqual(await downloadedWithoutFiles(db), []);
  // And every file is still served right.
  for (const [name, body] of files) {
    const r = await request(`${base}/pulp/content/r/${name}`);
    assert.equal(sha256(r.body), sha256(body), name);
  }
});

test('immediate only with --force; --dry-run changes nothing; a unit whose lease is held is skipped as busy', async (t) => {
  const lazyFiles = new Map([
    ['a.bin', bytes(30_000, 'a')],
    ['b.bin', bytes(40_000, 'b')],
  ]);
  const immFiles = new Map([['i.bin', bytes(50_000, 'i')]]);
  const { cli, db } = await setup('reclaim-force', {
    lazy: { policy: 'background', files: lazyFiles },
    imm: { policy: 'immediate', files: immFiles },
  });
  t.after(() => db.close());
  await cli(['download-repo', 'lazy']);
  const [imm] = await unitsOf(db, 'imm');
  assert.equal(imm?.downloaded, true, 'the immediate sync stored its unit');
  const lazy = await unitsOf(db, 'lazy');
  const snapshot = async () =>
    (await db.units.find({}).sort({ _id: 1 }).toArray()).map((u) => [u._id, u.downloaded]);

  const before = await snapshot();
  const dry = await reclaimJson(cli, ['--unused-for', '0s', '--dry-run']);
  assert.equal(dry.dry_run, true);
  assert.equal(dry.units, 2);
  assert.equal(dry.bytes, 70_000);
  assert.deepEqual(dry.immediate, [imm._id]);
  assert.deepEqual(await snapshot(), before, '--dry-run wrote nothing');
  for (const u of [...lazy, imm])
    assert.ok(await exists(u.files[0]!.storage_path), '--dry-run deleted a file');
  const text = await cli(['reclaim', '--unused-for', '0s', '--dry-run']);
  assert.match(text, /^reclaim \(dry run, nothing deleted\): 2 unit\(s\), 2 file\(s\), .* to free; 0 busy/m);

  // a.bin's lease is held (a sweep storing or verifying it): skipped, reported busy, kept.
  const a = lazy.find((u) => u.unit_key.name === 'a.bin' || u.files[0]!.relative_path === 'a.bin')!;
  const held = await claimUnit(db, a._id, 'another-worker', 60_000, { evenIfDownloaded: true });
  assert.equal(held.kind, 'claimed');
  const first = await reclaimJson(cli, ['--unused-for', '0s']);
  assert.deepEqual(first.busy, [a._id]);
  assert.equal(first.units, 1);
  assert.deepEqual(first.immediate, [imm._id]);
  assert.equal((await db.units.findOne({ _id: a._id }))?.downloaded, true);
  assert.ok(await exists(a.files[0]!.storage_path), 'a busy unit lost its file');
  assert.equal(
    (await db.units.findOne({ _id: imm._id }))?.downloaded,
    true,
    'immediate reclaimed without --force',
  );
  assert.ok(await exists(imm.files[0]!.storage_path));
  if (held.kind === 'claimed') await releaseUnit(db, held.lease);

  // Lease released: the next run takes it; --force takes the immediate one too.
  const second = await reclaimJson(cli, ['--unused-for', '0s', '--force']);
  assert.equal(second.units, 2);
  assert.deepEqual(second.busy, []);
  assert.deepEqual(second.immediate, []);
  for (const u of await db.units.find({}).toArray()) {
    assert.equal(u.downloaded, false);
    assert.equal(await exists(u.files[0]!.storage_path), false);
  }
});

test('without --unused-for only units never served since stored are reclaimed; served ones stay', async (t) => {
  const files = new Map([
    ['served.bin', bytes(10_000, 's')],
    ['idle1.bin', bytes(11_000, 'x')],
    ['idle2.bin', bytes(12_000, 'y')],
  ]);
  const { env, cli, db } = await setup('reclaim-never', { r: { policy: 'on_demand', files } });
  t.after(() => db.close());
  await cli(['download-repo', 'r']);
  const base = await startServe(env);
  // A hit of a stored file, answered by serve itself (no fetch): its access is recorded.
  const r = await request(`${base}/pulp/content/r/served.bin`);
  assert.equal(r.status, 200);
  const servedUnit = (await unitsOf(db, 'r')).find((u) => u.files[0]!.relative_path === 'served.bin')!;
  await poll(
    'the hit recorded',
    async () => (await db.unitAccess.countDocuments({ _id: servedUnit.files[0]!.storage_path })) === 1,
  );

  const report = await reclaimJson(cli, ['r']);
  assert.equal(report.units, 2);
  assert.equal(report.bytes, 23_000);
  for (const u of await unitsOf(db, 'r')) {
    const isServed = u._id === servedUnit._id;
    assert.equal(u.downloaded, isServed, u.files[0]!.relative_path);
    assert.equal(await exists(u.files[0]!.storage_path), isServed);
  }
  // Not served for 1 h? Served just now: kept as well.
  assert.equal((await reclaimJson(cli, ['r', '--unused-for', '1h'])).units, 0);
});

test('bad input: an unknown repository or a bad duration is a one-line error and a non-zero exit', async (t) => {
  const { env, db } = await setup('reclaim-bad', {
    r: { policy: 'on_demand', files: new Map([['a', bytes(10, 1)]]) },
  });
  t.after(() => db.close());
  const unknown = await runCli(['reclaim', 'r', 'nope'], { env: env.env });
  assert.notEqual(unknown.code, 0);
  assert.equal(unknown.stderr.trim().split('\n').length, 1, unknown.stderr);
  assert.match(unknown.stderr, /repository "nope" does not exist/);
  const bad = await runCli(['reclaim', '--unused-for', 'soon'], { env: env.env });
  assert.equal(bad.code, 2);
  assert.equal(bad.stderr.trim().split('\n').length, 1, bad.stderr);
  assert.match(bad.stderr, /--unused-for: not a duration/);
});
