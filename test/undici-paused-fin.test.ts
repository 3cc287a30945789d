/**
 * Regression tests for undici #5360: when a response body is paused by
 * back-pressure and the peer then closes the connection (FIN), undici 7's
 * HTTP/1 parser asserted `!this.paused` from the socket's 'end' handler: an
 * uncatchable AssertionError that killed whichever process was reading. An
 * upstream that closes after each response (Python's http.server, HTTP/1.0)
 * crashed `sync` and the streamer daemon this way. We carry upstream's fix
 * (#5474) as patches/undici+<version>.patch, applied by `npm ci`.
 *
 * First undici itself, with upstream's reproduction and its four cases (in a
 * child process: on an unpatched undici the assertion kills it); then every
 * fetcher of ours against an upstream that sends each response with
 * `Connection: close` and closes at once: `sync` of a file repository, misses
 * through the streamer daemon with slow clients, and a sweep through it.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { mkdir } from 'node:fs/promises';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';
import { after, test } from 'node:test';
import { promisify } from 'node:util';
import { ROOT } from './helpers/cli.ts';
import { freePort } from './helpers/proxies.ts';
import {
  bytes,
  checkStorage,
  filesIn,
  runCliIn,
  seedRepo,
  sha256,
  smallUnits,
  spawnCli,
  taskEnv,
  tasksTempDir,
  type Upstream,
} from './helpers/tasks.ts';
import { generateYumRepo } from './helpers/yum-primary.ts';

const run = promisify(execFile);

test('undici: a body paused by back-pressure when the peer closes completes, or fails when truncated', async () => {
  // Upstream's four cases (undici test/client.js, #5474): the body is consumed only after the FIN.
  const script = `
    import { createServer } from 'node:net';
    import { request } from 'undici';
    const payload = Buffer.alloc(64 * 1024, 0x61);
    const cases = {
      length: (s) => s.write('HTTP/1.1 200 OK\\r\\nContent-Length: ' + payload.length + '\\r\\nConnection: close\\r\\n\\r\\n'),
      eof: (s) => s.write('HTTP/1.1 200 OK\\r\\nConnection: close\\r\\n\\r\\n'),
      short: (s) => s.write('HTTP/1.1 200 OK\\r\\nContent-Length: ' + payload.length * 2 + '\\r\\nConnection: close\\r\\n\\r\\n'),
      chunked: (s) => s.write('HTTP/1.1 200 OK\\r\\nTransfer-Encoding: chunked\\r\\nConnection: close\\r\\n\\r\\n' + payload.length.toString(16) + '\\r\\n'),
    };
    const out = {};
    for (const [name, head] of Object.entries(cases)) {
      const server = createServer((s) => s.once('data', () => { head(s); s.write(payload); s.end(); }));
      await new Promise((r) => server.listen(0, '127.0.0.1', r));
      const res = await request('http://127.0.0.1:' + server.address().port + '/');
      await new Promise((r) => setTimeout(r, 100));
      let n = 0;
      try { for await (const c of res.body) n += c.length; out[name] = n; }
      catch (err) { out[name] = 'error ' + (err.code ?? err.name); }
      server.close();
    }
    console.log(JSON.stringify(out));
  `;
  const r = await run(process.execPath, ['--input-type=module', '-e', script], { cwd: ROOT }).catch(
    (err: { code?: number; stderr?: string }) => {
      assert.fail(
        `the reading process died (exit ${err.code}): ${err.stderr?.split('\n').slice(0, 6).join(' | ')}`,
      );
    },
  );
  const got = JSON.parse(r.stdout) as Record<string, number | string>;
  assert.equal(got.length, 64 * 1024, 'Content-Length body complete');
  assert.equal(got.eof, 64 * 1024, 'EOF-delimited body complete');
  assert.match(String(got.short), /^error /, 'a body shorter than its Content-Length is an error');
  assert.match(String(got.chunked), /^error /, 'an unterminated chunked body is an error');
});

/**
 * An upstream that answers each request with `Connection: close`, writes the
 * whole response at once and closes (what an HTTP/1.0 server does).
 */
