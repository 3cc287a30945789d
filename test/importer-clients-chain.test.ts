/**
 * Real package managers against lazily synced yum and deb repositories
 * through the production chain:
 *   dnf / apt-get → Apache content vhost (public prefixes /pulp/repos/, /pulp/deb/)
 *     → content daemon → 302 to a signed URL → Apache streamer vhost
 *     → FastCGI authorizer → Squid → streamer daemon → a local upstream.
 * Metadata is stored at sync time, so it is an X-Sendfile hit (200, never
 * reaching the streamer); the package the client asks for is the only one
 * fetched upstream, once, and arrives byte-identical.
 * Apt packages needed: dnf, apt (apt-get), apache2, libapache2-mod-xsendfile,
 * squid, plus the fixture tools (rpm, createrepo-c, dpkg-dev, apt-utils).
 */
import assert from 'node:assert/strict';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import type http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { createAuthorizer } from '../src/daemons/authorizer.ts';
import { createContentDaemon } from '../src/daemons/content.ts';
import { createStreamer } from '../src/daemons/streamer.ts';
import { silentLogger } from '../src/log.ts';
import { proxyLayout, startProxies, stopProxies } from '../src/proxies/index.ts';
import { buildRepo, createRepo } from '../src/repos/index.ts';
import { generateKeys } from '../src/signing/index.ts';
import { waitFor } from '../src/util/process.ts';
import { setUpChain, squidLines } from './helpers/chain.ts';
import { dnfDownload, privateApt } from './helpers/clients.ts';
import { testDatabase } from './helpers/db.ts';
import { testEnv } from './helpers/env.ts';
import { aptIndexes, buildDeb, buildRpm, createrepo, serveTree } from './helpers/pkgrepos.ts';
import { chainSections, openUp } from './helpers/proxies.ts';
import { syncIn } from './helpers/sync.ts';
import { hitsMatching, startUpstream, type Upstream } from './helpers/upstream.ts';

// Cleanup, registered before testEnv/testDatabase: hooks run in order, and theirs remove the
// temp root (pid files, configs) and the database, which Apache, Squid and the daemons still use.
const cleanups: Array<() => Promise<unknown>> = [];
async function cleanup(): Promise<void> {
  for (const f of cleanups.splice(0).reverse()) await f().catch(() => {});
}
after(cleanup);

interface Fixtures {
  work: string;
  /** Upstream yum repository directory and the wanted RPM (relative to it). */
  yumDir: string;
  rpm: string;
  /** Upstream deb archive directory and the wanted .deb's Filename. */
  debDir: string;
  deb: string;
  up: Upstream;
  /** Apache content vhost. */
  C: string;
  /** Request targets the streamer daemon received, in order. */
  streamerSeen: string[];
  apacheAccessLog: string;
  squidAccessLog: string;
  /** Upstream GETs after both syncs, before any client. */
  synced: number;
}

