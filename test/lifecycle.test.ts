/**
 * `pulp-lazy init` → `start all` → a client request through Apache, Squid and
 * the daemons → `status --json` → `stop all`: nothing left running, ports free.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { parseConfig, rootedPaths } from '../src/config.ts';
import { stopDaemon } from '../src/lifecycle/index.ts';
import { portOpen, processAlive } from '../src/util/process.ts';
import { curl } from './helpers/chain.ts';
import { runCli } from './helpers/cli.ts';
import { freePorts } from './helpers/proxies.ts';
import { bytes, serve, sha256, startOrigin } from './helpers/streamer.ts';
import { initSystem, pgrepF } from './helpers/system.ts';

/** The tests that do not use the database still name one in their config. */
const dbName = `t_lifecycle_${process.pid}`;

test('init twice (the second changes nothing), start all, a client request through the chain, status --json, stop all', async () => {
  const sys = await initSystem('lifecycle');
  const { root, cli } = sys;
  const {
    apacheContent: cPort,
    apacheStreamer: sPort,
    content,
    streamer,
    authorizer: authz,
    squid,
  } = sys.ports;
  assert.equal(sys.init.code, 0, sys.init.stderr);
  // The same init again is a no-op (this one also checks the rendered configs with the real binaries).
  const second = await sys.reinit();
  assert.equal(second.code, 0, second.stderr);
  assert.match(second.stdout, /init: nothing changed/);

  const file = bytes(200_000, 3);
  const origin = await startOrigin({
    '/files/PULP_MANIFEST': serve(Buffer.from(`data/one.bin,${sha256(file)},${file.length}\n`)),
    '/files/data/one.bin': serve(file),
  });

  const start = await cli(['start', 'all']);
  assert.equal(start.code, 0, `${start.stdout}\n${start.stderr}`);
  for (const n of ['content', 'streamer', 'authorizer', 'scheduler'])
    assert.match(start.stdout, new RegExp(`${n}: started \\(pid \\d+\\)`));
  assert.match(start.stdout, /proxies: running/);
  const again = await cli(['start', 'content']);
  assert.match(again.stdout, /content: already running/);

  const text = await cli(['status']);
  assert.equal(text.code, 0, text.stderr);
  for (const name of ['content', 'streamer', 'authorizer', 'scheduler'])
    assert.match(text.stdout, new RegExp(`^${name} +running +pid \\d+ .*v\\d+\\.\\d+\\.\\d+`, 'm'));
  const status = await cli(['status', '--json']);
  assert.equal(status.code, 0, status.stderr);
  const list = JSON.parse(status.stdout) as Array<{
    name: string;
    running: boolean;
    healthy: boolean | null;
    pid: number | null;
    version: string;
    listen: string | null;
  }>;
  assert.deepEqual(
    list.map((s) => s.name),
    ['content', 'streamer', 'authorizer', 'scheduler', 'proxies'],
  );
  for (const s of list) {
    assert.equal(s.running, true, `${s.name} running`);
    assert.equal(s.healthy, true, `${s.name} healthy`);
    assert.ok(s.pid && s.pid > 0);
    assert.match(s.version, /^\d+\.\d+\.\d+/);
  }
  assert.equal(list[0]!.listen, `127.0.0.1:${content}`);
  const pids = list.map((s) => s.pid!);
  // The streamer runs with its node options before the script (V8 reads them at start only).
  const streamerPid = list.find((s) => s.name === 'streamer')!.pid!;
  const argv = (await readFile(`/proc/${streamerPid}/cmdline`, 'utf8')).split('\0');
  assert.ok(
    argv.indexOf('--max-semi-space-size=2') > 0 &&
      argv.indexOf('--max-semi-space-size=2') < argv.findIndex((a) => a.endsWith('bin/pulp-lazy')),
    argv.join(' '),
  );

  assert.equal(
    (await cli(['repo', 'create', 'files', '--type', 'file', '--feed', `${origin.base}/files/`])).code,
    0,
  );
  const sync = await cli(['sync', 'files']);
  assert.equal(sync.code, 0, sync.stderr);
  const r = await curl(`http://127.0.0.1:${cPort}/pulp/repos/files/data/one.bin`, ['-L']);
  assert.equal(r.status, 200, String(r.info.errormsg ?? ''));
  assert.equal(sha256(r.body), sha256(file));
  assert.equal(origin.getsOf('/files/data/one.bin'), 1);

  const stop = await cli(['stop', 'all']);
  assert.equal(stop.code, 0, stop.stderr);
  for (const n of ['content', 'streamer', 'authorizer', 'scheduler'])
    assert.match(stop.stdout, new RegExp(`${n}: stopped \\(pid \\d+\\)`));
  for (const pid of pids) assert.equal(processAlive(pid), false, `pid ${pid} gone`);
  for (const port of [cPort, sPort, content, streamer, authz, squid])
    assert.equal(await portOpen('127.0.0.1', port!), false, `port ${port} free`);
  assert.deepEqual(await pgrepF(root), [], 'no process mentions the root');
  assert.deepEqual(
    (await readdir(path.join(root, 'run/pulp-lazy'))).filter((f) => f.endsWith('.pid')),
    [],
    'pid files removed',
  );
  const after2 = JSON.parse((await cli(['status', '--json'])).stdout) as Array<{ running: boolean }>;
  assert.ok(after2.every((s) => !s.running));
});

