/**
 * proxy.cache = "none" with TLS and unix-socket daemons: no Squid is started,
 * the streamer vhost proxies straight to the streamer, both vhosts speak TLS,
 * and a client certificate reaches the content daemon in
 * content.client_cert_header (never a client-supplied one).
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdir, readFile } from 'node:fs/promises';
import http from 'node:http';
import path from 'node:path';
import { test } from 'node:test';
import type { Config } from '../src/config.ts';
import { createAuthorizer } from '../src/daemons/authorizer.ts';
import { silentLogger } from '../src/log.ts';
import { proxiesStatus, startProxies, stopProxies } from '../src/proxies/index.ts';
import { generateKeys, loadPrivateKey, signUrl } from '../src/signing/index.ts';
import { listenOn } from '../src/util/listen.ts';
import { portOpen } from '../src/util/process.ts';
import { selfSigned } from './helpers/chain.ts';
import { testEnv } from './helpers/env.ts';
import { freePorts, get, openUp } from './helpers/proxies.ts';

test('cache = none over TLS: no Squid, client certificate forwarded, signed URLs go straight to the streamer', {
  timeout: 120_000,
}, async (t) => {
  // Registered before testEnv: hooks run in order, and testEnv's removes the temp root (pid files included).
  let running: Config | undefined;
  t.after(() => running && stopProxies(running, { logger: silentLogger }));
  const [contentPort, streamerPort, authorizerPort, squidPort] = await freePorts(4);
  const pre = await testEnv('proxies-tls-pre');
  const tlsDir = path.join(pre.root, 'tls');
  await mkdir(tlsDir, { recursive: true });
  const server = await selfSigned(tlsDir, 'localhost');
  const client = await selfSigned(tlsDir, 'client');

  const env = await testEnv('proxies-tls', {
    apache: {
      listen_host: '127.0.0.1',
      content_port: contentPort!,
      streamer_port: streamerPort!,
      authorizer_listen: `127.0.0.1:${authorizerPort}`,
      tls_cert: server.cert,
      tls_key: server.key,
    },
    proxy: { cache: 'none' },
    squid: { port: squidPort! },
  });
  const sockets = path.join(env.root, 'sockets');
  const contentSock = path.join(sockets, 'content.sock');
  const streamerSock = path.join(sockets, 'streamer.sock');
  const config = {
    ...env.config,
    content: { ...env.config.content, listen: `unix:${contentSock}` },
    streamer: { ...env.config.streamer, listen: `unix:${streamerSock}` },
  };
  running = config;
  await mkdir(sockets, { recursive: true });
  await openUp(env.root, [sockets]);
  await generateKeys(config.paths.keys);

  const contentSeen: http.IncomingHttpHeaders[] = [];
  const content = http.createServer((req, res) => {
    contentSeen.push(req.headers);
    res.writeHead(200, { 'Content-Type': 'text/plain' }).end('content daemon\n');
  });
  const streamerSeen: string[] = [];
  const streamer = http.createServer((req, res) => {
    streamerSeen.push(req.url!);
    res.writeHead(200, { 'Content-Type': 'text/plain' }).end(`streamed ${req.url}\n`);
  });
  // Bound as the daemons bind (root's umask gives 0755 sockets): Apache's workers run as an
  // unprivileged user and connect only if listenOn opens the socket up.
  await listenOn(content, config.content.listen);
  await listenOn(streamer, config.streamer.listen);
  t.after(() => {
    content.closeAllConnections();
    streamer.closeAllConnections();
    content.close();
    streamer.close();
  });
  const authorizer = createAuthorizer(config, { logger: silentLogger });
  await authorizer.listen();
  t.after(() => authorizer.close());

  const status = await startProxies(config, { logger: silentLogger });
  assert.equal(status.apache.running, true);
  assert.deepEqual([status.squid.enabled, status.squid.running], [false, false]);
  assert.equal(await portOpen('127.0.0.1', squidPort!), false, 'no Squid');

  const C = `https://127.0.0.1:${contentPort}`;
  const withCert = await get(
    `${C}/pulp/repos/some/file`,
    {},
    { cert: await readFile(client.cert, 'utf8'), key: await readFile(client.key, 'utf8') },
  );
  assert.equal(withCert.status, 200);
  const forwarded = contentSeen.at(-1)!['x-pulp-client-cert'];
  assert.equal(typeof forwarded, 'string');
  // mod_headers puts the PEM on one line (newlines become spaces); the base64 body is intact.
  const m = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+)-----END CERTIFICATE-----/.exec(
    forwarded as string,
  );
  assert.ok(m, `a PEM certificate in ${forwarded}`);
  const der = Buffer.from(m[1]!.replace(/\s+/g, ''), 'base64');
  assert.equal(new X509Certificate(der).subject, 'CN=client');
  assert.equal(contentSeen.at(-1)!['x-forwarded-proto'], 'https');

  const without = await get(`${C}/pulp/repos/some/file`, { 'X-Pulp-Client-Cert': 'forged' });
  assert.equal(without.status, 200);
  assert.equal(contentSeen.at(-1)!['x-pulp-client-cert'], undefined);

  const S = `https://127.0.0.1:${streamerPort}`;
  const key = loadPrivateKey(config.paths.keys);
  const url = signUrl('/streamer/var/lib/pulp-lazy/content/units/file/aa/bb/x.iso', {
    privateKey: key,
    ttlMs: 90_000,
    extensions: { remote_ip: '127.0.0.1' },
  });
  const r = await get(`${S}${url}`);
  assert.equal(r.status, 200, r.body.toString());
  assert.deepEqual(streamerSeen, ['/var/lib/pulp-lazy/content/units/file/aa/bb/x.iso']);
  assert.equal((await get(`${S}${url.replace('x.iso', 'y.iso')}`)).status, 403);
  assert.equal(streamerSeen.length, 1);

  await stopProxies(config, { logger: silentLogger });
  const after_ = await proxiesStatus(config);
  assert.equal(after_.apache.running, false);
  assert.equal(await portOpen('127.0.0.1', contentPort!), false);
  assert.equal(await portOpen('127.0.0.1', streamerPort!), false);
});