async function setup(): Promise<Fixtures> {
  const work = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-clients-chain-'));
  cleanups.push(() => rm(work, { recursive: true, force: true }));
  const yumDir = path.join(work, 'yum');
  const rpm = await buildRpm(path.join(work, 'build-rpm'), yumDir, {
    name: 'plchain-wanted',
    version: '1.2',
  });
  await buildRpm(path.join(work, 'build-rpm'), yumDir, { name: 'plchain-other', version: '3.4' });
  await createrepo(yumDir);
  const debDir = path.join(work, 'deb');
  const deb = await buildDeb(path.join(work, 'build-deb'), debDir, {
    name: 'plchain-wanted',
    version: '1.2',
  });
  await buildDeb(path.join(work, 'build-deb'), debDir, {
    name: 'plchain-other',
    version: '3.4',
    arch: 'amd64',
  });
  await aptIndexes(debDir);
  const up = await startUpstream();
  await serveTree(up.files, '/el/', yumDir);
  await serveTree(up.files, '/debian/', debDir);

  const env = await testEnv('clients-chain', await chainSections({ save_to_storage: true }));
  const { config } = env;
  const cPort = config.apache.content_port;
  cleanups.push(() => stopProxies(config, { logger: silentLogger }));

  const db = await testDatabase('clients_chain');
  await generateKeys(config.paths.keys);
  await createRepo(db, await buildRepo({ name: 'el', type: 'yum', feed: `${up.url}el/` }));
  await createRepo(
    db,
    await buildRepo({ name: 'deb', type: 'deb', feed: `${up.url}debian/`, options: { dists: ['stable'] } }),
  );
  for (const name of ['el', 'deb'])
    await syncIn(db, config.paths, name, {
      timeouts: { connectMs: 5000, headersMs: 5000, bodyIdleMs: 5000 },
    });
  // Apache's workers (www-data) read stored files by X-Sendfile: open the way from the 0700 temp root.
  await openUp(env.root, [config.paths.storage, config.paths.published]);

  const authorizer = createAuthorizer(config, { logger: silentLogger });
  await authorizer.listen();
  cleanups.push(() => authorizer.close());
  const streamerSeen: string[] = [];
  const streamer = createStreamer(config, { db, logger: silentLogger });
  streamer.server.on('request', (req: http.IncomingMessage) => streamerSeen.push(req.url ?? ''));
  await streamer.listen();
  cleanups.push(() => streamer.close({ deadlineMs: 2000 }));
  const content = createContentDaemon(config, { db, logger: silentLogger });
  await content.listen();
  cleanups.push(() => content.close({ deadlineMs: 2000 }));
  await startProxies(config, { logger: silentLogger });

  const layout = proxyLayout(config.paths);
  return {
    work,
    yumDir,
    rpm,
    debDir,
    deb,
    up,
    C: `http://127.0.0.1:${cPort}`,
    streamerSeen,
    apacheAccessLog: path.join(layout.apacheLogDir, 'access.log'),
    squidAccessLog: path.join(layout.squidLogDir, 'access.log'),
    synced: up.total(),
  };
}

const f = await setUpChain(setup, cleanup);

interface AccessLine {
  user: string;
  method: string;
  path: string;
  status: number;
}

/** Apache access-log lines (pulp_lazy format) whose path starts with `prefix`. */
async function apacheLines(prefix: string): Promise<AccessLine[]> {
  const text = await readFile(f.apacheAccessLog, 'utf8').catch(() => '');
  const out: AccessLine[] = [];
  for (const m of text.matchAll(/^\S+ \S+ (\S+) \[[^\]]*\] "(\S+) (\S+) [^"]*" (\d{3}) /gm)) {
    if (m[3]!.startsWith(prefix)) out.push({ user: m[1]!, method: m[2]!, path: m[3]!, status: Number(m[4]) });
  }
  return out;
}

/**
 * The chain's view of one client run of a repository (`prefix`: its /pulp/content/<repo>/ path;
 * Apache logs the path after the public-prefix rewrite): the package went content vhost 302 →
 * streamer vhost (signed) → Squid MISS → streamer, once; everything else the client asked for,
 * `metadata` included, was answered by the content vhost without a redirect.
 */
async function assertChain(prefix: string, pkg: string, metadata: string): Promise<void> {
  const pkgPath = `${prefix}${pkg}`;
  const base = path.posix.basename(pkg);
  // Apache logs a request once it is finished.
  assert.ok(
    await waitFor(
      async () => (await apacheLines('/streamer/')).some((l) => l.path.endsWith(`/${base}`)),
      10_000,
    ),
    'the streamer vhost logged the package',
  );
  const log = await readFile(f.apacheAccessLog, 'utf8');
  const content = await apacheLines(prefix);
  assert.deepEqual(
    content.filter((l) => l.status === 302).map((l) => l.path),
    [pkgPath],
    `only the package is redirected to the streamer:\n${log}`,
  );
  assert.deepEqual(
    content.filter((l) => l.path === `${prefix}${metadata}`).map((l) => l.status),
    [200],
    `${metadata} served once, from storage:\n${log}`,
  );
  assert.deepEqual(
    content.filter((l) => l.path !== pkgPath && l.status !== 200 && l.status !== 404),
    [],
    'metadata answered from storage (200) or absent upstream too (404)',
  );
  assert.deepEqual(
    f.streamerSeen.filter((u) => !/\.(rpm|deb)$/.test(u)),
    [],
    'no metadata reached the streamer',
  );
  const streamed = f.streamerSeen.filter((u) => u.endsWith(`/${base}`));
  assert.equal(streamed.length, 1, `one streamer request for the package: ${f.streamerSeen.join(', ')}`);
  const streamerVhost = (await apacheLines('/streamer/')).filter((l) => l.path === `/streamer${streamed[0]}`);
  assert.deepEqual(
    streamerVhost.map((l) => [l.user, l.status]),
    [['signed', 200]],
    'the signed URL accepted by the authorizer, once',
  );
  assert.ok(
    await waitFor(async () => (await squidLines(f.squidAccessLog, streamed[0]!)).length >= 1, 10_000),
  );
  const squid = await squidLines(f.squidAccessLog, streamed[0]!);
  assert.equal(squid.length, 1, squid.join('\n'));
  assert.match(squid[0]!, /\bTCP_MISS\/200\b/, 'through Squid');
}

