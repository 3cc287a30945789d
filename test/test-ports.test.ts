/**
 * The tests' port helper (freePorts): test files run in parallel processes, and a port one of
 * them picked must not be taken by another, nor by any process's bind(0) or outgoing
 * connection, before its Apache or Squid binds it.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, readFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { ROOT } from './helpers/cli.ts';
import { freePorts, reservationFile } from './helpers/proxies.ts';

const N = 200;

test('ports held by another live test process are never handed out; none is ephemeral; released at exit', async (t) => {
  // Another test process: reserves N ports, prints them, holds them until its stdin closes.
  const child = spawn(
    process.execPath,
    [
      '--import',
      'tsx',
      '-e',
      `import('./test/helpers/proxies.ts').then(async (m) => {
         console.log(JSON.stringify(await m.freePorts(${N})));
         process.stdin.resume();
         process.stdin.on('end', () => process.exit(0));
       })`,
    ],
    { cwd: ROOT, stdio: ['pipe', 'pipe', 'inherit'] },
  );
  t.after(() => child.kill('SIGKILL'));
  const [line] = (await once(createInterface({ input: child.stdout! }), 'line')) as [string];
  const theirs: number[] = JSON.parse(line);
  assert.equal(new Set(theirs).size, N);
  for (const p of theirs) assert.ok(existsSync(reservationFile(p)), `port ${p} reserved`);

  const ours = await freePorts(N);
  assert.equal(new Set(ours).size, N);
  const shared = ours.filter((p) => theirs.includes(p));
  assert.deepEqual(shared, [], 'no port handed to two live processes');

  const ephemeralLow = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').split(/\s+/)[0]);
  for (const p of [...theirs, ...ours]) assert.ok(p < ephemeralLow, `${p} below the ephemeral range`);

  child.stdin!.end();
  const [code] = await once(child, 'exit');
  assert.equal(code, 0);
  const left = theirs.filter((p) => existsSync(reservationFile(p)));
  assert.deepEqual(left, [], 'the other process released its ports when it exited');
});
