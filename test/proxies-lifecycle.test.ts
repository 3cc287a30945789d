/**
 * The private Apache and Squid, run by `pulp-lazy proxies start|stop|status`
 * in a temp root on free loopback ports, with node:http stand-ins for the
 * content and streamer daemons and the real FastCGI authorizer:
 *   content vhost → content daemon, X-Sendfile served by Apache (Range, ETag);
 *   streamer vhost → authorizer → Squid → streamer (MISS then HIT, query stripped);
 *   forged signatures never reach Squid; authorizer down → 5xx, back → works;
 *   stop leaves no process and frees the ports.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { test } from 'node:test';
import type { Config } from '../src/config.ts';
import { createAuthorizer } from '../src/daemons/authorizer.ts';
import { silentLogger } from '../src/log.ts';
import { proxyLayout, stopProxies } from '../src/proxies/index.ts';
import { generateKeys, loadPrivateKey, signUrl } from '../src/signing/index.ts';
import { portOpen, processAlive, waitFor } from '../src/util/process.ts';
import { runCli } from './helpers/cli.ts';
import { testEnv } from './helpers/env.ts';
import { freePorts, get, openUp, processesMentioning } from './helpers/proxies.ts';

const STORAGE_FILE = 'units/file/ab/cdef/big.bin';
const STREAMED = '/var/lib/pulp-lazy/content/units/rpm/12/3456/pkg-1.0-1.noarch.rpm';

test('proxies start, content and streamer vhosts through Squid, authorizer restart, proxies stop', {
  timeout: 180_000,
}, async (t) => {
  // Registered before testEnv: hooks run in order, and testEnv's removes the temp root (pid files included).
  let running: Config | undefined;
  t.after(() => running && stopProxies(running, { logger: silentLogger }));
  const [contentPort, streamerPort, squidPort, contentDaemon, streamerDaemon, authorizerPort] =
    await freePorts(6);
  const env = await testEnv('proxies', {
    apache: {
      listen_host: '127.0.0.1',
      content_port: contentPort!,
      streamer_port: streamerPort!,
      authorizer_listen: `127.0.0.1:${authorizerPort}`,
    },
    content: { listen: `127.0.0.1:${contentDaemon}` },
    streamer: { listen: `127.0.0.1:${streamerDaemon}` },
    squid: { port: squidPort!, shutdown_lifetime: '0s', cache_size_mb: 64 },
  });
  const { config } = env;
  const layout = proxyLayout(config.paths);
  running = config;

  // Files Apache sends by X-Sendfile, readable by its unprivileged user.
  const file = path.join(config.paths.storage, STORAGE_FILE);
  await mkdir(path.dirname(file), { recursive: true });
  const bytes = randomBytes(300_000);
  await writeFile(file, bytes, { mode: 0o644 });
  await mkdir(config.paths.published, { recursive: true });
  await openUp(env.root, [path.dirname(file), config.paths.published]);
  await generateKeys(config.paths.keys);
  const etag = `"${createHash('sha256').update(bytes).digest('hex').slice(0, 32)}"`;

  // Content daemon stand-in: /pulp/content/<name> → X-Sendfile of storage/<name>.
  const contentSeen: http.IncomingMessage[] = [];
  const content = http.createServer((req, res) => {
    contentSeen.push(req);
    const u = new URL(req.url!, 'http://x');
    const headers: http.OutgoingHttpHeaders = {
      'Content-Type': 'application/octet-stream',
      'X-Sendfile': path.join(config.paths.storage, u.pathname.replace('/pulp/content/', '')),
    };
    if (!u.searchParams.has('noetag')) headers.ETag = etag;
    res.writeHead(200, headers).end();
  });
  content.keepAliveTimeout = 65_000;
  content.listen(contentDaemon, '127.0.0.1');
  // Streamer daemon stand-in: a body per path, cacheable by Squid.
  const streamerSeen: string[] = [];
  const streamer = http.createServer((req, res) => {
    streamerSeen.push(req.url!);
    const body = Buffer.from(`streamed ${req.url}\n`.repeat(100));
    res.writeHead(200, {
      'Content-Length': body.length,
      'Cache-Control': 'public, max-age=86400, s-maxage=86400',
    });
    res.end(body);
  });
  streamer.keepAliveTimeout = 65_000;
  streamer.listen(streamerDaemon, '127.0.0.1');
  await Promise.all([once(content, 'listening'), once(streamer, 'listening')]);
  t.after(() => {
    content.closeAllConnections();
    streamer.closeAllConnections();
    content.close();
    streamer.close();
  });
  let authorizer = createAuthorizer(config, { logger: silentLogger });
  await authorizer.listen();
  t.after(() => authorizer.close());

  // --- start
  const started = await runCli(['proxies', 'start', '--json'], { env: env.env });
  assert.equal(started.code, 0, started.stderr);
  const status = JSON.parse(started.stdout);
  assert.equal(status.apache.running, true);
  assert.equal(status.squid.running, true);
  assert.equal(status.authorizer.healthy, true);
  assert.ok(
    [...status.apache.ports, ...status.squid.ports].every((p: { listening: boolean }) => p.listening),
  );
  const apachePid: number = status.apache.pid;
  const squidPid: number = status.squid.pid;

  // --- content vhost: public prefix → content daemon → X-Sendfile
  const C = `http://127.0.0.1:${contentPort}`;
  const full = await get(`${C}/pulp/repos/${STORAGE_FILE}`, { 'X-Pulp-Client-Cert': 'forged by the client' });
  assert.equal(full.status, 200);
  assert.ok(full.body.equals(bytes), 'Apache sent the file named by X-Sendfile');
  assert.equal(full.headers.etag, etag, "the daemon's ETag reaches the client");
  const seen = contentSeen.at(-1)!;
  assert.equal(seen.url, `/pulp/content/${STORAGE_FILE}`);
  assert.equal(
    seen.headers['x-pulp-client-cert'],
    undefined,
    'a client-supplied certificate header is dropped',
  );
  assert.equal(seen.headers['x-forwarded-proto'], 'http');
  assert.equal(seen.headers['x-forwarded-for'], '127.0.0.1');

  const range = await get(`${C}/pulp/deb/${STORAGE_FILE}`, { Range: 'bytes=1000-1999' });
  assert.equal(range.status, 206);
  assert.equal(range.headers['content-range'], `bytes 1000-1999/${bytes.length}`);
  assert.ok(range.body.equals(bytes.subarray(1000, 2000)));
  assert.equal((await get(`${C}/pulp/content/${STORAGE_FILE}`, { 'If-None-Match': etag })).status, 304);
  const noEtag = await get(`${C}/pulp/content/${STORAGE_FILE}?noetag=1`);
  assert.equal(noEtag.status, 200);
  assert.equal(noEtag.headers.etag, undefined, 'no ETag "0" from mod_xsendfile');
  assert.equal((await get(`${C}/elsewhere`)).status, 403, 'nothing else is served');

  // --- streamer vhost: authorizer → Squid → streamer, query stripped, one origin fetch
  const S = `http://127.0.0.1:${streamerPort}`;
  const key = loadPrivateKey(config.paths.keys);
  const sign = (p: string, ttlMs = 90_000) =>
    signUrl(`/streamer${p}`, { privateKey: key, ttlMs, extensions: { remote_ip: '127.0.0.1' } });
  const first = await get(`${S}${sign(STREAMED)}`);
  assert.equal(first.status, 200, first.body.toString());
  assert.equal(first.body.toString().split('\n')[0], `streamed ${STREAMED}`);
  const second = await get(`${S}${sign(STREAMED, 120_000)}`);
  assert.equal(second.status, 200);
  assert.ok(second.body.equals(first.body));
  assert.deepEqual(streamerSeen, [STREAMED], 'the streamer saw one request, without policy/signature');

  const accessLog = path.join(layout.squidLogDir, 'access.log');
  const squidLines = async () =>
    (await readFile(accessLog, 'utf8').catch(() => '')).split('\n').filter((l) => l.includes(' GET '));
  assert.ok(
    await waitFor(async () => (await squidLines()).length >= 2, 10_000),
    'Squid logged both requests',
  );
  const [miss, hit] = await squidLines();
  assert.match(miss!, new RegExp(`TCP_MISS/200 .* GET http://127\\.0\\.0\\.1:${streamerDaemon}${STREAMED} `));
  assert.match(hit!, /TCP_(MEM_)?HIT\/200 /);

  // --- a forged or unsigned request is refused before Squid
  const good = sign('/var/lib/pulp-lazy/content/units/rpm/99/forged.rpm');
  const sig = /signature=([^&]+)/.exec(good)![1]!;
  const forged = await get(`${S}${good.replace(sig, (sig[0] === 'A' ? 'B' : 'A') + sig.slice(1))}`);
  assert.equal(forged.status, 403);
  assert.match(forged.body.toString(), /^PL_SIG_BAD_SIGNATURE /);
  assert.equal((await get(`${S}/streamer/var/lib/pulp-lazy/content/units/rpm/99/forged.rpm`)).status, 403);
  // Apache logs after answering; give Squid's log the same chance to show a (wrong) entry.
  await new Promise((r) => setTimeout(r, 300));
  assert.ok(
    !(await squidLines()).some((l) => l.includes('forged.rpm')),
    'refused requests never reached Squid',
  );
  assert.equal(streamerSeen.length, 1);

  // --- the authorizer down: 5xx (fails closed); back: works again, Apache untouched
  await authorizer.close();
  const down = await get(`${S}${sign('/var/lib/pulp-lazy/content/units/rpm/77/down.rpm')}`);
  assert.ok(down.status >= 500 && down.status < 600, `status ${down.status}`);
  assert.ok(!streamerSeen.some((u) => u.includes('down.rpm')));
  authorizer = createAuthorizer(config, { logger: silentLogger });
  await authorizer.listen();
  const back = await get(`${S}${sign('/var/lib/pulp-lazy/content/units/rpm/77/down.rpm')}`);
  assert.equal(back.status, 200);
  const still = JSON.parse((await runCli(['proxies', 'status', '--json'], { env: env.env })).stdout);
  assert.equal(still.apache.pid, apachePid, 'Apache was not restarted');
  assert.equal(still.squid.pid, squidPid);

  // --- start again is a no-op; stop leaves nothing behind
  const again = await runCli(['proxies', 'start', '--json'], { env: env.env });
  assert.equal(again.code, 0, again.stderr);
  assert.equal(JSON.parse(again.stdout).apache.pid, apachePid);

  const stopped = await runCli(['proxies', 'stop'], { env: env.env });
  assert.equal(stopped.code, 0, stopped.stderr);
  assert.match(stopped.stdout, /^apache: stopped;/m);
  assert.match(stopped.stdout, /^squid: stopped;/m);
  assert.equal(processAlive(apachePid), false);
  assert.equal(processAlive(squidPid), false);
  for (const port of [contentPort!, streamerPort!, squidPort!]) {
    assert.equal(await portOpen('127.0.0.1', port), false, `port ${port} is free`);
  }
  // Children (Apache workers, squid-1) go with their parents.
  assert.ok(
    await waitFor(
      async () =>
        (await processesMentioning(layout.apacheConf)).length === 0 &&
        (await processesMentioning(layout.squidConf)).length === 0,
      10_000,
    ),
    'no Apache or Squid process left',
  );
  const final = await runCli(['proxies', 'status'], { env: env.env });
  assert.equal(final.code, 0);
  assert.match(final.stdout, /^apache: stopped; content 127\.0\.0\.1:\d+ closed/m);
});
