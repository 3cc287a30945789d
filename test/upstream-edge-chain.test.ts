/**
 * The edge-case upstream (test/helpers/edge-upstream.ts) behind a whole
 * installation run by the CLI (test/helpers/upstream-matrix.ts startInstall:
 * content, streamer and authorizer daemons, Apache + Squid, and a second
 * content daemon + Apache without Squid on the same streamer): bodies
 * delimited by EOF, chunked, a large body then Connection: close to a slow
 * client, redirects (same host, other host, http → https, 5 hops; 6 hops, a
 * loop, https → http refused), Content-Encoding: gzip on a .gz; and bodies
 * that fail: shorter than their Content-Length, reset or stalled mid-body.
 * Each through a client miss (curl -L: content daemon's 302 → Apache with the
 * FastCGI signature check → [Squid →] streamer) and through download-repo /
 * sweep, with and without Squid. A failure must never reach a client as a
 * complete 200, store nothing, and leave nothing in Squid's cache: once the
 * upstream answers well, the next request reaches it and gets the right bytes.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { newDeferredEntry } from '../src/db/index.ts';
import { hashFile, unitStoragePath } from '../src/storage/index.ts';
import { processAlive, waitFor } from '../src/util/process.ts';
import { type CurlResult, curl, setUpChain } from './helpers/chain.ts';
import { manifestOf, sha256 } from './helpers/edge-repo.ts';
import {
  chunked,
  closeAfter,
  gzipLabelled,
  redirect,
  redirectChain,
  resetMidBody,
  shortBody,
  sized,
  stall,
  startEdgeUpstream,
  untilEof,
} from './helpers/edge-upstream.ts';
import { bytes, checkStorage, runCliIn } from './helpers/tasks.ts';
import { cliOk, componentPids, filesBelow, type Install, startInstall } from './helpers/upstream-matrix.ts';

const cleanups: Array<() => Promise<unknown>> = [];
// Registered before startInstall's taskEnv hook (which drops the database and removes the root).
after(async () => {
  const errors: unknown[] = [];
  for (const f of cleanups.splice(0).reverse()) await f().catch((err) => errors.push(err));
  if (errors.length > 0) throw errors[0];
});
const dir = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-edgechain-'));
cleanups.push(() => rm(dir, { recursive: true, force: true }));
const edge = await startEdgeUpstream(dir);
const caFile = path.join(dir, 'edge-ca.pem');
await writeFile(caFile, edge.pki.ca);

const BIG = 8 << 20;
const CUT = 64 * 1024;
/** What the upstream does for a file at `/${repo}/${name}` (routes set below `/${repo}/`). */
type Setup = (p: string, body: Buffer) => void;
const set = (p: string, route: Parameters<typeof edge.routes.set>[1]) => edge.routes.set(p, route);
const GOOD: Record<string, Setup> = {
  'eof10.bin': (p, b) => set(p, untilEof(b, '1.0')),
  'eof11.bin': (p, b) => set(p, untilEof(b, '1.1')),
  'chunked.bin': (p, b) => set(p, chunked(b, 7000)),
  'big.bin': (p, b) => set(p, closeAfter(b)),
  'repodata.xml.gz': (p, b) => set(p, gzipLabelled(b)),
  'same.bin': (p, b) => {
    set(p, redirect(302, 'blobs/same.bin'));
    set(`${path.dirname(p)}/blobs/same.bin`, sized(b));
  },
  'other.bin': (p, b) => {
    set(p, redirect(307, `${edge.other}${p}-elsewhere`));
    set(`${p}-elsewhere`, sized(b));
  },
  'tls.bin': (p, b) => {
    set(p, redirect(301, `${edge.tls}${p}-secure`));
    set(`${p}-secure`, sized(b));
  },
  'five.bin': (p, b) => {
    set(p, redirect(308, redirectChain(edge, `${p}-hop`, 4, `${p}-end`)));
    set(`${p}-end`, sized(b));
  },
};
const BAD: Record<string, Setup> = {
  'short.bin': (p, b) => set(p, shortBody(b, b.length - 1000)),
  'reset.bin': (p, b) => set(p, resetMidBody(b, CUT)),
  'stall.bin': (p, b) => set(p, stall(b, CUT)),
  'six.bin': (p, b) => {
    set(p, redirect(302, redirectChain(edge, `${p}-hop`, 5, `${p}-end`)));
    set(`${p}-end`, sized(b));
  },
  'loop.bin': (p) => {
    set(p, redirect(302, `${path.basename(p)}-again`));
    set(`${p}-again`, redirect(302, path.basename(p)));
  },
  'down.bin': (p, b) => {
    set(p, redirect(302, `${edge.tls}${p}-secure`));
    set(`${p}-secure`, redirect(302, `${edge.base}${p}-plain`));
    set(`${p}-plain`, sized(b));
  },
};
const REFUSED = ['six.bin', 'loop.bin', 'down.bin'];
const NAMES = [...Object.keys(GOOD), ...Object.keys(BAD)];

