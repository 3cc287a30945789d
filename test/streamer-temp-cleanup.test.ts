/**
 * Temp files of a crashed streamer: their names carry the host and the pid
 * of their writer, and a starting streamer (the daemon, and `serve`'s)
 * removes those of this host's dead processes, and only those: a live pid's
 * (a sync or a task may be writing) and another host's (shared dirs) stay.
 * For real: a streamer killed with -9 during a slow miss leaves its temp
 * file; the next one on the same dirs removes it, and a miss then serves
 * the right bytes.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdir, readdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Writable } from 'node:stream';
import { after, test } from 'node:test';
import type { Config } from '../src/config.ts';
import { createAllInOne } from '../src/daemons/serve.ts';
import { createStreamer } from '../src/daemons/streamer.ts';
import { connect, migrate } from '../src/db/index.ts';
import { createLogger } from '../src/log.ts';
import { tempPath } from '../src/storage/index.ts';
import { runDaemon } from './helpers/cli.ts';
import { mongoUrl } from './helpers/db.ts';
import { testEnv } from './helpers/env.ts';
import {
  addRepo,
  bytes,
  exists,
  fetchRaw,
  type OriginHandler,
  seedUnit,
  serve,
  serveSlowly,
  sha256,
  startOrigin,
  urlFor,
} from './helpers/streamer.ts';

/** A logger whose JSON lines land in `lines`. */
function capturingLogger(lines: Array<Record<string, unknown>>) {
  const sink = new Writable({
    write(chunk, _enc, done) {
      for (const l of String(chunk).split('\n')) if (l.trim()) lines.push(JSON.parse(l));
      done();
    },
  });
  return createLogger({ level: 'info', destination: sink });
}

/** Temp files as tempPath names them: this process's (live), a dead pid's, another host's; and a foreign name. */
async function plantTemps(
  config: Config,
): Promise<{ dir: string; live: string; dead: string; kept: string[] }> {
  const live = path.basename(await tempPath(config.paths.working, 'live.rpm'));
  const deadPid = spawnSync(process.execPath, ['-e', '0']).pid;
  const [host, pid] = live.split('_');
  assert.equal(pid, String(process.pid), live);
  const dead = live.replace(`_${process.pid}_`, `_${deadPid}_`).replace('live.rpm', 'dead.rpm');
  const otherHost = dead.replace(`${host}_`, 'other-host.example_');
  const foreign = 'lk3j-0123456789ab-old-style.rpm.part';
  const dir = path.join(config.paths.working, 'tmp');
  await mkdir(dir, { recursive: true });
  for (const name of [live, dead, otherHost, foreign]) await writeFile(path.join(dir, name), 'partial');
  return { dir, live, dead, kept: [live, otherHost, foreign].sort() };
}

for (const kind of ['streamer', 'serve'] as const) {
  test(`${kind}: at start, removes only the temp files of this host's dead processes and logs how many`, async () => {
    const env = await testEnv(`temps-${kind}`, {
      streamer: { listen: '127.0.0.1:0' },
      serve: { listen: '127.0.0.1:0' },
    });
    const db = await connect(mongoUrl(), env.dbName);
    after(async () => {
      await db.db.dropDatabase().catch(() => {});
      await db.close();
    });
    const planted = await plantTemps(env.config);
    const lines: Array<Record<string, unknown>> = [];
    const logger = capturingLogger(lines);
    const server =
      kind === 'streamer'
        ? createStreamer(env.config, { db, logger })
        : createAllInOne(env.config, { db, logger, publicKey: generateKeyPairSync('ed25519').publicKey });
    await server.listen();
    after(() => server.close({ deadlineMs: 1000 }));
    assert.deepEqual((await readdir(planted.dir)).sort(), planted.kept);
    const line = lines.find((l) => l.msg === 'removed the temp files of dead processes');
    assert.equal(line?.removed, 1, JSON.stringify(lines));
  });
}

interface Daemon {
  child: ChildProcess;
  base: string;
  logs: Array<Record<string, unknown>>;
}

/** `pulp-lazy run streamer` on `env`'s config; resolves once it listens. */
async function runStreamer(env: NodeJS.ProcessEnv): Promise<Daemon> {
  const d = await runDaemon('streamer', env, 'streamer listening');
  return { child: d.child, base: `http://${d.listen}`, logs: d.logs };
}

test('a streamer killed with -9 mid-miss leaves a temp file; the next one removes it, the unit stays missing, a miss serves the right bytes', {
  timeout: 120_000,
}, async () => {
  const body = bytes(4 * 1024 * 1024, 77);
  // The first fetch trickles (about 13 s), so the kill finds it writing; later ones are quick.
  let fetches = 0;
  const slow = serveSlowly(body, { chunk: 16 * 1024, intervalMs: 50 });
  const quick = serve(body);
  const route: OriginHandler = (req, res) => (fetches++ === 0 ? slow : quick)(req, res);
  const origin = await startOrigin({ '/crash.iso': route });
  const env = await testEnv('temps-crash', { streamer: { listen: '127.0.0.1:0' }, log: { level: 'info' } });
  const db = await connect(mongoUrl(), env.dbName);
  after(async () => {
    await db.db.dropDatabase().catch(() => {});
    await db.close();
  });
  await migrate(db);
  await addRepo(db, 'imp-crash');
  const { unitId, paths } = await seedUnit({ db, config: env.config }, [
    { name: 'crash.iso', body, sources: [{ importer: 'imp-crash', url: `${origin.base}/crash.iso` }] },
  ]);
  const tempDir = path.join(env.config.paths.working, 'tmp');

  const first = await runStreamer(env.env);
  let gotBytes!: () => void;
  const bytesArrived = new Promise<void>((resolve) => {
    gotBytes = resolve;
  });
  const cut = fetchRaw(urlFor(first.base, paths[0]!), {
    onResponse: (res) => res.once('data', () => gotBytes()),
  });
  await bytesArrived;
  const left = await readdir(tempDir);
  assert.equal(left.length, 1, `one temp file while the miss runs: ${left.join(' ')}`);
  assert.match(left[0]!, new RegExp(`_${first.child.pid}_.*\\.part$`));
  first.child.kill('SIGKILL');
  assert.equal((await cut).complete, false);
  assert.deepEqual(await readdir(tempDir), left, 'the killed streamer left its temp file');

  const second = await runStreamer(env.env);
  assert.deepEqual(await readdir(tempDir), [], "the dead streamer's temp file is gone");
  assert.equal(second.logs.find((l) => l.msg === 'removed the temp files of dead processes')?.removed, 1);
  assert.equal((await db.units.findOne({ _id: unitId }))?.downloaded, false);
  assert.equal(await exists(paths[0]!), false, 'nothing stored from the cut fetch');

  const r = await fetchRaw(urlFor(second.base, paths[0]!));
  assert.equal(r.status, 200);
  assert.ok(r.complete);
  assert.equal(sha256(r.body), sha256(body));
  assert.equal(fetches, 2);
});
