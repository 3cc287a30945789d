/**
 * The production chain end to end, with real daemons everywhere:
 *   curl → Apache content vhost → content daemon → 302 to a signed URL
 *        → Apache streamer vhost → FastCGI authorizer → Squid → streamer daemon
 *        → a local upstream (GETs counted per path).
 * The published tree, units and catalog come from a real file-repository sync
 * of a PULP_MANIFEST served by that upstream. Everything runs on free loopback
 * ports in a temp root. The tests run in order and share the chain:
 *   save_to_storage off: first download is a Squid MISS, a second client a HIT;
 *   save_to_storage on:  the saved file is an X-Sendfile hit (Range, HEAD, ETag);
 *   20 concurrent first requests for a slow upstream: one upstream GET;
 *   bad signatures never reach Squid; the authorizer down fails closed, then recovers;
 *   a protected repository over TLS (second Apache, client certificates);
 *   proxies stop leaves nothing behind.
 */
import assert from 'node:assert/strict';
import { mkdir, readFile } from 'node:fs/promises';
import type http from 'node:http';
import path from 'node:path';
import { after, test } from 'node:test';
import type { Config } from '../src/config.ts';
import { type Authorizer, createAuthorizer } from '../src/daemons/authorizer.ts';
import { type ContentDaemon, createContentDaemon } from '../src/daemons/content.ts';
import { createStreamer, type Streamer } from '../src/daemons/streamer.ts';
import { silentLogger } from '../src/log.ts';
import { proxiesStatus, proxyLayout, startProxies, stopProxies } from '../src/proxies/index.ts';
import { buildRepo, createRepo } from '../src/repos/index.ts';
import { generateKeys, loadPrivateKey, signUrl } from '../src/signing/index.ts';
import { unitStoragePath } from '../src/storage/index.ts';
import { portOpen, processAlive, waitFor } from '../src/util/process.ts';
import { curl, makePki, request, setUpChain, squidLines } from './helpers/chain.ts';
import { testDatabase } from './helpers/db.ts';
import { testEnv } from './helpers/env.ts';
import { chainSections, freePorts, openUp, processesMentioning } from './helpers/proxies.ts';
import { bytes, exists, serve, serveSlowly, sha256, startOrigin } from './helpers/streamer.ts';
import { syncIn } from './helpers/sync.ts';

// Cleanup, registered before testEnv/testDatabase: hooks run in order, and theirs remove the
// temp root (pid files, configs) and the database, which Apache, Squid and the daemons still use.
const cleanups: Array<() => Promise<unknown>> = [];
async function cleanup(): Promise<void> {
  for (const f of cleanups.splice(0).reverse()) await f().catch(() => {});
}
after(cleanup);

// --- upstream: two file repositories behind one local server ---------------
const FILES: Record<string, Buffer> = {
  'pkgs/first.bin': bytes(2_000_000, 1),
  'pkgs/saved.bin': bytes(500_000, 2),
  'pkgs/slow.bin': bytes(1_000_000, 3),
  'pkgs/refused.bin': bytes(200_000, 4),
  'pkgs/authz.bin': bytes(200_000, 5),
  'pkgs/reqid.bin': bytes(100_000, 7),
};
const SECURE: Record<string, Buffer> = { 'secure.bin': bytes(300_000, 6) };
const SLOW = 'pkgs/slow.bin';
const manifest = (files: Record<string, Buffer>) =>
  Object.entries(files)
    .map(([rel, b]) => `${rel},${sha256(b)},${b.length}\n`)
    .join('');
const routes: Record<string, ReturnType<typeof serve>> = {
  '/files/PULP_MANIFEST': serve(Buffer.from(manifest(FILES))),
  '/secure/PULP_MANIFEST': serve(Buffer.from(manifest(SECURE))),
};
for (const [rel, b] of Object.entries(FILES)) {
  routes[`/files/${rel}`] =
    rel === SLOW ? serveSlowly(b, { headerDelayMs: 1000, chunk: 64 * 1024, intervalMs: 5 }) : serve(b);
}
for (const [rel, b] of Object.entries(SECURE)) routes[`/secure/${rel}`] = serve(b);
/** The X-Request-Id of each upstream GET of pkgs/reqid.bin. */
const reqidUpstreamIds: Array<string | undefined> = [];
routes['/files/pkgs/reqid.bin'] = (req, res) => {
  const id = req.headers['x-request-id'];
  reqidUpstreamIds.push(typeof id === 'string' ? id : undefined);
  serve(FILES['pkgs/reqid.bin']!)(req, res);
};