/** A repository on the edge upstream: its files (name → bytes, distinct per repository). */
interface EdgeRepo {
  name: string;
  files: Map<string, Buffer>;
}
/** Serves repository `name`'s manifest and files (failures included) below `/${name}/`. */
function edgeRepo(name: string): EdgeRepo {
  const files = new Map<string, Buffer>();
  for (const [i, file] of NAMES.entries()) {
    const b = bytes(file === 'big.bin' ? BIG : 200_000 + i * 1013, `${name}-${file}`);
    const body = file.endsWith('.gz') ? gzipSync(b) : b;
    files.set(file, body);
    (GOOD[file] ?? BAD[file]!)(`/${name}/${file}`, body);
  }
  set(`/${name}/PULP_MANIFEST`, untilEof(manifestOf(files), '1.1'));
  return { name, files };
}
/** The upstream answers well for every failing file of `r` (its first URL: 200 and the bytes). */
function makeGood(r: EdgeRepo): void {
  for (const name of Object.keys(BAD)) set(`/${r.name}/${name}`, sized(r.files.get(name)!));
}

const inst: Install = await setUpChain(
  () =>
    startInstall('edgechain', (fn) => cleanups.push(fn), {
      // A stall fails after 2 s; an entry whose bytes failed verification is not skipped for 5 min.
      squid: { streamer: { body_idle_timeout: '2s', failure_cooldown: '1s' } },
      // download-repo and sweep of the configuration without Squid also go through its Apache.
      none: { tasks: { fetch: 'proxy' } },
    }),
  async () => {
    for (const f of cleanups.splice(0).reverse()) await f().catch(() => {});
  },
);
const te = inst?.te;
const noCache = ['--config', inst?.noCacheConfig];

const storagePath = (r: EdgeRepo, name: string) =>
  unitStoragePath(te.config.paths.storage, 'file', sha256(r.files.get(name)!), name);
const unitOf = (r: EdgeRepo, name: string) =>
  te.db.units.findOne({ 'files.storage_path': storagePath(r, name) });

/** The file is stored with its bytes and its unit is downloaded (the streamer marks it just after the last byte). */
async function assertStored(r: EdgeRepo, name: string): Promise<void> {
  const want = sha256(r.files.get(name)!);
  const ok = async () =>
    (await unitOf(r, name))?.downloaded === true &&
    (await hashFile(storagePath(r, name), 'sha256').catch(() => undefined))?.digest === want;
  assert.ok(await waitFor(ok, 15_000), `${r.name}/${name}: stored with its bytes, unit downloaded`);
}

/** Nothing stored for the file, its unit not downloaded. */
async function assertNotStored(r: EdgeRepo, name: string): Promise<void> {
  const unit = await unitOf(r, name);
  assert.ok(unit, `${r.name}/${name}: unit synced`);
  assert.equal(unit.downloaded, false, `${r.name}/${name}: not downloaded`);
  assert.equal(
    await readFile(storagePath(r, name)).then(
      () => true,
      () => false,
    ),
    false,
    `${r.name}/${name}: nothing stored`,
  );
}

/**
 * Storage holds only verified files of downloaded units, the working dir no temp file (once the
 * failed fetches are cleaned up), and every daemon and proxy runs with the pid it started with.
 */
async function assertSound(): Promise<void> {
  await checkStorage(te);
  const { working } = te.config.paths;
  await waitFor(async () => (await filesBelow(working)).length === 0, 10_000);
  assert.deepEqual(await filesBelow(working), [], 'no temp file left in the working dir');
  const now = await componentPids(inst.configs);
  for (const [name, pid] of now) assert.equal(pid, inst.pids.get(name), `${name}: same pid`);
  assert.ok(processAlive(inst.pids.get('serve')!) && inst.serve.child.exitCode === null, 'serve runs');
}

/** The client got exactly the file: a complete 200 with its bytes. */
function assertBytes(got: CurlResult, r: EdgeRepo, name: string): void {
  const what = `${r.name}/${name}: ${got.stderr.slice(0, 300)} ${JSON.stringify(got.headers)} ${got.body.subarray(0, 300)}`;
  assert.equal(got.exit, 0, what);
  assert.equal(got.status, 200, what);
  assert.equal(got.body.length, r.files.get(name)!.length, `${r.name}/${name}: length`);
  assert.equal(sha256(got.body), sha256(r.files.get(name)!), `${r.name}/${name}: sha256`);
}

/** Upstream GETs of the file's first URL so far. */
const upstreamGets = (r: EdgeRepo, name: string) => edge.requestsOf(`/${r.name}/${name}`).length;

const repos = {
  squidMiss: edgeRepo('sqmiss'),
  noneMiss: edgeRepo('nomiss'),
  squidDownload: edgeRepo('sqdl'),
  noneSweep: edgeRepo('nosweep'),
};

