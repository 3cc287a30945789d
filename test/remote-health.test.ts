/**
 * Remote health and auto-block (#23 Remotes, src/upstream/health.ts), with a
 * real streamer, real upstream servers and the real database:
 *
 *   - an upstream that accepts connections and never answers is blocked
 *     after remotes.block_after timed-out misses; then misses answer 503
 *     with Retry-After at once, and it accepts no connection for them;
 *   - a file with a second catalog entry on another origin is fetched from
 *     that one without a request to the blocked origin;
 *   - the sweep gives a blocked unit's entry back without spending an
 *     attempt, and a separate `pulp-lazy sweep` process sees the block too;
 *   - `repo list --json`, `status`, `top --once` and /metrics show it;
 *   - once the upstream answers again, a probe unblocks it and a miss gets
 *     the right bytes;
 *   - an HTTP error (500) is an answer: it never blocks.
 * No timing is asserted (the benchmark measures it: `npm run bench -- blocked`).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import net from 'node:net';
import { after, test } from 'node:test';
import { catalogEntryId } from '../src/catalog/index.ts';
import { newDeferredEntry } from '../src/db/index.ts';
import { silentLogger } from '../src/log.ts';
import { unitStoragePath } from '../src/storage/index.ts';
import { createFileSource, taskDeps } from '../src/tasks/setup.ts';
import { runSweep } from '../src/tasks/sweep.ts';
import { eventually, fetchRaw, startOrigin, urlFor } from './helpers/streamer.ts';
import { bytes, runCliIn, startTaskStreamer, startUpstream, type TaskEnv, taskEnv } from './helpers/tasks.ts';

/**
 * A TCP server that accepts connections and reads requests but never answers,
 * until `answer` is set: then it answers each request with that function's
 * body (404 when it gives none). Records the first request path of every
 * connection ('' while none arrived).
 */
async function silentUpstream() {
  const firstPaths: string[] = [];
  const sockets = new Set<net.Socket>();
  const state = {
    origin: '',
    answer: undefined as ((path: string) => Buffer | undefined) | undefined,
    /** Connections accepted whose first request was not a probe of the root. */
    fileConnections: () => firstPaths.filter((p) => p !== '/').length,
    paths: () => [...firstPaths],
  };
  const server = net.createServer((sock) => {
    const i = firstPaths.push('') - 1;
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => {});
    let buf = '';
    sock.on('data', (d: Buffer) => {
      buf += d.toString('latin1');
      for (let end = buf.indexOf('\r\n\r\n'); end >= 0; end = buf.indexOf('\r\n\r\n')) {
        const path = buf.slice(0, end).split(' ')[1] ?? '';
        buf = buf.slice(end + 4);
        if (firstPaths[i] === '') firstPaths[i] = path;
        if (!state.answer) continue; // never answers
        const body = state.answer(decodeURIComponent(path));
        if (!body) sock.write('HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n');
        else {
          sock.write(
            `HTTP/1.1 200 OK\r\ncontent-type: application/octet-stream\r\ncontent-length: ${body.length}\r\n\r\n`,
          );
          sock.write(body);
        }
      }
    });
  });
  server.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  after(() => {
    for (const s of sockets) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  });
  state.origin = `http://127.0.0.1:${(server.address() as net.AddressInfo).port}`;
  return state;
}

/** The value of one sample of the streamer's /metrics (0 when absent). */
async function metric(base: string, sample: string): Promise<number> {
  const text = (await fetchRaw(`${base}/metrics`)).body.toString();
  const line = text.split('\n').find((l) => l.startsWith(`${sample} `));
  return line ? Number(line.slice(sample.length + 1)) : 0;
}

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** A repository (importer `imp-NAME`, catalog revision `revision`) whose feed is `base`/. */
async function addRepo(te: TaskEnv, name: string, base: string, revision: number): Promise<void> {
  await te.db.repos.insertOne({
    _id: name,
    type: 'file',
    feed: `${base}/`,
    importer_id: `imp-${name}`,
    upstream: { tls_verify: true },
    published_path: name,
    created_at: new Date(),
    last_sync: { finished_at: new Date(), revision, units: 0, added: 0, removed: 0 },
  });
}

