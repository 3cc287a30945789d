/**
 * The upstream matrix (issue #20, section 3): one real static web server as
 * the upstream (Apache httpd, nginx or Python's http.server, see
 * real-upstreams.ts) serving a file repository (PULP_MANIFEST, 200 small
 * files and a few multi-MB ones), a yum repository (createrepo_c) and a deb
 * repository (apt-ftparchive, a multi-MB Packages index), and a whole
 * pulp-lazy installation run as separate processes by the CLI:
 *   - content, streamer and authorizer daemons, Apache + Squid (proxy.cache "squid");
 *   - a second content daemon and Apache without Squid (proxy.cache "none"), on the same
 *     database, storage and streamer;
 *   - `pulp-lazy serve`, the all-in-one server, on the same database and storage.
 * The tests (one file per server kind: upstream-matrix-<kind>.test.ts) run in
 * order on that installation: sync of each repository type; a miss through
 * `serve`; a miss through the Apache chain with and without Squid, each by a
 * slow client; download-repo and sweep through the chain. After each: the
 * bytes match the fixture (sha256), storage holds nothing unverified, no temp
 * file is left in the working dir, and every daemon, proxy and the upstream
 * still run with the pid they started with.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmod, mkdir, mkdtemp, readdir, readFile, realpath, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { execa } from 'execa';
import { parse, stringify } from 'smol-toml';
import { type Config, parseConfig } from '../../src/config.ts';
import { newDeferredEntry } from '../../src/db/index.ts';
import { componentStatus, logFilePath } from '../../src/lifecycle/index.ts';
import { proxiesStatus, proxyLayout } from '../../src/proxies/index.ts';
import { hashFile } from '../../src/storage/index.ts';
import { portOpen, processAlive, waitFor } from '../../src/util/process.ts';
import { curl, squidLines } from './chain.ts';
import { aptIndexes, buildDeb, buildRpm, createrepo, readTree, sha256 } from './pkgrepos.ts';
import { freePorts, openUp } from './proxies.ts';
import { type RealUpstream, startRealUpstream, type UpstreamKind } from './real-upstreams.ts';
import { pgrepF } from './system.ts';
import {
  bytes,
  checkStorage,
  runCliIn,
  type Sections,
  type Spawned,
  spawnCli,
  type TaskEnv,
  taskEnv,
} from './tasks.ts';

/** What the upstream serves: the docroot and, per repository, the files a client may ask for. */
interface Fixture {
  docroot: string;
  /** file repository: paths relative to files/ of the small and the multi-MB files. */
  small: string[];
  big: string[];
  /** yum: RPM paths relative to yum/. */
  rpms: string[];
  /** deb: Filenames relative to deb/. */
  debs: string[];
}

const SMALL_FILES = 200;
/**
 * The smallest of them (the others up to 100 KiB larger): above the 64 KiB high-water mark of a
 * response body, so a fetcher that falls behind pauses it (undici #5360 needs that, then a FIN).
 */
const SMALL_SIZE = 64 * 1024;
const BIG_FILES = 3;
const BIG_SIZE = 6 * 1024 * 1024;
const RPMS = 5;
const DEBS = 60;
/** Lines of long description per .deb: 60 packages × ~60 KB make a ~4 MB Packages index. */
const DESCRIPTION_LINES = 800;

/** Runs `fn` over `items`, `n` at a time. */
async function inBatches<T>(items: T[], n: number, fn: (item: T) => Promise<unknown>): Promise<void> {
  for (let i = 0; i < items.length; i += n) await Promise.all(items.slice(i, i + n).map(fn));
}