async function startClosingUpstream(): Promise<Upstream> {
  const up = {
    base: '',
    files: new Map<string, Buffer>(),
    gets: new Map<string, number>(),
    getsOf: (p: string) => up.gets.get(p) ?? 0,
    corrupt: new Set<string>(),
    delayMs: 0,
    open: 0,
    maxOpen: 0,
    server: undefined as unknown as http.Server,
  };
  const server = net.createServer((socket) => {
    socket.on('error', () => {});
    let head = '';
    socket.on('data', (chunk) => {
      head += chunk.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      socket.removeAllListeners('data');
      const p = decodeURIComponent(head.split(' ')[1] ?? '/').split('?')[0]!;
      up.gets.set(p, (up.gets.get(p) ?? 0) + 1);
      const body = up.files.get(p);
      if (!body) {
        socket.end('HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n');
        return;
      }
      socket.write(`HTTP/1.0 200 OK\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`);
      socket.end(body);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  after(() => new Promise<void>((r) => server.close(() => r())));
  up.base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return up as unknown as Upstream;
}

test('sync of file and yum repositories from an upstream that closes after each response', async () => {
  const te = await taskEnv('finsync');
  const up = await startClosingUpstream();
  // A file manifest of ~0.1 MiB and a yum primary.xml.gz of ~0.5 MiB, each read after the upstream closed.
  const lines: string[] = [];
  for (let i = 0; i < 1_000; i++) {
    const body = bytes(64 + (i % 7), `m${i}`);
    up.files.set(`/files/d${i % 50}/file-${i}.bin`, body);
    lines.push(`d${i % 50}/file-${i}.bin,${sha256(body)},${body.length}`);
  }
  up.files.set('/files/PULP_MANIFEST', Buffer.from(`${lines.join('\n')}\n`));
  const yum = await generateYumRepo(6_000, te.root);
  for (const [rel, body] of yum.files) up.files.set(`/yum/${rel}`, Buffer.from(body));
  for (const [name, type, feed] of [
    ['fin', 'file', `${up.base}/files/`],
    ['finyum', 'yum', `${up.base}/yum/`],
  ] as const) {
    const created = await runCliIn(te, ['repo', 'create', name, '--type', type, '--feed', feed]);
    assert.equal(created.code, 0, created.stderr);
    const r = await runCliIn(te, ['sync', name]);
    assert.equal(r.code, 0, `sync ${name}: ${r.stderr.slice(0, 600)}`);
  }
  assert.equal(await te.db.units.countDocuments({ unit_type_id: 'file' }), 1_000);
  assert.equal(await te.db.units.countDocuments({ unit_type_id: 'rpm' }), 6_000);
});

test('streamer daemon and sweep: misses from an upstream that closes after each response, slow clients', async () => {
  const port = await freePort();
  const te = await taskEnv('finstream', { streamer: { listen: `127.0.0.1:${port}` } });
  await te.reconfigure({
    redirect: { scheme: 'http', host: '127.0.0.1', port, path: '/' },
    tasks: { fetch: 'proxy' },
  });
  const up = await startClosingUpstream();
  // Units of 100 KiB to 4 MiB: larger than the body stream's high-water mark, each in one write + FIN.
  const sizes = [100 << 10, 300 << 10, 1 << 20, 4 << 20];
  const misses = await seedRepo(
    te,
    up,
    'fin',
    sizes.flatMap((size, i) => smallUnits(6, size, `s${i}-`)),
  );
  const swept = await seedRepo(te, up, 'finq', smallUnits(120, 96 << 10, 'q'), { queue: true });
  await mkdir(te.config.paths.logs, { recursive: true });
  const streamer = spawnCli(te, ['run', 'streamer']);
  const base = `http://127.0.0.1:${port}`;
  for (let i = 0; i < 100; i++) {
    const ok = await fetch(`${base}/healthz`).then(
      (r) => r.ok,
      () => false,
    );
    if (ok) break;
    await new Promise((r) => setTimeout(r, 100));
  }
  const pid = streamer.child.pid;

  // Slow clients: each reads its response a little at a time, with pauses.
  const slowGet = (storagePath: string) =>
    new Promise<Buffer>((resolve, reject) => {
      http
        .get(`${base}${storagePath}`, (res) => {
          const chunks: Buffer[] = [];
          res.pause();
          const tick = () => {
            for (let n = 0; n < 4; n++) {
              const c = res.read() as Buffer | null;
              if (c === null) break;
              chunks.push(c);
            }
            if (res.readableEnded) return;
            setTimeout(tick, 5);
          };
          res.on('end', () => resolve(Buffer.concat(chunks)));
          res.on('error', reject);
          res.on('readable', () => {});
          tick();
        })
        .on('error', reject);
    });
  const got = await Promise.all(misses.map((u) => slowGet(u.files[0]!.storage_path).catch((e: Error) => e)));
  for (const [i, u] of misses.entries()) {
    const g = got[i];
    assert.ok(Buffer.isBuffer(g), `miss ${i}: ${g instanceof Error ? g.message : g}`);
    assert.equal(sha256(g), u.files[0]!.checksum, `miss ${i}: bytes`);
  }
  assert.equal(streamer.child.exitCode, null, `the streamer died: ${streamer.stdout().slice(-600)}`);

  const sweep = await runCliIn(te, ['sweep', '--concurrency', '8']);
  assert.equal(sweep.code, 0, sweep.stderr);
  assert.equal(streamer.child.exitCode, null, `the streamer died: ${streamer.stdout().slice(-600)}`);
  assert.equal(streamer.child.pid, pid);
  const stored = await checkStorage(te);
  assert.equal(stored.notDownloaded, 0, 'every miss saved and every queued unit swept');
  assert.equal(stored.downloaded, misses.length + swept.length);
  assert.deepEqual(await filesIn(tasksTempDir(te)), []);
  assert.deepEqual(await filesIn(path.join(te.config.paths.working, 'tmp')), []);
  streamer.child.kill('SIGTERM');
  const { code } = await streamer.exited;
  assert.equal(code, 0, 'the streamer stops cleanly');
});