/** One single-file unit offered by each repository in `from` (`base/REPO/NAME`); its id and storage path. */
async function addFile(
  te: TaskEnv,
  name: string,
  body: Buffer,
  from: Array<{ repo: string; base: string; revision: number }>,
): Promise<{ unitId: string; path: string }> {
  const unitId = sha256(Buffer.from(`unit:${name}`));
  const path = unitStoragePath(te.config.paths.storage, 'file', unitId, name);
  const file = {
    relative_path: name,
    size: body.length,
    checksum: sha256(body),
    checksum_algorithm: 'sha256' as const,
    storage_path: path,
  };
  await te.db.units.insertOne({
    _id: unitId,
    unit_type_id: 'file',
    unit_key: { name },
    files: [file],
    downloaded: false,
    created_at: new Date(),
  });
  for (const f of from) {
    await te.db.catalog.insertOne({
      _id: catalogEntryId(`imp-${f.repo}`, f.revision, path),
      path,
      importer_id: `imp-${f.repo}`,
      unit_id: unitId,
      unit_type_id: 'file',
      url: `${f.base}/${f.repo}/${name}`,
      checksum: file.checksum,
      checksum_algorithm: 'sha256',
      size: body.length,
      revision: f.revision,
    });
    await te.db.repoContentUnits.insertOne({
      repo_id: f.repo,
      unit_id: unitId,
      unit_type_id: 'file',
      relative_path: name,
    });
  }
  return { unitId, path };
}