/** file/: PULP_MANIFEST, small files (64–164 KiB) and multi-MB ones. */
async function buildFileRepo(dir: string, seed: string): Promise<Pick<Fixture, 'small' | 'big'>> {
  const small = Array.from({ length: SMALL_FILES }, (_, i) => `small/s-${String(i).padStart(3, '0')}.bin`);
  const big = Array.from({ length: BIG_FILES }, (_, i) => `big/b-${i}.bin`);
  await mkdir(path.join(dir, 'small'), { recursive: true });
  await mkdir(path.join(dir, 'big'), { recursive: true });
  const manifest: string[] = [];
  for (const [i, rel] of [...small, ...big].entries()) {
    const body = rel.startsWith('big/') ? randomBytes(BIG_SIZE) : bytes(SMALL_SIZE + i * 509, `${seed}-${i}`);
    await writeFile(path.join(dir, rel), body);
    manifest.push(`${rel},${sha256(body)},${body.length}\n`);
  }
  await writeFile(path.join(dir, 'PULP_MANIFEST'), manifest.join(''));
  return { small, big };
}

/** yum/: RPMs (rpmbuild) and repodata (createrepo_c). */
async function buildYumRepo(dir: string, work: string, seed: string): Promise<string[]> {
  const rpms = await Promise.all(
    Array.from({ length: RPMS }, (_, i) =>
      buildRpm(path.join(work, `build-rpm-${i}`), dir, { name: `plm-${seed}-${i}`, version: '1.0' }),
    ),
  );
  await createrepo(dir);
  return rpms;
}

/** deb/: .debs with long descriptions (dpkg-deb), Packages{,.gz,.xz} and Release (apt-ftparchive). */
async function buildDebRepo(dir: string, work: string, seed: string): Promise<string[]> {
  const debs: string[] = [];
  await inBatches(
    Array.from({ length: DEBS }, (_, i) => i),
    4,
    async (i) => {
      const text = randomBytes(DESCRIPTION_LINES * 57).toString('base64');
      debs[i] = await buildDeb(path.join(work, 'build-deb'), dir, {
        name: `plm-${seed}-${String(i).padStart(3, '0')}`,
        version: '1.0',
        description: text.match(/.{1,76}/g)!,
      });
    },
  );
  await aptIndexes(dir);
  return debs;
}

async function buildFixture(work: string, seed: string): Promise<Fixture> {
  const docroot = path.join(work, 'docroot');
  const [{ small, big }, rpms, debs] = await Promise.all([
    buildFileRepo(path.join(docroot, 'files'), seed),
    buildYumRepo(path.join(docroot, 'yum'), work, seed),
    buildDebRepo(path.join(docroot, 'deb'), work, seed),
  ]);
  // Apache's (www-data) and nginx's (nobody) workers read the tree.
  await openUp(work, [docroot]);
  await execa('chmod', ['-R', 'a+rX', docroot]);
  return { docroot, small, big, rpms, debs };
}

/** The running installation: configs, ports, pids taken at start. */
export interface Install {
  te: TaskEnv;
  /** The configuration without Squid (second content daemon and Apache): its file, parsed. */
  noCacheConfig: string;
  configs: { squid: Config; none: Config };
  /** Apache content vhosts: with Squid, without. */
  squidC: string;
  noneC: string;
  /** `pulp-lazy serve`. */
  serveBase: string;
  serve: Spawned;
  /** name → pid at start: daemons and proxies of both configs, serve, the upstream. */
  pids: Map<string, number>;
}

/** Runs the CLI; fails with its output when it exits non-zero. */
export async function cliOk(te: TaskEnv, args: string[]): Promise<string> {
  const r = await runCliIn(te, args);
  if (r.code !== 0) {
    // The command's own output, and the end of the streamer daemon's log (the tasks go through it).
    const out = `${r.stdout}\n${r.stderr}`.slice(0, 3000);
    const log = await readFile(logFilePath(te.config.paths.logs, 'streamer'), 'utf8').catch(() => '');
    assert.fail(`pulp-lazy ${args.join(' ')}: exit ${r.code}\n${out}\nstreamer log: ${log.slice(-1500)}`);
  }
  return r.stdout;
}

