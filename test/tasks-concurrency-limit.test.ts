/**
 * tasks.concurrency limits the files fetched at once, over every file of
 * every unit of the run (not units, not files per unit): three units of
 * four files each with tasks.concurrency = 3 never have more than three
 * upstream GETs open at the same time, do reach three, and all get stored.
 * Each response is paced so that the transfers overlap.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, test } from 'node:test';
import type { SweepSummary } from '../src/tasks/sweep.ts';
import {
  bytes,
  checkStorage,
  filesIn,
  runCliIn,
  seedRepo,
  taskEnv,
  tasksTempDir,
  type Upstream,
} from './helpers/tasks.ts';

const UNITS = 3;
const FILES_PER_UNIT = 4;
const CONCURRENCY = 3;

interface CountingUpstream extends Upstream {
  /** GET responses open now. */
  open: number;
  /** The most GET responses ever open at once. */
  maxOpen: number;
}

/** An upstream (GETs counted per path) that sends 1 KiB every `delayMs` and records the GETs open at once. */
async function startCountingUpstream(delayMs: number): Promise<CountingUpstream> {
  const up: CountingUpstream = {
    base: '',
    files: new Map(),
    gets: new Map(),
    getsOf: (p) => up.gets.get(p) ?? 0,
    corrupt: new Set(),
    delayMs,
    open: 0,
    maxOpen: 0,
    server: http.createServer((req, res) => {
      const p = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
      const body = up.files.get(p);
      if (!body) {
        res.writeHead(404).end('no such file');
        return;
      }
      res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
      if (req.method !== 'GET') {
        res.end();
        return;
      }
      up.gets.set(p, up.getsOf(p) + 1);
      up.open++;
      up.maxOpen = Math.max(up.maxOpen, up.open);
      let pos = 0;
      let timer: NodeJS.Timeout | undefined;
      res.on('close', () => {
        up.open--;
        clearTimeout(timer);
      });
      const step = () => {
        if (res.destroyed) return;
        const next = Math.min(pos + 1024, body.length);
        res.write(body.subarray(pos, next));
        pos = next;
        if (pos >= body.length) res.end();
        else timer = setTimeout(step, up.delayMs);
      };
      step();
    }),
  };
  up.server.listen(0, '127.0.0.1');
  await once(up.server, 'listening');
  after(() => {
    up.server.closeAllConnections();
    return new Promise<void>((r) => up.server.close(() => r()));
  });
  up.base = `http://127.0.0.1:${(up.server.address() as AddressInfo).port}`;
  return up;
}

test(`tasks.concurrency = ${CONCURRENCY}: at most ${CONCURRENCY} files in flight over ${UNITS} units of ${FILES_PER_UNIT} files`, async () => {
  // fetch = local: every file the sweep fetches is one upstream GET from the sweep process.
  const te = await taskEnv('conc-limit', {
    tasks: { fetch: 'local', concurrency: CONCURRENCY, batch_size: 10 },
  });
  const up = await startCountingUpstream(50); // 8 KiB files: about 0.4 s each
  const units = await seedRepo(
    te,
    up,
    'multi',
    Array.from({ length: UNITS }, (_, u) =>
      Array.from({ length: FILES_PER_UNIT }, (_, f) => ({
        relative: `d${f}/file-${f}.bin`,
        body: bytes(8 * 1024, `c${u}-${f}`),
      })),
    ),
    { queue: true },
  );

  const r = await runCliIn(te, ['sweep', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const s = JSON.parse(r.stdout) as SweepSummary;
  console.log(`# at most ${up.maxOpen} upstream GETs open at once`);
  assert.ok(up.maxOpen <= CONCURRENCY, `${up.maxOpen} files fetched at once, limit ${CONCURRENCY}`);
  assert.equal(up.maxOpen, CONCURRENCY, 'the limit is used in full');

  assert.deepEqual(s.failed, []);
  assert.equal(s.claimed, UNITS);
  assert.equal(s.stored, UNITS);
  assert.equal(s.files_fetched, UNITS * FILES_PER_UNIT);
  for (const u of units) {
    for (const f of u.files) {
      assert.equal(
        up.getsOf(f.upstreamPath),
        1,
        `${f.upstreamPath} fetched ${up.getsOf(f.upstreamPath)} times`,
      );
      assert.deepEqual(await readFile(f.storage_path), f.body);
    }
  }
  assert.equal(await te.db.deferred.countDocuments({}), 0, 'every entry gone');
  assert.deepEqual(await checkStorage(te), { downloaded: UNITS, notDownloaded: 0 });
  assert.deepEqual(await filesIn(tasksTempDir(te)), []);
});