test('a feed that accepts connections and never answers is blocked, skipped, shown, and unblocked when it answers', async () => {
  const te = await taskEnv('remote-health', {
    // Short timeouts so that the misses that block the feed are quick; probes 3 s apart.
    streamer: { connect_timeout: '2s', headers_timeout: '400ms' },
    remotes: { block_after: 2, probe_min: '3s', probe_max: '3s' },
  });
  const silent = await silentUpstream();
  const mirror = await startUpstream();
  const { port } = await startTaskStreamer(te);
  const base = `http://127.0.0.1:${port}`;
  // The feed's entries are the newest revision: asked first.
  await addRepo(te, 'feed', silent.origin, 2);
  await addRepo(te, 'mirror', mirror.base, 1);
  const aBody = bytes(50_000, 'a');
  const bBody = bytes(40_000, 'b');
  const a = await addFile(te, 'a.bin', aBody, [{ repo: 'feed', base: silent.origin, revision: 2 }]);
  const b = await addFile(te, 'b.bin', bBody, [
    { repo: 'feed', base: silent.origin, revision: 2 },
    { repo: 'mirror', base: mirror.base, revision: 1 },
  ]);
  mirror.files.set('/mirror/b.bin', bBody);
  const c = await addFile(te, 'c.bin', bytes(1000, 'c'), [
    { repo: 'feed', base: silent.origin, revision: 2 },
  ]);
  const e = await addFile(te, 'e.bin', bytes(1000, 'e'), [
    { repo: 'feed', base: silent.origin, revision: 2 },
  ]);

  // block_after (2) misses that time out waiting for headers.
  for (let i = 0; i < 2; i++) {
    const r = await fetchRaw(urlFor(base, a.path));
    assert.equal(r.status, 504, r.body.toString());
  }
  await eventually(
    async () => !!(await te.db.remoteHealth.findOne({ _id: silent.origin }))?.blocked_at,
    'the feed origin blocked in remote_health',
  );
  const doc = (await te.db.remoteHealth.findOne({ _id: silent.origin }))!;
  assert.ok(doc.failures >= 2, JSON.stringify(doc));
  assert.match(doc.last_error ?? '', /UND_ERR_HEADERS_TIMEOUT|timeout/i);
  assert.equal(doc.feed, `${silent.origin}/`);

  // 20 concurrent misses: 503 with Retry-After, and no upstream connection for any of them.
  const connectionsBefore = silent.fileConnections();
  const misses = await Promise.all(Array.from({ length: 20 }, () => fetchRaw(urlFor(base, a.path))));
  for (const r of misses) {
    assert.equal(r.status, 503, r.body.toString());
    assert.match(String(r.headers['retry-after']), /^[1-9]\d*$/, 'Retry-After in whole seconds, at least 1');
    const body = JSON.parse(r.body.toString()) as { code: string; message: string };
    assert.equal(body.code, 'PL_UPSTREAM_BLOCKED');
    assert.ok(body.message.includes(silent.origin), body.message);
  }
  // A blocked miss starts no fetch, so it queues nothing either (c was never asked before).
  const rc = await fetchRaw(urlFor(base, c.path));
  assert.equal(rc.status, 503, rc.body.toString());
  await new Promise((r) => setTimeout(r, 300)); // a connection attempt (or a queue write) would be in by now
  assert.equal(silent.fileConnections(), connectionsBefore, `upstream connections: ${silent.paths()}`);
  assert.equal(await te.db.deferred.findOne({ unit_id: c.unitId }), null, 'c not queued by its blocked miss');

  // A second catalog entry on another origin: straight there, the blocked feed not asked.
  const rb = await fetchRaw(urlFor(base, b.path));
  assert.equal(rb.status, 200);
  assert.ok(rb.body.equals(bBody), 'the bytes of the mirror');
  assert.equal(mirror.getsOf('/mirror/b.bin'), 1);
  assert.ok(!silent.paths().includes('/feed/b.bin'), `the blocked feed was asked: ${silent.paths()}`);

  // The sweep: a's entry (queued by the failed misses) is given back with its attempts unchanged.
  const queued = await te.db.deferred.findOne({ unit_id: a.unitId });
  assert.ok(queued, 'the failed misses queued the unit');
  assert.equal(queued.attempts, 0);
  const source = createFileSource(te.config, { db: te.db, logger: silentLogger }, 'proxy');
  after(() => source.close());
  const blockedAnswers = () => metric(base, 'pulp_lazy_streamer_requests_total{outcome="upstream_blocked"}');
  const answeredBefore = await blockedAnswers();
  const swept = await runSweep(taskDeps(te.config, { db: te.db, logger: silentLogger, source }));
  assert.equal(
    await blockedAnswers(),
    answeredBefore,
    'the sweep asked the streamer nothing: skipped before',
  );
  assert.equal(swept.skipped_blocked, 1, JSON.stringify(swept));
  assert.deepEqual(swept.failed, []);
  const kept = (await te.db.deferred.findOne({ unit_id: a.unitId }))!;
  assert.equal(kept.attempts, 0, 'no attempt spent');
  assert.equal(kept.state, 'pending');
  assert.ok(kept.next_attempt_at > new Date(), 'due again at the next probe');
  assert.equal(silent.fileConnections(), connectionsBefore);

  // Another process sees the block: `pulp-lazy sweep` gives c's entry back the same way.
  await te.db.deferred.insertOne(newDeferredEntry({ unit_id: c.unitId, unit_type_id: 'file' }, new Date()));
  const cli = await runCliIn(te, ['sweep', '--json']);
  assert.equal(cli.code, 0, cli.stderr);
  // c's entry, and a's again when its probe time passed meanwhile (a slow machine): all given back.
  const cliSwept = JSON.parse(cli.stdout) as { claimed: number; skipped_blocked: number };
  assert.ok(cliSwept.skipped_blocked >= 1, cli.stdout);
  assert.equal(cliSwept.skipped_blocked, cliSwept.claimed, cli.stdout);
  assert.equal((await te.db.deferred.findOne({ unit_id: c.unitId }))!.attempts, 0);

  // A sweep that does not know of the block yet (no health view) gets the streamer's 503: no attempt spent either.
  await te.db.deferred.insertOne(newDeferredEntry({ unit_id: e.unitId, unit_type_id: 'file' }, new Date()));
  const unaware = { ...taskDeps(te.config, { db: te.db, logger: silentLogger, source }), health: undefined };
  const sweptUnaware = await runSweep(unaware);
  assert.ok(sweptUnaware.skipped_blocked >= 1, JSON.stringify(sweptUnaware));
  assert.equal(sweptUnaware.skipped_blocked, sweptUnaware.claimed, JSON.stringify(sweptUnaware));
  assert.deepEqual(sweptUnaware.failed, []);
  for (const u of [a, c, e])
    assert.equal((await te.db.deferred.findOne({ unit_id: u.unitId }))!.attempts, 0, 'no attempt spent');

  // download-repo: the blocked units are reported as such (and stay queued for the sweep).
  const dr = await runCliIn(te, ['download-repo', 'feed', '--json']);
  assert.equal(dr.code, 1, dr.stderr);
  const drs = JSON.parse(dr.stdout) as { blocked: number; failed: unknown[]; stored: number };
  assert.equal(drs.blocked, 3, dr.stdout); // a, c and e (b was stored from the mirror)
  assert.equal(drs.failed.length, 3);
  assert.match(dr.stderr, /3 of them because their upstream is blocked/);

  // Shown: repo list --json, status, top --once, /metrics.
  const list = await runCliIn(te, ['repo', 'list', '--json']);
  assert.equal(list.code, 0, list.stderr);
  const repos = JSON.parse(list.stdout) as Array<{
    name?: string;
    id?: string;
    remote: { origin: string; state: string };
  }>;
  const remotes = Object.fromEntries(repos.map((r) => [r.remote.origin, r.remote.state]));
  assert.deepEqual(remotes, { [silent.origin]: 'blocked', [mirror.base]: 'ok' });
  const status = await runCliIn(te, ['status']);
  assert.match(status.stdout, new RegExp(`remotes:\\n  ${silent.origin}  blocked since `), status.stdout);
  const top = await runCliIn(te, ['top', '--once']);
  assert.match(top.stdout, new RegExp(`blocked upstream: ${silent.origin}`), top.stdout);
  await eventually(async () => {
    const m = (await fetchRaw(`${base}/metrics`)).body.toString();
    return m.includes(`pulp_lazy_remote_blocked{origin="${silent.origin}"} 1`);
  }, '/metrics shows the blocked origin');

  // The feed answers again: a probe unblocks it, and a miss gets the bytes.
  silent.answer = (p) => (p === '/feed/a.bin' ? aBody : undefined);
  await eventually(
    async () => (await te.db.remoteHealth.findOne({ _id: silent.origin }))?.blocked_at === null,
    'unblocked by a probe',
    20_000,
  );
  const unblocked = (await te.db.remoteHealth.findOne({ _id: silent.origin }))!;
  assert.equal(unblocked.failures, 0);
  assert.ok(silent.paths().includes('/'), 'probed at the root');
  const ra = await fetchRaw(urlFor(base, a.path));
  assert.equal(ra.status, 200, ra.body.toString());
  assert.ok(ra.body.equals(aBody));
});

test('an HTTP error is an answer: an origin answering 500 is never blocked', async () => {
  const te = await taskEnv('remote-health-500', {
    remotes: { block_after: 2, probe_min: '3s', probe_max: '3s' },
  });
  const origin = await startOrigin({
    '/broken/d.bin': (_req, res) => {
      res.writeHead(500).end('oops');
    },
  });
  const { port } = await startTaskStreamer(te);
  await addRepo(te, 'broken', origin.base, 1);
  const d = await addFile(te, 'd.bin', bytes(1000, 'd'), [
    { repo: 'broken', base: origin.base, revision: 1 },
  ]);
  for (let i = 0; i < 4; i++) {
    const r = await fetchRaw(urlFor(`http://127.0.0.1:${port}`, d.path));
    assert.equal(r.status, 502, r.body.toString());
  }
  assert.equal(origin.getsOf('/broken/d.bin'), 4, 'every miss was asked upstream');
  await new Promise((r) => setTimeout(r, 300)); // a failure would be written by now
  const doc = await te.db.remoteHealth.findOne({ _id: origin.base });
  assert.ok(!doc?.blocked_at && !doc?.failures, `not blocked, no failure counted: ${JSON.stringify(doc)}`);
});