test('dnf downloads an RPM through Apache + Squid: byte-identical, only that package fetched upstream', async () => {
  assert.equal(hitsMatching(f.up, /\.(rpm|deb)$/), 0, 'no package fetched before the clients asked');
  const before = f.up.total();
  assert.equal(before, f.synced, 'nothing fetched upstream since the syncs');
  const work = path.join(f.work, 'dnf');
  const { result: r, dl } = await dnfDownload(work, `${f.C}/pulp/repos/el/`, 'plchain-wanted', 120_000);
  assert.equal(r.exitCode, 0, `${r.stdout}\n${r.stderr}`);
  const got = await readdir(dl);
  assert.deepEqual(got, [path.basename(f.rpm)]);
  assert.deepEqual(
    await readFile(path.join(dl, got[0]!)),
    await readFile(path.join(f.yumDir, f.rpm)),
    'byte-identical',
  );
  assert.equal(f.up.hits.get(`/el/${f.rpm}`), 1, 'the requested package fetched once');
  assert.equal(hitsMatching(f.up, /\.(rpm|deb)$/), 1, 'and nothing else');
  assert.equal(f.up.total(), before + 1, 'metadata came from storage, not upstream');
  await assertChain('/pulp/content/el/', f.rpm, 'repodata/repomd.xml');
});

test('apt-get update + download through Apache + Squid: byte-identical, only that package fetched upstream', async () => {
  assert.equal(hitsMatching(f.up, /\/pool\//), 0, 'no .deb fetched before the client asked');
  const before = f.up.total();
  const work = path.join(f.work, 'apt');
  const { apt } = await privateApt(work, `deb [trusted=yes] ${f.C}/pulp/deb/deb/ stable main`, 120_000);
  const u = await apt(['update']);
  assert.equal(u.exitCode, 0, `${u.stdout}\n${u.stderr}`);
  assert.doesNotMatch(`${u.stdout}\n${u.stderr}`, /^(W|E): /m, 'apt update without warnings');
  assert.equal(hitsMatching(f.up, /\/pool\//), 0, 'apt update fetched no package');
  assert.equal(f.up.total(), before, 'apt update fetched nothing upstream');
  const d = await apt(['download', 'plchain-wanted'], path.join(work, 'dl'));
  assert.equal(d.exitCode, 0, `${d.stdout}\n${d.stderr}`);
  const got = await readdir(path.join(work, 'dl'));
  assert.deepEqual(got, [path.basename(f.deb)]);
  assert.deepEqual(
    await readFile(path.join(work, 'dl', got[0]!)),
    await readFile(path.join(f.debDir, f.deb)),
    'byte-identical',
  );
  assert.equal(f.up.hits.get(`/debian/${f.deb}`), 1, 'the requested package fetched once');
  assert.equal(hitsMatching(f.up, /\/pool\//), 1, 'and nothing else');
  assert.equal(f.up.total(), before + 1, 'metadata came from storage, not upstream');
  await assertChain('/pulp/content/deb/', f.deb, 'dists/stable/Release');
});
