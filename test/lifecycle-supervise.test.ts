/**
 * Daemons started by `pulp-lazy start` are supervised: killed with -9, one
 * serves again and `status` counts the restart; one that dies at once on
 * every start is given up on after 5 restarts and `status` says why; `stop`
 * leaves neither supervisor nor daemon behind.
 */
import assert from 'node:assert/strict';
import { readdir, readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { test } from 'node:test';
import type { ComponentStatus } from '../src/lifecycle/index.ts';
import { processAlive, waitFor } from '../src/util/process.ts';
import { freePorts } from './helpers/proxies.ts';
import { initSystem, pgrepF, type TestSystem } from './helpers/system.ts';

/** Generous: the machine is shared; the restart itself waits 0.5 s. */
const WAIT_MS = 60_000;

async function contentStatus(sys: TestSystem): Promise<ComponentStatus> {
  const r = await sys.cli(['status', 'content', '--json']);
  return (JSON.parse(r.stdout) as ComponentStatus[])[0]!;
}

async function healthz(port: number): Promise<number> {
  return fetch(`http://127.0.0.1:${port}/healthz`).then(
    (r) => r.status,
    () => 0,
  );
}

async function startContent(sys: TestSystem): Promise<ComponentStatus> {
  assert.equal(sys.init.code, 0, sys.init.stderr);
  const start = await sys.cli(['start', 'content']);
  assert.equal(start.code, 0, `${start.stdout}\n${start.stderr}`);
  const s = await contentStatus(sys);
  assert.equal(s.running, true);
  assert.equal(s.supervised, true);
  assert.equal(s.restarts, 0);
  assert.equal(s.last_exit, null);
  return s;
}

/** The pids of processes running `supervise content` for this root. */
async function supervisors(sys: TestSystem): Promise<number[]> {
  return pgrepF(`${sys.configPath} supervise content`);
}

test('kill -9 of a started daemon: it serves again, status shows restarts 1 and SIGKILL; stop leaves nothing', async (t) => {
  const sys = await initSystem('supervise-kill');
  const first = await startContent(sys);
  assert.equal((await supervisors(sys)).length, 1);
  // start of a supervised daemon does nothing.
  const again = await sys.cli(['start', 'content']);
  assert.match(again.stdout, new RegExp(`content: already running \\(pid ${first.pid}\\)`));
  assert.equal((await supervisors(sys)).length, 1);

  process.kill(first.pid!, 'SIGKILL');
  const killedAt = Date.now();
  let s = first;
  const back = await waitFor(
    async () => {
      s = await contentStatus(sys);
      return s.running && s.pid !== first.pid && (await healthz(sys.ports.content)) === 200;
    },
    WAIT_MS,
    100,
  );
  assert.ok(back, `content serves again: ${JSON.stringify(s)}`);
  t.diagnostic(`serving again ${Date.now() - killedAt} ms after kill -9`);
  assert.equal(s.restarts, 1);
  assert.equal(s.last_exit?.signal, 'SIGKILL');
  assert.equal(s.last_exit?.code, null);
  assert.equal(s.supervised, true);
  assert.equal(s.given_up, undefined);
  const text = await sys.cli(['status', 'content']);
  assert.match(text.stdout, /^content +running +pid \d+ .*restarts 1 {2}last exit: signal SIGKILL at \S+/m);

  const [supervisor] = await supervisors(sys);
  const stop = await sys.cli(['stop', 'content']);
  assert.equal(stop.code, 0, stop.stderr);
  assert.match(stop.stdout, new RegExp(`content: stopped \\(pid ${s.pid}\\)`));
  assert.equal(processAlive(supervisor!), false, 'supervisor gone');
  assert.equal(processAlive(s.pid!), false, 'daemon gone');
  assert.deepEqual(await pgrepF(sys.root), [], 'no process mentions the root');
  assert.deepEqual(await readdir(path.join(sys.root, 'run/pulp-lazy')), [], 'pid and state files removed');
  const after = await contentStatus(sys);
  assert.equal(after.running, false);
  assert.equal(after.supervised, false);
});

test('a daemon that dies at once on every start is given up on after 5 restarts, and status says why', async () => {
  const sys = await initSystem('supervise-giveup');
  const first = await startContent(sys);
  // From now on its listen address is taken: every restart fails to bind and exits.
  const [busy] = await freePorts(1);
  // (It drops the connections `status` opens to probe health: close() waits for open ones.)
  const blocker = net.createServer((socket) => socket.destroy()).listen(busy, '127.0.0.1');
  sys.onCleanup(() => new Promise((resolve) => blocker.close(resolve)));
  const toml = await readFile(sys.configPath, 'utf8');
  const was = `"127.0.0.1:${sys.ports.content}"`;
  assert.ok(toml.includes(was), toml);
  await writeFile(sys.configPath, toml.replace(was, `"127.0.0.1:${busy}"`));

  process.kill(first.pid!, 'SIGKILL');
  let s = first;
  const gaveUp = await waitFor(
    async () => {
      s = await contentStatus(sys);
      return s.given_up !== undefined;
    },
    WAIT_MS,
    200,
  );
  assert.ok(gaveUp, `given up: ${JSON.stringify(s)}`);
  assert.equal(s.running, false);
  assert.equal(s.restarts, 5);
  assert.match(s.given_up!, /exited 6 times within 60 s \(last: code 1\): not restarted/);
  assert.equal(s.last_exit?.code, 1);
  assert.match(s.last_exit?.log_line ?? '', /EADDRINUSE/);
  assert.equal(await waitFor(async () => (await supervisors(sys)).length === 0, WAIT_MS, 100), true);
  assert.equal((await contentStatus(sys)).supervised, false);
  const text = await sys.cli(['status', 'content']);
  assert.match(text.stdout, /^content +stopped .*restarts 5 .*\(gave up: exited 6 times/m);
  assert.deepEqual(await pgrepF(sys.root), [], 'nothing left running');
});

test('a daemon stopped with a plain SIGTERM (exit 0) is not restarted, as with systemd on-failure', async () => {
  const sys = await initSystem('supervise-term');
  const first = await startContent(sys);
  process.kill(first.pid!, 'SIGTERM');
  assert.equal(await waitFor(async () => (await supervisors(sys)).length === 0, WAIT_MS, 100), true);
  const s = await contentStatus(sys);
  assert.equal(s.running, false);
  assert.equal(s.supervised, false);
  assert.equal(s.restarts, 0);
  assert.equal(s.last_exit?.code, 0);
  assert.equal(s.given_up, undefined);
  assert.deepEqual(await pgrepF(sys.root), [], 'nothing left running');
});