interface Chain {
  config: Config;
  tlsConfig: Config;
  origin: Awaited<ReturnType<typeof startOrigin>>;
  db: Awaited<ReturnType<typeof testDatabase>>;
  /** Apache content and streamer vhosts (plain HTTP), and the TLS instance's. */
  C: string;
  S: string;
  TC: string;
  ports: { apache: number[]; squid: number; tlsApache: number[] };
  pki: Awaited<ReturnType<typeof makePki>>;
  /** Request targets the streamer daemon received, in order. */
  streamerSeen: string[];
  /** The X-Request-Id of each request the streamer daemon received: [target, id]. */
  streamerIds: Array<[string, string | undefined]>;
  /** Added to the content daemon's clock: a "later" redirect has another expiry and signature. */
  skew: { ms: number };
  authorizer: Authorizer;
  /** (Re)starts the streamer daemon on its port with streamer.save_to_storage as given. */
  startStreamer(saveToStorage: boolean): Promise<void>;
  accessLog: string;
  apacheErrorLog: string;
}

async function setup(): Promise<Chain> {
  const env = await testEnv('e2e-chain', await chainSections({ save_to_storage: false }));
  const { config } = env;
  const [cPort, sPort, squidPort] = [
    config.apache.content_port,
    config.apache.streamer_port,
    config.squid.port,
  ];
  const [tcPort, tsPort, tlsContentD] = await freePorts(3);
  const pkiDir = path.join(env.root, 'pki');
  await mkdir(pkiDir, { recursive: true });
  const pki = await makePki(pkiDir);
  // A second, TLS-only Apache on the same storage, published tree and daemons (no Squid:
  // the port pair and run/log dirs are its own).
  const tlsRoot = path.join(env.root, 'tls');
  const tlsConfig: Config = {
    ...config,
    paths: {
      ...config.paths,
      run: path.join(tlsRoot, 'run'),
      logs: path.join(tlsRoot, 'logs'),
      cache: path.join(tlsRoot, 'cache'),
    },
    apache: {
      ...config.apache,
      content_port: tcPort!,
      streamer_port: tsPort!,
      tls_cert: pki.serverCert,
      tls_key: pki.serverKey,
      tls_ca: pki.ca,
    },
    content: { ...config.content, listen: `127.0.0.1:${tlsContentD}` },
    proxy: { cache: 'none' },
  };
  cleanups.push(() => stopProxies(config, { logger: silentLogger }));
  cleanups.push(() => stopProxies(tlsConfig, { logger: silentLogger }));

  const origin = await startOrigin(routes);
  const db = await testDatabase('e2e_chain');
  await generateKeys(config.paths.keys);
  await createRepo(db, await buildRepo({ name: 'files', type: 'file', feed: `${origin.base}/files/` }));
  await createRepo(
    db,
    await buildRepo({
      name: 'secure',
      type: 'file',
      feed: `${origin.base}/secure/`,
      protectCaFile: pki.ca,
    }),
  );
  for (const name of ['files', 'secure'])
    await syncIn(db, config.paths, name, {
      timeouts: { connectMs: 5000, headersMs: 5000, bodyIdleMs: 5000 },
    });
  // Apache's workers (www-data) read stored files by X-Sendfile: open the way from the 0700 temp root.
  await openUp(env.root, [config.paths.storage, config.paths.published]);

  const streamerSeen: string[] = [];
  const streamerIds: Array<[string, string | undefined]> = [];
  const skew = { ms: 0 };
  let streamer: Streamer | undefined;
  const chain: Chain = {
    config,
    tlsConfig,
    origin,
    db,
    C: `http://127.0.0.1:${cPort}`,
    S: `http://127.0.0.1:${sPort}`,
    TC: `https://127.0.0.1:${tcPort}`,
    ports: { apache: [cPort!, sPort!], squid: squidPort!, tlsApache: [tcPort!, tsPort!] },
    pki,
    streamerSeen,
    streamerIds,
    skew,
    authorizer: createAuthorizer(config, { logger: silentLogger }),
    async startStreamer(saveToStorage) {
      await streamer?.close({ deadlineMs: 2000 });
      const s = createStreamer(
        { ...config, streamer: { ...config.streamer, save_to_storage: saveToStorage } },
        { db, logger: silentLogger },
      );
      s.server.on('request', (req: http.IncomingMessage) => {
        streamerSeen.push(req.url ?? '');
        const id = req.headers['x-request-id'];
        streamerIds.push([req.url ?? '', typeof id === 'string' ? id : undefined]);
      });
      await s.listen();
      streamer = s;
    },
    accessLog: path.join(proxyLayout(config.paths).squidLogDir, 'access.log'),
    apacheErrorLog: path.join(proxyLayout(config.paths).apacheLogDir, 'error.log'),
  };
  await chain.authorizer.listen();
  cleanups.push(() => chain.authorizer.close());
  await chain.startStreamer(false);
  cleanups.push(async () => streamer?.close({ deadlineMs: 2000 }));
  const contents: ContentDaemon[] = [
    createContentDaemon(config, { db, logger: silentLogger, clock: () => Date.now() + skew.ms }),
    createContentDaemon(tlsConfig, { db, logger: silentLogger }),
  ];
  for (const d of contents) {
    await d.listen();
    cleanups.push(() => d.close({ deadlineMs: 2000 }));
  }
  await startProxies(config, { logger: silentLogger });
  await startProxies(tlsConfig, { logger: silentLogger });
  return chain;
}