test('a stale pid file is reported as stopped and cleaned by stop; a daemon that dies on start is reported with its log', async () => {
  const root = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-lifecycle-'));
  after(() => rm(root, { recursive: true, force: true }));
  const cfgPath = path.join(root, 'etc/pulp-lazy/config.toml');
  const [cPort, sPort, busy] = await freePorts(3);
  const init = await runCli([
    'init',
    ...['--root', root, '--yes', '--skip-db', '--skip-check', '--database-name', dbName],
    ...['--content-port', String(cPort), '--streamer-port', String(sPort)],
    ...['--content-listen', `127.0.0.1:${busy}`],
  ]);
  assert.equal(init.code, 0, init.stderr);
  const cli = (args: string[]) => runCli(['--config', cfgPath, ...args]);
  // A pid that surely is not a pulp-lazy process: this test runner's parent shell is not; use a dead child's pid.
  const dead = (await import('node:child_process')).spawnSync(process.execPath, ['-e', '0']).pid;
  await writeFile(path.join(root, 'run/pulp-lazy/content.pid'), `${dead}\n`);
  const st = JSON.parse((await cli(['status', 'content', '--json'])).stdout) as Array<{ running: boolean }>;
  assert.equal(st[0]!.running, false);
  const stop = await cli(['stop', 'content']);
  assert.match(stop.stdout, /content: not running \(removed a stale pid file/);
  assert.deepEqual(await readdir(path.join(root, 'run/pulp-lazy')), []);

  // The content daemon cannot bind: its port is taken by another listener.
  const net = await import('node:net');
  const blocker = net.createServer().listen(busy, '127.0.0.1');
  after(() => blocker.close());
  const bad = await cli(['start', 'content']);
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /content exited; last log lines .*content\.log/);
  assert.match(bad.stderr, /EADDRINUSE|in use/i);
  assert.equal((await readdir(path.join(root, 'run/pulp-lazy'))).filter((f) => f.endsWith('.pid')).length, 0);
});

test('stop: a daemon that ignores SIGTERM is killed after the deadline (and its zombie counts as gone)', async () => {
  const root = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-lifecycle-'));
  after(() => rm(root, { recursive: true, force: true }));
  const config = parseConfig({ paths: rootedPaths(root) }, 'test', {});
  const { spawn } = await import('node:child_process');
  const stubborn = spawn(
    process.execPath,
    [
      '-e',
      "process.on('SIGTERM', () => {}); process.stdout.write('ready\\n'); setInterval(() => {}, 1000)",
      'pulp-lazy-stubborn',
    ],
    { stdio: ['ignore', 'pipe', 'ignore'] },
  );
  after(() => stubborn.kill('SIGKILL'));
  // The child says when its SIGTERM handler is in place (a fixed sleep loses that race on a busy machine).
  await once(stubborn.stdout!, 'data');
  await (await import('node:fs/promises')).mkdir(config.paths.run, { recursive: true });
  await writeFile(path.join(config.paths.run, 'streamer.pid'), `${stubborn.pid}\n`);
  const r = await stopDaemon(config, 'streamer', 300);
  assert.equal(r.outcome, 'killed');
  assert.equal(processAlive(stubborn.pid!), false);
  assert.deepEqual(await readdir(config.paths.run), []);
});