/**
 * The pid of every process of both configurations (what `status` reads: pid files and health
 * probes; Apache's and Squid's pid files), by name; fails when one is not running or unhealthy.
 */
export async function componentPids(configs: Record<string, Config>): Promise<Map<string, number>> {
  const out = new Map<string, number>();
  for (const [label, config] of Object.entries(configs)) {
    for (const name of ['content', 'streamer', 'authorizer'] as const) {
      // The configuration without Squid shares the other's streamer and authorizer.
      if (label === 'none' && name !== 'content') continue;
      const s = await componentStatus(config, name);
      assert.ok(s.running && s.healthy === true && s.pid, `${label} ${name}: ${JSON.stringify(s)}`);
      out.set(`${label} ${name}`, s.pid);
    }
    const p = await proxiesStatus(config);
    assert.ok(p.apache.running && p.apache.pid, `${label} apache: ${JSON.stringify(p.apache)}`);
    out.set(`${label} apache`, p.apache.pid);
    if (p.squid.enabled) {
      assert.ok(p.squid.running && p.squid.pid, `${label} squid: ${JSON.stringify(p.squid)}`);
      out.set(`${label} squid`, p.squid.pid);
    }
  }
  return out;
}

/**
 * Starts the installation (see the top of the file). `more.squid`: settings merged into the main
 * configuration's (the shared streamer's among them); `more.none`: sections the configuration
 * without Squid does not set otherwise (e.g. tasks).
 */
export async function startInstall(
  label: string,
  onCleanup: (fn: () => Promise<unknown>) => void,
  more: { squid?: Sections; none?: Sections } = {},
): Promise<Install> {
  const [cPort, sPort, squidPort, contentD, streamerD, authz, nC, nS, nContentD, servePort] =
    await freePorts(10);
  const te = await taskEnv(label, {
    apache: {
      listen_host: '127.0.0.1',
      content_port: cPort!,
      streamer_port: sPort!,
      authorizer_listen: `127.0.0.1:${authz}`,
    },
    content: { listen: `127.0.0.1:${contentD}` },
    streamer: { listen: `127.0.0.1:${streamerD}` },
    squid: { port: squidPort!, shutdown_lifetime: '0s', cache_size_mb: 256 },
    serve: { listen: `127.0.0.1:${servePort}` },
    proxy: { cache: 'squid' },
    // The download tasks GET signed URLs through Apache → Squid → streamer.
    tasks: { fetch: 'proxy' },
  });
  if (more.squid) await te.reconfigure(more.squid);
  const { config } = te;
  const noCacheConfig = path.join(te.root, 'config-nocache.toml');
  // Registered before anything starts: whatever did start is stopped, and nothing may be left.
  let serve: Spawned | undefined;
  onCleanup(async () => {
    serve?.child.kill('SIGTERM');
    await serve?.exited;
    await runCliIn(te, ['--config', noCacheConfig, 'stop', 'all']);
    await runCliIn(te, ['stop', 'all']);
    assert.deepEqual(await pgrepF(te.root), [], `processes left running under ${te.root}`);
  });
  await chmod(te.root, 0o755);
  await openUp(te.root, [config.paths.storage, config.paths.published]);
  // Same database, storage, published tree, keys and streamer; its own Apache, content daemon,
  // pid files and logs; no Squid.
  const alt = path.join(te.root, 'nocache');
  await writeFile(
    noCacheConfig,
    stringify({
      database: { name: te.dbName },
      paths: {
        ...config.paths,
        run: path.join(alt, 'run'),
        logs: path.join(alt, 'logs'),
        cache: path.join(alt, 'cache'),
      },
      log: { level: 'warn' },
      apache: {
        listen_host: '127.0.0.1',
        content_port: nC!,
        streamer_port: nS!,
        authorizer_listen: `127.0.0.1:${authz}`,
      },
      content: { listen: `127.0.0.1:${nContentD}` },
      streamer: { listen: `127.0.0.1:${streamerD}` },
      proxy: { cache: 'none' },
      ...more.none,
    }),
  );
  // The daemons at once, then the proxies (as `start all` does): a Squid started while its
  // parent, the streamer, does not listen yet answers the first request 502 (ERR_READ_ERROR,
  // HIER_NONE) without trying the streamer.
  await Promise.all([
    ...['authorizer', 'streamer', 'content'].map((name) => cliOk(te, ['start', name])),
    cliOk(te, ['--config', noCacheConfig, 'start', 'content']),
  ]);
  await Promise.all([
    cliOk(te, ['start', 'proxies']),
    cliOk(te, ['--config', noCacheConfig, 'start', 'proxies']),
  ]);
  serve = spawnCli(te, ['serve']);
  const serveUp = await waitFor(
    async () => serve!.child.exitCode === null && (await portOpen('127.0.0.1', servePort!)),
    30_000,
  );
  assert.ok(serveUp, `serve did not start: ${serve.stderr()}`);
  const configs = {
    squid: config,
    none: parseConfig(parse(await readFile(noCacheConfig, 'utf8')), noCacheConfig, te.env),
  };
  const pids = await componentPids(configs);
  pids.set('serve', serve.child.pid!);
  return {
    te,
    noCacheConfig,
    configs,
    squidC: `http://127.0.0.1:${cPort}`,
    noneC: `http://127.0.0.1:${nC}`,
    serveBase: `http://127.0.0.1:${servePort}`,
    serve,
    pids,
  };
}

