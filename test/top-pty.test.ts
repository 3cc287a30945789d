/**
 * The real `pulp-lazy top` in a terminal: a system from `init --root TMP
 * --yes` and `start all`, a synced repository, a sweep that stores some
 * units and fails one, a second sweep, more queued units and a client
 * request through the chain. `top` runs in an 80x24 tmux pane; the screen (tmux capture-pane)
 * shows the daemons, the queue, the sweep throughput and run, the repository
 * and the failure, it fits without scrolling, and `q` quits with exit 0.
 * Nothing is left running afterwards. With TOP_CAPTURE=FILE the screen is
 * also written to FILE (how docs/top.txt is made).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { appendFile, readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { connect, type Database, type UnitRef } from '../src/db/index.ts';
import { enqueue } from '../src/queue/index.ts';
import { curl } from './helpers/chain.ts';
import { BIN, ROOT } from './helpers/cli.ts';
import { mongoUrl } from './helpers/db.ts';
import { bytes, serve, sha256, startOrigin } from './helpers/streamer.ts';
import { initSystem } from './helpers/system.ts';

const exec = promisify(execFile);
/** Queues a unit as the streamer does (src/queue/ is the queue's only writer). */
const queueDeferred = (db: Database, unit: UnitRef, now: Date) => enqueue(db, unit, { now });

/** Polls `read` until `done` holds for its value; fails with the last value after a generous wait. */
async function waitFor<T>(what: string, read: () => Promise<T>, done: (v: T) => boolean): Promise<T> {
  let v = await read();
  for (let waited = 0; !done(v); waited += 100) {
    assert.ok(waited < 60_000, `waiting for ${what}; last:\n${String(v)}`);
    await sleep(100);
    v = await read();
  }
  return v;
}