const c = await setUpChain(setup, cleanup);

const storagePathOf = (rel: string, files = FILES) =>
  unitStoragePath(c.config.paths.storage, 'file', sha256(files[rel]!), path.posix.basename(rel));
const publicUrl = (rel: string) => `${c.C}/pulp/repos/files/${rel}`;
const seenBy = (p: string) => c.streamerSeen.filter((u) => u === p).length;
const errorLog = async () =>
  (await readFile(c.apacheErrorLog, 'utf8').catch(() => '')).split('\n').slice(-5).join('\n');
/** Squid logs a request once it is finished: wait until `n` lines for `p` are there. */
async function squidLog(p: string, n: number): Promise<string[]> {
  await waitFor(async () => (await squidLines(c.accessLog, p)).length >= n, 10_000);
  return squidLines(c.accessLog, p);
}
/** The file is in storage with the right bytes and its unit is marked downloaded. */
function stored(p: string, body: Buffer): Promise<boolean> {
  return waitFor(async () => {
    if (!(await readFile(p).catch(() => Buffer.alloc(0))).equals(body)) return false;
    return (await c.db.units.findOne({ 'files.storage_path': p }))?.downloaded === true;
  }, 10_000);
}

test('first curl -L of a never-downloaded file: 302, signed URL, Squid MISS, streamer, one upstream GET', async () => {
  const rel = 'pkgs/first.bin';
  const p = storagePathOf(rel);
  const r = await curl(publicUrl(rel), ['-L']);
  assert.equal(r.status, 200, `${r.stderr} ${r.body.subarray(0, 200)} ${await errorLog()}`);
  assert.equal(r.info.num_redirects, 1, 'one redirect');
  const signed = String(r.info.url_effective);
  assert.ok(signed.startsWith(`${c.S}/streamer${p}?policy=`), signed);
  assert.match(signed, /&signature=[A-Za-z0-9_-]+$/);
  assert.ok(r.body.equals(FILES[rel]!), 'body byte-identical to upstream');
  assert.equal(c.origin.getsOf(`/files/${rel}`), 1, 'upstream saw one GET');
  assert.deepEqual(
    c.streamerSeen.filter((u) => u.includes(path.posix.basename(rel))),
    [p],
    'the streamer got the storage path, without policy/signature',
  );
  const lines = await squidLog(p, 1);
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /\bTCP_MISS\/200\b/);
  assert.equal(await exists(p), false, 'save_to_storage = false: nothing stored');
});