test('sync: four file repositories of the edge upstream (a manifest delimited by EOF)', async () => {
  for (const r of Object.values(repos)) {
    const feed = `${edge.base}/${r.name}/`;
    // The CA of the https listener a few files redirect to.
    await cliOk(te, ['repo', 'create', r.name, '--type', 'file', '--feed', feed, '--ca-cert', caFile]);
    await cliOk(te, ['sync', r.name]);
  }
  assert.equal(await te.db.units.countDocuments({ unit_type_id: 'file' }), 4 * NAMES.length);
  assert.equal(await te.db.units.countDocuments({ downloaded: true }), 0, 'lazy: nothing downloaded');
  await assertSound();
});

for (const [cache, r] of [
  ['squid', repos.squidMiss],
  ['none', repos.noneMiss],
] as const) {
  test(`a miss through Apache → ${cache === 'squid' ? 'Squid → ' : ''}streamer: good framings and redirects give the bytes; failures no complete 200, nothing stored, nothing cached`, async () => {
    const C = cache === 'squid' ? inst.squidC : inst.noneC;
    const get = (name: string, args: string[] = []) =>
      curl(`${C}/pulp/repos/${r.name}/${name}`, ['-L', '--max-time', '60', ...args]);
    for (const name of Object.keys(GOOD)) {
      // The large body: the client reads at 2 MB/s, long after upstream sent it all and closed.
      assertBytes(await get(name, name === 'big.bin' ? ['--limit-rate', '2M'] : []), r, name);
      assert.equal(upstreamGets(r, name), 1, `${name}: one upstream GET`);
      await assertStored(r, name);
    }
    for (const name of Object.keys(BAD)) {
      const got = await get(name);
      const what = `${r.name}/${name}: exit ${got.exit} status ${got.status} ${got.stderr.slice(0, 200)}`;
      if (REFUSED.includes(name)) {
        // Refused before the first byte: the streamer's 502, through Squid too.
        assert.equal(got.status, 502, what);
      } else {
        // Cut (curl fails: 18 partial file, 56 receive error) or an error status; never a complete 200.
        assert.ok(got.exit !== 0 || got.status >= 500, what);
      }
      assert.notEqual(sha256(got.body), sha256(r.files.get(name)!), what);
      assert.ok(got.body.length < r.files.get(name)!.length || got.status >= 500, what);
    }
    await assertSound();
    for (const name of Object.keys(BAD)) await assertNotStored(r, name);
    // The upstream answers well now: the next request must reach it (nothing kept by Squid).
    makeGood(r);
    for (const name of Object.keys(BAD)) {
      const before = upstreamGets(r, name);
      assertBytes(await get(name), r, name);
      assert.equal(upstreamGets(r, name), before + 1, `${name}: fetched upstream again`);
      await assertStored(r, name);
    }
    await assertSound();
  });
}

/** Runs a task (`args`, with --json) expecting the failing files' units to fail; returns nothing. */
async function assertTaskFails(r: EdgeRepo, args: string[]): Promise<void> {
  const run = await runCliIn(te, [...args, '--json']);
  const what = `${args.join(' ')}: exit ${run.code} ${run.stderr.slice(0, 2000)}`;
  assert.equal(run.code, 1, what);
  assert.ok(run.stdout.startsWith('{'), what);
  const summary = JSON.parse(run.stdout) as { failed: Array<{ unit_id: string; error: string }> };
  const bad = await Promise.all(Object.keys(BAD).map(async (n) => (await unitOf(r, n))!._id));
  assert.deepEqual(summary.failed.map((f) => f.unit_id).sort(), bad.sort(), JSON.stringify(summary.failed));
  for (const name of Object.keys(GOOD)) await assertStored(r, name);
  for (const name of Object.keys(BAD)) await assertNotStored(r, name);
  await assertSound();
}

/** The upstream answers well now: download-repo stores the rest, each fetched upstream again. */
async function assertRetryStores(r: EdgeRepo, config: string[]): Promise<void> {
  makeGood(r);
  const before = new Map(Object.keys(BAD).map((n) => [n, upstreamGets(r, n)]));
  await cliOk(te, [...config, 'download-repo', r.name]);
  for (const name of NAMES) await assertStored(r, name);
  for (const [name, n] of before) assert.equal(upstreamGets(r, name), n + 1, `${name}: fetched again`);
  await assertSound();
}

test('download-repo through Apache → Squid → streamer: failures stored nothing, then a retry gets the right bytes', async () => {
  const r = repos.squidDownload;
  await assertTaskFails(r, ['download-repo', r.name]);
  await assertRetryStores(r, []);
});

test('sweep through Apache → streamer (no Squid): failures stored nothing, then download-repo gets the right bytes', async () => {
  const r = repos.noneSweep;
  const units = await te.db.repoContentUnits.find({ repo_id: r.name }).toArray();
  assert.equal(units.length, NAMES.length);
  await te.db.deferred.insertMany(
    units.map((u) => newDeferredEntry({ unit_id: u.unit_id, unit_type_id: u.unit_type_id }, new Date())),
  );
  await assertTaskFails(r, [...noCache, 'sweep']);
  await assertRetryStores(r, noCache);
});
