/**
 * A unit whose download lasts far longer than tasks.lease: the worker's
 * heartbeat keeps renewing both its queue entry lease and its unit lease,
 * so a second sweep started after the first lease would have run out finds
 * nothing to claim, and a claimer going for the unit itself finds it busy.
 * The file is fetched upstream once, stored once, the entry is deleted and
 * the unit marked downloaded. Without the renewal the second sweep takes
 * the entry and the unit over and fetches the file again.
 *
 * The upstream trickles the body (a few bytes every 100 ms, so no idle
 * timeout fires and the temp files stay fresh) until the test releases it.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { claimUnit, UNIT_LEASES_COLLECTION } from '../src/queue/index.ts';
import type { SweepSummary } from '../src/tasks/sweep.ts';
import {
  bytes,
  checkStorage,
  filesIn,
  seedRepo,
  spawnCli,
  taskEnv,
  tasksTempDir,
  type Upstream,
} from './helpers/tasks.ts';

const LEASE_MS = 3000;

interface GatedUpstream extends Upstream {
  /** Lets every held body finish (and later ones go at once). */
  release(): void;
}

/** An upstream (GETs counted per path) whose bodies trickle until release(). */
async function startGatedUpstream(): Promise<GatedUpstream> {
  let released = false;
  const waiting = new Set<() => void>();
  const up: GatedUpstream = {
    base: '',
    files: new Map(),
    gets: new Map(),
    getsOf: (p) => up.gets.get(p) ?? 0,
    corrupt: new Set(),
    delayMs: 100,
    open: 0,
    maxOpen: 0,
    release() {
      released = true;
      for (const wake of [...waiting]) wake();
    },
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
      let pos = 0;
      let timer: NodeJS.Timeout | undefined;
      const wake = () => {
        clearTimeout(timer);
        step();
      };
      res.on('close', () => {
        up.open--;
        clearTimeout(timer);
        waiting.delete(wake);
      });
      const step = () => {
        if (res.destroyed) return;
        if (released) {
          waiting.delete(wake);
          res.end(body.subarray(pos));
          return;
        }
        // Never the last KiB before the release: the download cannot finish early.
        const next = Math.min(pos + 64, body.length - 1024);
        if (next > pos) res.write(body.subarray(pos, next));
        pos = Math.max(pos, next);
        timer = setTimeout(step, up.delayMs);
      };
      waiting.add(wake);
      step();
    }),
  };
  up.server.listen(0, '127.0.0.1');
  await once(up.server, 'listening');
  after(() => {
    up.release();
    up.server.closeAllConnections();
    return new Promise<void>((r) => up.server.close(() => r()));
  });
  up.base = `http://127.0.0.1:${(up.server.address() as AddressInfo).port}`;
  return up;
}

test('a download longer than the lease keeps its entry and unit: a second sweep claims nothing, one fetch', async () => {
  // fetch = local: each sweep process fetches upstream itself, so a second download would be a second GET.
  const te = await taskEnv('renewal', { tasks: { fetch: 'local', lease: `${LEASE_MS}ms`, batch_size: 10 } });
  const up = await startGatedUpstream();
  const [unit] = await seedRepo(
    te,
    up,
    'slow',
    [[{ relative: 'big.rpm', body: bytes(256 * 1024, 'slow') }]],
    {
      queue: true,
    },
  );
  const file = unit!.files[0]!;
  const leases = te.db.db.collection<{ _id: string; owner: string; expires_at: Date }>(
    UNIT_LEASES_COLLECTION,
  );

  const a = spawnCli(te, ['sweep', '--json']);
  while (up.getsOf(file.upstreamPath) === 0 && a.child.exitCode === null) await sleep(20);
  assert.equal(a.child.exitCode, null, `the first sweep ended before fetching: ${a.stderr()}`);

  const claimed = await te.db.deferred.findOne({ unit_id: unit!.id });
  assert.ok(claimed?.lease_owner && claimed.lease_expires_at, 'the first sweep holds the entry');
  const owner = claimed.lease_owner;
  const unitLease = await leases.findOne({ _id: `u:${unit!.id}#1` });
  assert.equal(unitLease?.owner, owner, 'the first sweep holds the unit');
  // Wait until both first leases would have run out had nobody renewed them.
  const firstExpiry = Math.max(claimed.lease_expires_at.getTime(), unitLease.expires_at.getTime());
  while (Date.now() <= firstExpiry + 500) await sleep(50);
  assert.equal(up.open, 1, 'the first download is still going');

  const now = Date.now();
  const entry = await te.db.deferred.findOne({ unit_id: unit!.id });
  assert.equal(entry?.lease_owner, owner, 'the entry is still the first sweep’s');
  assert.ok(entry.lease_expires_at!.getTime() > now, 'the entry lease was renewed');
  const renewed = await leases.findOne({ _id: `u:${unit!.id}#1` });
  assert.ok(renewed!.expires_at.getTime() > now, 'the unit lease was renewed');
  const intruder = await claimUnit(te.db, unit!.id, 'intruder', LEASE_MS);
  assert.equal(intruder.kind, 'busy', 'the unit cannot be claimed while it is being downloaded');
  assert.equal(intruder.kind === 'busy' && intruder.owner, owner);

  const b = spawnCli(te, ['sweep', '--json']);
  const bExit = await b.exited;
  assert.equal(bExit.code, 0, b.stderr());
  const sb = JSON.parse(b.stdout()) as SweepSummary;
  assert.equal(sb.claimed, 0, 'the second sweep claimed the entry being worked on');
  assert.equal(sb.files_fetched, 0);
  assert.equal(sb.temp_files_removed, 0, 'the live download’s partial files are kept');
  assert.equal(up.open, 1, 'the first download was still going while the second sweep ran');
  assert.equal(up.getsOf(file.upstreamPath), 1);

  up.release();
  const aExit = await a.exited;
  assert.equal(aExit.code, 0, a.stderr());
  const sa = JSON.parse(a.stdout()) as SweepSummary;
  assert.deepEqual(sa.failed, []);
  assert.equal(sa.claimed, 1);
  assert.equal(sa.stored, 1);
  assert.equal(sa.skipped_busy, 0);
  assert.equal(sa.files_fetched, 1, 'fetched and verified once');

  assert.equal(up.getsOf(file.upstreamPath), 1, 'one upstream GET');
  // One unit lease generation (never taken over), released.
  const chain = (await leases.find({ unit_id: unit!.id }).toArray()).map((d) => d._id).sort();
  assert.deepEqual(chain, [`u:${unit!.id}#1`, `u:${unit!.id}#1:released`]);
  assert.equal(await te.db.deferred.countDocuments({}), 0, 'the entry is deleted');
  assert.equal((await te.db.units.findOne({ _id: unit!.id }))?.downloaded, true);
  assert.deepEqual(await checkStorage(te), { downloaded: 1, notDownloaded: 0 });
  assert.deepEqual(await readFile(file.storage_path), file.body);
  assert.deepEqual(await filesIn(tasksTempDir(te)), []);
});