/** Every regular file below `dir` (not following symlinks), as absolute paths. */
export async function filesBelow(dir: string): Promise<string[]> {
  const out: string[] = [];
  for (const e of await readdir(dir, { withFileTypes: true, recursive: true }).catch(() => [])) {
    if (e.isFile()) out.push(path.join(e.parentPath, e.name));
  }
  return out;
}

/**
 * Registers the matrix for `kind`: builds the fixture, starts the upstream and the installation
 * at the file's top level (a failure there is reported as a failing 'set-up' test), then the tests.
 */
export async function upstreamMatrix(kind: UpstreamKind): Promise<void> {
  // Clean-up registered before taskEnv's hook (which drops the database and removes the root):
  // hooks run in order. serve, then both configs' daemons and proxies; nothing may be left.
  const cleanups: Array<() => Promise<unknown>> = [];
  after(async () => {
    // Every step runs; the first failure (e.g. a process left behind) is reported at the end.
    const errors: unknown[] = [];
    for (const f of cleanups.splice(0).reverse()) await f().catch((err) => errors.push(err));
    if (errors.length > 0) throw errors[0];
  });
  let up: RealUpstream;
  let fx: Fixture;
  let inst: Install;
  try {
    const work = await mkdtemp(path.join(tmpdir(), `pulp-lazy-matrix-${kind}-`));
    cleanups.push(() => rm(work, { recursive: true, force: true }));
    [fx, inst] = await Promise.all([
      buildFixture(work, kind),
      startInstall(`matrix-${kind}`, (fn) => cleanups.push(fn)),
    ]);
    up = await startRealUpstream(kind, fx.docroot);
    inst.pids.set(`upstream ${kind}`, up.pid);
  } catch (err) {
    test('set-up', () => {
      throw err;
    });
    return;
  }
  const { te } = inst;
  const { storage, working, published } = te.config.paths;
  const base = up.url;

  /** The fixture's bytes of a file the upstream serves (path below the docroot). */
  const fixture = (rel: string) => readFile(path.join(fx.docroot, rel));

  /**
   * After every test: every stored file belongs to a downloaded unit and has its checksum, or is
   * metadata a sync stored (then identical to the upstream's); the working dir holds no file; every
   * daemon, proxy, serve and the upstream run with the pid they started with.
   */
  async function assertSound(): Promise<void> {
    await checkStorage(te);
    const unitFiles = new Set<string>();
    for (const u of await te.db.units.find({}).toArray()) {
      if (u.downloaded) for (const f of u.files) unitFiles.add(f.storage_path);
    }
    const stray: string[] = [];
    for (const f of await filesBelow(storage)) {
      if (!unitFiles.has(f)) stray.push(f);
    }
    // Metadata of the syncs is stored too: each such file is published and has the bytes of one
    // of the upstream's files.
    const metadata = await publishedMetadata();
    const upstreamSums = await fixtureSums();
    for (const f of stray) {
      assert.ok(metadata.has(f), `stored file of no downloaded unit and no metadata: ${f}`);
      const sum = (await hashFile(f, 'sha256')).digest;
      assert.ok(upstreamSums.has(sum), `stored metadata ${metadata.get(f)}: not the upstream's bytes`);
    }
    assert.deepEqual(await filesBelow(working), [], 'no temp file left in the working dir');
    const now = await componentPids(inst.configs);
    for (const [name, pid] of now) assert.equal(pid, inst.pids.get(name), `${name}: same pid`);
    assert.ok(processAlive(inst.pids.get('serve')!) && inst.serve.child.exitCode === null, 'serve runs');
    assert.ok(up.alive(), `the ${kind} upstream runs`);
  }

  let sums: Set<string> | undefined;
  /** The sha256 of every file the upstream serves. */
  async function fixtureSums(): Promise<Set<string>> {
    sums ??= new Set([...(await readTree(fx.docroot)).values()].map((b) => sha256(b)));
    return sums;
  }

  /** Stored metadata files the published tree links to (resolved path → published path). */
  async function publishedMetadata(): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    for (const link of await readdir(published, { withFileTypes: true, recursive: true })) {
      const p = path.join(link.parentPath, link.name);
      if (!link.isSymbolicLink() || /\.(bin|rpm|deb)$/.test(link.name)) continue;
      const target = await realpath(p).catch(() => undefined);
      if (target) out.set(target, p);
    }
    return out;
  }

  /** Each file is stored with the fixture's bytes, and its unit marked downloaded. */
  async function assertStored(rels: string[]): Promise<void> {
    const sums = new Map<string, string>();
    for (const rel of rels) sums.set(rel, sha256(await fixture(rel)));
    const missing = async () => {
      const byChecksum = new Map<string, { downloaded: boolean; storage_path: string }>();
      for (const u of await te.db.units.find({}).toArray()) {
        for (const f of u.files)
          byChecksum.set(f.checksum, { downloaded: u.downloaded, storage_path: f.storage_path });
      }
      const out: string[] = [];
      for (const [rel, sum] of sums) {
        const f = byChecksum.get(sum);
        const got = f?.downloaded
          ? await hashFile(f.storage_path, 'sha256').catch(() => undefined)
          : undefined;
        if (got?.digest !== sum) out.push(rel);
      }
      return out;
    };
    // The streamer marks the unit downloaded just after the client got its last byte.
    await waitFor(async () => (await missing()).length === 0, 15_000);
    assert.deepEqual(await missing(), [], "stored with the fixture's bytes, units downloaded");
  }

  /** The storage path of each unit file with the fixture's bytes of `rel` (one query). */
  async function storagePathsOf(rels: string[]): Promise<string[]> {
    const bySum = new Map<string, string>();
    for (const u of await te.db.units.find({}).toArray()) {
      for (const f of u.files) bySum.set(f.checksum, f.storage_path);
    }
    const out: string[] = [];
    for (const rel of rels) {
      const p = bySum.get(sha256(await fixture(rel)));
      assert.ok(p, `${rel}: a unit`);
      out.push(p);
    }
    return out;
  }

  /** A client GET of `url` (curl -L, optionally slowed down): the fixture's bytes, one upstream GET. */
  async function assertMiss(url: string, rel: string, curlArgs: string[] = []): Promise<void> {
    const body = await fixture(rel);
    assert.equal(await up.gets(`/${rel}`), 0, `${rel}: never fetched upstream before`);
    const r = await curl(url, ['-L', '--max-time', '120', ...curlArgs]);
    assert.equal(r.status, 200, `${url}: ${r.stderr} ${r.body.subarray(0, 300)}`);
    assert.equal(r.body.length, body.length, `${rel}: length`);
    assert.equal(sha256(r.body), sha256(body), `${rel}: sha256 of the bytes the client got`);
    await assertStored([rel]);
    assert.equal(await up.gets(`/${rel}`), 1, `${rel}: one upstream GET`);
  }

  /** Creates and syncs a repository; returns `sync`'s output. */
  async function sync(name: string, type: string, feed: string, extra: string[] = []): Promise<string> {
    await cliOk(te, ['repo', 'create', name, '--type', type, '--feed', feed, ...extra]);
    return cliOk(te, ['sync', name]);
  }

  /** The synced repository's metadata below published/<repo>/ equals the upstream's files. */
  async function assertMetadata(repo: string, upstreamDir: string, metadataRe: RegExp): Promise<void> {
    const publishedTree = await readTree(path.join(published, repo));
    const want = [...(await readTree(path.join(fx.docroot, upstreamDir))).entries()].filter(([rel]) =>
      metadataRe.test(rel),
    );
    assert.ok(want.length > 0);
    for (const [rel, body] of want) {
      const got = publishedTree.get(rel);
      assert.ok(got, `${repo}: ${rel} published`);
      assert.equal(sha256(got), sha256(body), `${repo}: ${rel} identical to the upstream's`);
    }
  }

  /** Packages fetched upstream (by extension) so far. */
  const packageGets = async () =>
    (await up.requests()).filter((r) => r.method === 'GET' && /\.(bin|rpm|deb)$/.test(r.path)).length;

  test(`${kind}: sync of a file repository (PULP_MANIFEST, ${SMALL_FILES + BIG_FILES} files)`, async () => {
    await sync('files', 'file', `${base}files/`);
    const units = await te.db.units.countDocuments({ unit_type_id: 'file' });
    assert.equal(units, SMALL_FILES + BIG_FILES);
    assert.equal(await te.db.units.countDocuments({ downloaded: true }), 0, 'lazy: nothing downloaded');
    assert.equal(await packageGets(), 0, 'no file fetched upstream');
    assert.equal(await up.gets('/files/PULP_MANIFEST'), 1);
    await assertSound();
  });

  test(`${kind}: sync of a yum repository (createrepo_c, ${RPMS} RPMs)`, async () => {
    await sync('el', 'yum', `${base}yum/`);
    assert.equal(await te.db.units.countDocuments({ unit_type_id: 'rpm' }), RPMS);
    assert.equal(await packageGets(), 0, 'no RPM fetched upstream');
    await assertMetadata('el', 'yum', /^repodata\//);
    await assertSound();
  });

  test(`${kind}: sync of a deb repository (${DEBS} packages, multi-MB Packages index)`, async () => {
    const packages = await stat(path.join(fx.docroot, 'deb/dists/stable/main/binary-amd64/Packages'));
    assert.ok(packages.size > 3_000_000, `Packages is ${packages.size} bytes`);
    await sync('deb', 'deb', `${base}deb/`, ['--dists', 'stable']);
    assert.equal(await te.db.units.countDocuments({ unit_type_id: 'deb' }), DEBS);
    assert.equal(await packageGets(), 0, 'no .deb fetched upstream');
    await assertMetadata('deb', 'deb', /^dists\/stable\/(Release|main\/binary-amd64\/Packages(\.gz|\.xz)?)$/);
    await assertSound();
  });

  test(`${kind}: a miss through serve (file, RPM, .deb)`, async () => {
    const b = `${inst.serveBase}/pulp/content`;
    await assertMiss(`${b}/files/${fx.big[0]}`, `files/${fx.big[0]}`, ['--limit-rate', '4M']);
    await assertMiss(`${b}/el/${fx.rpms[0]}`, `yum/${fx.rpms[0]}`);
    await assertMiss(`${b}/deb/${fx.debs[0]}`, `deb/${fx.debs[0]}`);
    await assertSound();
  });

  for (const [cache, i] of [
    ['squid', 1],
    ['none', 2],
  ] as const) {
    test(`${kind}: a miss through Apache → ${cache === 'squid' ? 'Squid → ' : ''}streamer (slow client)`, async () => {
      const C = cache === 'squid' ? inst.squidC : inst.noneC;
      const misses: Array<[string, string, string[]]> = [
        [`${C}/pulp/repos/files/${fx.big[i]}`, `files/${fx.big[i]}`, ['--limit-rate', '4M']],
        [`${C}/pulp/repos/el/${fx.rpms[i]}`, `yum/${fx.rpms[i]}`, []],
        [`${C}/pulp/deb/deb/${fx.debs[i]}`, `deb/${fx.debs[i]}`, []],
      ];
      const squidLog = path.join(proxyLayout(te.config.paths).squidLogDir, 'access.log');
      for (const [url, rel, args] of misses) {
        await assertMiss(url, rel, args);
        // Squid logs a request once it is finished; the other chain must not have reached it.
        const p = (await storagePathsOf([rel]))[0]!;
        if (cache === 'squid') {
          assert.ok(await waitFor(async () => (await squidLines(squidLog, p)).length > 0, 10_000));
          assert.match((await squidLines(squidLog, p)).join('\n'), /\bTCP_MISS\/200\b/, `${rel}: Squid MISS`);
        } else {
          assert.deepEqual(await squidLines(squidLog, p), [], `${rel}: not through Squid`);
        }
      }
      await assertSound();
    });
  }

  test(`${kind}: download-repo through the chain: ${SMALL_FILES} small files, ${DEBS} .debs`, async () => {
    for (const repo of ['files', 'deb']) await cliOk(te, ['download-repo', repo, '--concurrency', '16']);
    const rels = [...fx.small.map((r) => `files/${r}`), ...fx.debs.map((r) => `deb/${r}`)];
    await assertStored(rels);
    const gets = await up.requests();
    // Every file went through Squid (the tasks GET signed URLs from Apache's streamer vhost).
    const squidLog = await readFile(
      path.join(proxyLayout(te.config.paths).squidLogDir, 'access.log'),
      'utf8',
    );
    const viaSquid = new Set(
      squidLog.split('\n').map((l) => new URL(l.trim().split(/\s+/)[6] ?? '/', 'http://x').pathname),
    );
    for (const rel of rels) {
      assert.equal(
        gets.filter((g) => g.method === 'GET' && g.path === `/${rel}`).length,
        1,
        `${rel}: one GET`,
      );
    }
    // The first three .debs were the misses of the tests before (serve, Apache with and without Squid).
    const swept = [...fx.small.map((r) => `files/${r}`), ...fx.debs.slice(3).map((r) => `deb/${r}`)];
    for (const [j, p] of (await storagePathsOf(swept)).entries()) {
      assert.ok(viaSquid.has(p), `${swept[j]}: through Squid`);
    }
    await assertSound();
  });

  test(`${kind}: sweep of the queued yum units through the chain`, async () => {
    const pending = await te.db.units.find({ unit_type_id: 'rpm', downloaded: false }).toArray();
    assert.equal(pending.length, RPMS - 3);
    await te.db.deferred.insertMany(
      pending.map((u) => newDeferredEntry({ unit_id: u._id, unit_type_id: u.unit_type_id }, new Date())),
    );
    await cliOk(te, ['sweep']);
    await assertStored(fx.rpms.map((r) => `yum/${r}`));
    assert.equal(await te.db.deferred.countDocuments({}), 0, 'queue empty');
    await assertSound();
  });
}