test('the request id of a miss: rid in the redirect, X-Request-Id at the streamer and upstream, not in the cache key', async () => {
  const rel = 'pkgs/reqid.bin';
  const p = storagePathOf(rel);
  const r = await curl(publicUrl(rel), ['-L']);
  assert.equal(r.status, 200, `${r.stderr} ${await errorLog()}`);
  assert.ok(r.body.equals(FILES[rel]!));
  const rid = /[?&]rid=([A-Za-z0-9._@-]+)/.exec(String(r.info.url_effective))?.[1];
  assert.ok(rid, `the redirect carries rid: ${r.info.url_effective}`);
  assert.deepEqual(
    c.streamerIds.filter(([u]) => u === p),
    [[p, rid]],
    'Apache turned rid into X-Request-Id; the streamer got no query',
  );
  assert.deepEqual(reqidUpstreamIds, [rid], 'the streamer sent the id upstream');
  // Another id, same cache key: a Squid HIT, nothing new for the streamer or upstream.
  const again = await curl(publicUrl(rel), ['-L']);
  assert.equal(again.status, 200);
  assert.notEqual(/[?&]rid=([^&]+)/.exec(String(again.info.url_effective))?.[1], rid);
  assert.equal(seenBy(p), 1);
  assert.equal(reqidUpstreamIds.length, 1);
  const lines = await squidLog(p, 2);
  assert.match(lines[1]!, /\bTCP_(MEM_)?HIT\/200\b/);
});

test('a second client with another signature: Squid HIT, upstream still one GET', async () => {
  const rel = 'pkgs/first.bin';
  const p = storagePathOf(rel);
  const before = await curl(publicUrl(rel));
  assert.equal(before.status, 302);
  c.skew.ms = 30_000; // a later request: another expiry, so another signature
  const r = await curl(publicUrl(rel), ['-L']);
  c.skew.ms = 0;
  assert.equal(r.status, 200, r.stderr);
  assert.equal(r.info.num_redirects, 1);
  assert.ok(r.body.equals(FILES[rel]!));
  const sig = (u: unknown) => /signature=([^&]+)/.exec(String(u))?.[1];
  assert.ok(sig(r.info.url_effective));
  assert.notEqual(sig(r.info.url_effective), sig(before.info.redirect_url), 'a different signature');
  assert.equal(c.origin.getsOf(`/files/${rel}`), 1, 'no new upstream GET');
  assert.equal(seenBy(p), 1, 'no new streamer request');
  const lines = await squidLog(p, 2);
  assert.equal(lines.length, 2);
  assert.match(lines[1]!, /\bTCP_(MEM_)?HIT\/200\b/);
});

test('save-while-streaming stores the file; then it is an X-Sendfile hit served by Apache (Range, HEAD, ETag)', async () => {
  await c.startStreamer(true);
  const rel = 'pkgs/saved.bin';
  const body = FILES[rel]!;
  const p = storagePathOf(rel);
  const first = await curl(publicUrl(rel), ['-L']);
  assert.equal(first.status, 200, first.stderr);
  assert.equal(first.info.num_redirects, 1);
  assert.ok(first.body.equals(body));
  assert.ok(await stored(p, body), 'the streamer saved and verified the file, unit downloaded');
  const streamed = c.streamerSeen.length;
  assert.equal(seenBy(p), 1);
  assert.equal((await squidLog(p, 1)).length, 1);

  // The content daemon itself: 200, empty body, X-Sendfile naming the stored file, its ETag.
  const daemon = await request(
    `http://127.0.0.1:${c.config.content.listen.split(':')[1]}/pulp/content/files/${rel}`,
  );
  assert.equal(daemon.status, 200);
  assert.equal(daemon.headers['x-sendfile'], p);
  assert.equal(daemon.body.length, 0);
  const etag = daemon.headers.etag;
  assert.ok(etag && etag !== '"0"', `a real ETag, got ${etag}`);

  const hit = await curl(publicUrl(rel), ['-L']);
  assert.equal(hit.status, 200);
  assert.equal(hit.info.num_redirects, 0, 'no redirect: served from storage');
  assert.ok(hit.body.equals(body));
  assert.deepEqual(hit.headers.etag, [etag], "the daemon's ETag, not mod_xsendfile's");
  assert.equal(hit.headers['x-sendfile'], undefined, 'X-Sendfile is consumed by Apache');

  const range = await request(publicUrl(rel), { headers: { Range: 'bytes=1000-1999' } });
  assert.equal(range.status, 206);
  assert.equal(range.headers['content-range'], `bytes 1000-1999/${body.length}`);
  assert.ok(range.body.equals(body.subarray(1000, 2000)));
  const tail = await request(publicUrl(rel), { headers: { Range: 'bytes=-100' } });
  assert.equal(tail.status, 206);
  assert.ok(tail.body.equals(body.subarray(body.length - 100)));

  const head = await request(publicUrl(rel), { method: 'HEAD' });
  assert.equal(head.status, 200);
  assert.equal(head.headers['content-length'], String(body.length));
  assert.equal(head.headers.etag, etag);
  assert.equal(head.body.length, 0);
  assert.equal((await request(publicUrl(rel), { headers: { 'If-None-Match': etag } })).status, 304);

  assert.equal(c.origin.getsOf(`/files/${rel}`), 1, 'no new upstream GET');
  assert.equal(c.streamerSeen.length, streamed, 'no new streamer request');
  assert.equal((await squidLines(c.accessLog, p)).length, 1, 'Squid not involved');
});