test('top in an 80x24 terminal shows a busy running system and quits on q', async () => {
  const sys = await initSystem('top-pty');
  assert.equal(sys.init.code, 0, sys.init.stderr);
  const { root, cli } = sys;
  // No sweep from the scheduler during the test: an interval far away (timer mode, under 24.8 days).
  // The sweep fetches in its own process (the proxy path has its own tests: e2e-chain, tasks-*).
  await appendFile(sys.configPath, '\n[tasks]\nsweep_interval = "500h"\nfetch = "local"\n');

  // Ten files: the origin lacks data/f9.bin.
  const files = Array.from({ length: 10 }, (_, i) => ({
    path: `data/f${i}.bin`,
    body: bytes(4000 + i, 10 + i),
  }));
  const routes = Object.fromEntries(files.slice(0, 9).map((f) => [`/files/${f.path}`, serve(f.body)]));
  const manifest = files.map((f) => `${f.path},${sha256(f.body)},${f.body.length}`).join('\n');
  const origin = await startOrigin({
    ...routes,
    '/files/PULP_MANIFEST': serve(Buffer.from(`${manifest}\n`)),
  });

  const start = await cli(['start', 'all']);
  assert.equal(start.code, 0, `${start.stdout}\n${start.stderr}`);
  const create = await cli(['repo', 'create', 'files', '--type', 'file', '--feed', `${origin.base}/files/`]);
  assert.equal(create.code, 0, create.stderr);
  const sync = await cli(['sync', 'files']);
  assert.equal(sync.code, 0, sync.stderr);

  // Queue f0-f2 and the missing f9 (as the streamer does), and sweep them: 3 stored, 1 failed.
  const db = await connect(mongoUrl(), sys.dbName);
  sys.onCleanup(() => db.close());
  const unitOf = new Map(
    (await db.repoContentUnits.find({ repo_id: 'files' }).toArray()).map((r) => [
      r.relative_path,
      { unit_id: r.unit_id, unit_type_id: r.unit_type_id },
    ]),
  );
  assert.equal(unitOf.size, 10);
  const queue = async (names: number[]) => {
    for (const i of names) assert.ok(await queueDeferred(db, unitOf.get(`data/f${i}.bin`)!, new Date()));
  };
  await queue([0, 1, 2, 9]);
  const sweep = await cli(['sweep']);
  assert.equal(sweep.code, 1, `${sweep.stdout}\n${sweep.stderr}`);
  assert.match(sweep.stdout, /claimed 4, stored 3, .*failed 1/, sweep.stderr);
  // Then f3 and f4 (f9 is gone upstream: parked at once, a re-sync of its repository requested): 2 stored.
  await queue([3, 4]);
  const again = await cli(['sweep']);
  assert.equal(again.code, 0, `${again.stdout}\n${again.stderr}`);
  assert.match(again.stdout, /claimed 2, stored 2, .*failed 0/);
  // f5, f6 and f8 wait in the queue; a client fetches f7 through Apache, Squid and the streamer.
  await queue([5, 6, 8]);
  const r = await curl(`http://127.0.0.1:${sys.ports.apacheContent}/pulp/repos/files/data/f7.bin`, ['-L']);
  assert.equal(r.status, 200, String(r.info.errormsg ?? ''));
  assert.equal(sha256(r.body), sha256(files[7]!.body));

  // top in a detached tmux session on its own server (socket under the root), in an 80x24 window.
  const sock = path.join(root, 'tmux.sock');
  const exitFile = path.join(root, 'top.exit');
  const tmux = async (...args: string[]) => (await exec('tmux', ['-S', sock, ...args])).stdout;
  // Ends top too (if a failed assertion left it running) before initSystem's `stop all` and its
  // check that no process mentions the root.
  sys.onCleanup(() => exec('tmux', ['-S', sock, 'kill-server']).catch(() => {}));
  const command = `'${process.execPath}' '${BIN}' --config '${sys.configPath}' top --interval 0.5; echo "exit=$?" > '${exitFile}'`;
  await tmux('new-session', '-d', '-s', 'top', '-x', '80', '-y', '24', '-c', ROOT, command);
  const screen = () => tmux('capture-pane', '-p', '-J', '-t', 'top');
  // The screen is complete once the last panel (the last runs) is drawn.
  const shot = await waitFor('the first full screen', screen, (s) => /last runs\n.*sweep/.test(s));

  const lines = shot.replace(/\n+$/, '').split('\n');
  assert.match(lines[0]!, /^pulp-lazy top \d\d:\d\d:\d\d +s sweep r retry \? help q quit$/);
  assert.match(shot, /^daemons: content up streamer up authorizer up scheduler up proxies up/m);
  assert.match(shot, /^queue: 4 total, 3 ready, 0 waiting, 0 leased, 1 failed, oldest \d+s$/m);
  const rate = String.raw`\d+(\.\d)? units/s, [\d.]+ (B|KiB|MiB)/s`;
  assert.match(shot, new RegExp(`^sweep: last run ${rate}; avg of 2 runs ${rate}$`, 'm'));
  assert.match(shot, /^streamer: [1-9]\d* misses, \d+ hits, \d+ joins, 0 checksum failures, \d+ active$/m);
  // f0-f4 stored by the sweeps, f7 by the streamer: 6 of 10.
  // The drift of f9 requested a re-sync: the scheduler may not have run it yet, or be running it.
  assert.match(
    shot,
    /^ {2}files +\[#{5}-{3}\] +60% 6\/10 on_demand (synced|synced, requested \S+|syncing)$/m,
  );
  const f9 = unitOf.get('data/f9.bin')!.unit_id.slice(0, 12);
  assert.match(shot, new RegExp(`^failures \\(1 of 1\\)\\n {2}${f9} parked, 1 tries: .*404`, 'm'));
  assert.match(
    shot,
    /^gone upstream \(1 of 1, re-sync requested\)\n {2}[\d-]+ [\d:]+ 404 files\/data\/f9\.bin$/m,
  );
  assert.match(
    shot,
    /^last runs\n {2}\d\d:\d\d:\d\d sweep +2 stored, 0 failed, 7\.8 KiB in [\d.]+s\n {2}\d\d:\d\d:\d\d sweep +3 stored, 1 failed, 11\.7 KiB in [\d.]+s$/m,
  );
  // It fits: at most 24 rows, none wider than 80 columns (-J joins wrapped rows), nothing scrolled away.
  assert.ok(lines.length <= 24, `${lines.length} rows`);
  for (const line of lines) assert.ok(line.length <= 80, `wider than 80 columns: ${line}`);
  assert.equal((await tmux('display-message', '-p', '-t', 'top', '#{history_size}')).trim(), '0');
  if (process.env.TOP_CAPTURE) await writeFile(process.env.TOP_CAPTURE, `${lines.join('\n')}\n`);

  await tmux('send-keys', '-t', 'top', 'q');
  const exit = await waitFor(
    'top to exit',
    () => readFile(exitFile, 'utf8').catch(() => ''),
    (s) => s !== '',
  );
  assert.equal(exit.trim(), 'exit=0');
});