test('20 concurrent first requests against an upstream slow to answer: one upstream GET, 20 identical bodies', async () => {
  const p = storagePathOf(SLOW);
  const results = await Promise.all(Array.from({ length: 20 }, () => curl(publicUrl(SLOW), ['-L'])));
  for (const [i, r] of results.entries()) {
    assert.equal(r.status, 200, `client ${i}: ${r.stderr}`);
    assert.ok(r.body.equals(FILES[SLOW]!), `client ${i}: body`);
  }
  assert.equal(c.origin.getsOf(`/files/${SLOW}`), 1, 'one upstream GET');
  // collapsed_forwarding: Squid asked the streamer once for all of them (one TCP_MISS to the
  // parent, the others joined it: TCP_CF_MISS, or a HIT once headers were in).
  assert.equal(seenBy(p), 1, 'one streamer request');
  const lines = await squidLog(p, 20);
  assert.equal(lines.length, 20);
  assert.equal(lines.filter((l) => /\bFIRSTUP_PARENT\//.test(l)).length, 1, lines.join('\n'));
  assert.ok(await stored(p, FILES[SLOW]!));
});

test('forged, expired, other-path and other-IP signatures: 403 from Apache, never reaching Squid', async () => {
  const rel = 'pkgs/refused.bin';
  const p = storagePathOf(rel);
  const fresh = await curl(publicUrl(rel));
  assert.equal(fresh.status, 302);
  const valid = String(fresh.info.redirect_url);
  assert.ok(valid.startsWith(`${c.S}/streamer${p}?`), valid);
  const [base, query] = valid.split('?') as [string, string];

  const sig = /signature=([^&]+)/.exec(query)![1]!;
  const forged = `${base}?${query.replace(sig, (sig[0] === 'A' ? 'B' : 'A') + sig.slice(1))}`;
  const expired = signUrl(base, {
    privateKey: loadPrivateKey(c.config.paths.keys),
    ttlMs: 60_000,
    now: Date.now() - 3_600_000,
    extensions: { remote_ip: '127.0.0.1' },
  });
  const other = await curl(publicUrl('pkgs/first.bin'));
  assert.equal(other.status, 302);
  const otherPath = `${base}?${String(other.info.redirect_url).split('?')[1]}`;
  const cases: Array<[string, string, string[], RegExp]> = [
    ['forged', forged, [], /^PL_SIG_BAD_SIGNATURE /],
    ['expired', expired, [], /^PL_SIG_EXPIRED /],
    ['other path', otherPath, [], /^PL_SIG_RESOURCE_MISMATCH /],
    ['unsigned', base, [], /^PL_SIG_NOT_SIGNED /],
    // The URL handed to 127.0.0.1, used by another client on loopback.
    ['other IP', valid, ['--interface', '127.0.0.2'], /^PL_SIG_EXTENSION_MISMATCH /],
  ];
  for (const [what, url, args, reason] of cases) {
    const r = await curl(url, args);
    assert.equal(r.status, 403, `${what}: status ${r.status} ${r.stderr}`);
    assert.match(r.body.toString(), reason, what);
  }
  // The valid URL from the right client works: only this request reaches Squid (it logs in
  // completion order, so a refused request that had reached it would be logged before).
  const ok = await curl(valid);
  assert.equal(ok.status, 200);
  assert.ok(ok.body.equals(FILES[rel]!));
  const lines = await squidLog(p, 1);
  assert.equal(lines.length, 1, lines.join('\n'));
  assert.match(lines[0]!, /\bTCP_MISS\/200\b/);
  assert.equal(seenBy(p), 1);
  assert.equal(c.origin.getsOf(`/files/${rel}`), 1);
});

test('authorizer stopped: signed requests fail closed (5xx); back: they work, Apache untouched', async () => {
  const rel = 'pkgs/authz.bin';
  const p = storagePathOf(rel);
  const apachePid = (await proxiesStatus(c.config)).apache.pid;
  assert.ok(apachePid);
  await c.authorizer.close();
  const down = await curl(publicUrl(rel), ['-L']);
  assert.equal(down.info.num_redirects, 1);
  assert.ok(down.status >= 500 && down.status < 600, `status ${down.status}`);
  assert.equal(seenBy(p), 0, 'nothing reached the streamer');

  c.authorizer = createAuthorizer(c.config, { logger: silentLogger });
  await c.authorizer.listen();
  const back = await curl(publicUrl(rel), ['-L']);
  assert.equal(back.status, 200, back.stderr);
  assert.ok(back.body.equals(FILES[rel]!));
  const status = await proxiesStatus(c.config);
  assert.equal(status.apache.pid, apachePid, 'same Apache');
  assert.equal(status.authorizer.healthy, true);
  assert.equal((await squidLog(p, 1)).length, 1, 'only the accepted request reached Squid');
  assert.equal(c.origin.getsOf(`/files/${rel}`), 1);
});

test('protected repository over TLS: no client certificate 403, the right one 200 (hit)', async () => {
  const rel = 'secure.bin';
  const body = SECURE[rel]!;
  const p = storagePathOf(rel, SECURE);
  const url = `${c.TC}/pulp/repos/secure/${rel}`;
  const tls = ['--cacert', c.pki.ca];
  const withCert = [...tls, '--cert', c.pki.clientCert, '--key', c.pki.clientKey];

  const first = await curl(url, ['-L', ...withCert]);
  assert.equal(first.status, 200, `${first.stderr} ${first.body.subarray(0, 200)}`);
  assert.equal(first.info.num_redirects, 1);
  assert.ok(
    String(first.info.url_effective).startsWith(`https://127.0.0.1:${c.ports.tlsApache[1]}/streamer/`),
  );
  assert.ok(first.body.equals(body));
  assert.ok(await stored(p, body));
  const streamed = c.streamerSeen.length;

  const anonymous = await curl(url, ['-L', ...tls]);
  assert.equal(anonymous.status, 403);
  assert.equal(anonymous.info.num_redirects, 0);
  const hit = await curl(url, ['-L', ...withCert]);
  assert.equal(hit.status, 200);
  assert.equal(hit.info.num_redirects, 0, 'served from storage');
  assert.ok(hit.body.equals(body));
  assert.equal(c.streamerSeen.length, streamed, 'no streamer request');
  assert.equal(c.origin.getsOf(`/secure/${rel}`), 1);
});

test('proxies stop leaves no Apache or Squid process and frees the ports', async () => {
  const before = [await proxiesStatus(c.config), await proxiesStatus(c.tlsConfig)];
  const pids = [before[0]!.apache.pid, before[0]!.squid.pid, before[1]!.apache.pid];
  assert.ok(
    pids.every((pid) => typeof pid === 'number'),
    JSON.stringify(pids),
  );
  await stopProxies(c.config, { logger: silentLogger });
  await stopProxies(c.tlsConfig, { logger: silentLogger });
  for (const pid of pids) assert.equal(processAlive(pid!), false, `pid ${pid} is gone`);
  for (const port of [...c.ports.apache, c.ports.squid, ...c.ports.tlsApache]) {
    assert.equal(await portOpen('127.0.0.1', port), false, `port ${port} is free`);
  }
  const confs = [c.config, c.tlsConfig].flatMap((cfg) => {
    const l = proxyLayout(cfg.paths);
    return [l.apacheConf, l.squidConf];
  });
  assert.ok(
    await waitFor(async () => {
      for (const f of confs) if ((await processesMentioning(f)).length > 0) return false;
      return true;
    }, 10_000),
    'no Apache or Squid process left',
  );
});
