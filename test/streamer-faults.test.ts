/**
 * Upstream faults: each ends with the documented status (before the first
 * byte) or a destroyed connection (after it), never a clean 200 with wrong
 * bytes; nothing saved, no temp file, unit not downloaded, daemon healthy.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  addRepo,
  assertHealthy,
  bytes,
  exists,
  fetchRaw,
  type Origin,
  type OriginHandler,
  type StreamerFixture,
  seedUnit,
  serve,
  settled,
  sha256,
  startOrigin,
  startStreamer,
  tempFiles,
  urlFor,
} from './helpers/streamer.ts';

const SIZE = 256 * 1024;
const T = { timeout: 60_000 };

/** Sends headers and half the body, then `then(res)`. */
const halfThen =
  (body: Buffer, then: (res: import('node:http').ServerResponse) => void): OriginHandler =>
  (_req, res) => {
    res.writeHead(200, { 'content-length': body.length });
    res.write(body.subarray(0, body.length / 2), () => setTimeout(() => then(res), 50));
  };

let seq = 0;
const bodies = new Map<string, Buffer>();

function bodyFor(route: string): Buffer {
  let b = bodies.get(route);
  if (!b) {
    b = bytes(SIZE, 100 + bodies.size);
    bodies.set(route, b);
  }
  return b;
}

// Set up at top level: the helpers register after() hooks for the whole file.
const fx: StreamerFixture = await startStreamer('faults', {
  body_idle_timeout: '400ms',
  headers_timeout: '1s',
  connect_timeout: '1s',
});
const wrong = bytes(SIZE, 999);
const origin: Origin = await startOrigin({
  '/missing': (_req, res) => void res.writeHead(404).end('gone'),
  '/error': (_req, res) => void res.writeHead(500).end('boom'),
  '/reset-early': (req) => req.socket.destroy(),
  '/reset-mid': halfThen(bodyFor('/reset-mid'), (res) => res.socket?.destroy()),
  '/short': halfThen(bodyFor('/short'), (res) => res.socket?.end()),
  '/wrong': serve(wrong),
  '/stall-body': halfThen(bodyFor('/stall-body'), () => {}),
  '/stall-headers': () => {},
  '/good': serve(bodyFor('/good')),
});
await addRepo(fx.db, 'imp-faults-a');
await addRepo(fx.db, 'imp-faults-b');

/** One unit whose single file is offered by `routes` in order (first = newest revision). */
async function seed(routes: string[], bodyRoute = routes[0]!) {
  const body = bodyFor(bodyRoute);
  const name = `f${seq++}.rpm`;
  const sources = routes.map((r, i) => ({
    importer: i === 0 ? 'imp-faults-a' : 'imp-faults-b',
    url: `${origin.base}${r}`,
    revision: routes.length - i,
  }));
  const { unitId, paths } = await seedUnit(fx, [{ name, body, sources }]);
  return { unitId, storagePath: paths[0]!, body };
}

async function assertNothingSaved(unitId: string, storagePath: string) {
  await settled(fx);
  assert.equal(await exists(storagePath), false, 'no file in storage');
  assert.deepEqual(await tempFiles(fx), [], 'no temp file');
  assert.equal((await fx.db.units.findOne({ _id: unitId }))?.downloaded, false);
  await assertHealthy(fx);
}

async function expectJsonError(route: string, status: number, code: string) {
  const { unitId, storagePath } = await seed([route]);
  const r = await fetchRaw(urlFor(fx.base, storagePath));
  assert.equal(r.status, status);
  assert.equal(r.headers['content-type'], 'application/json');
  assert.equal(r.headers['cache-control'], 'no-store');
  assert.equal(JSON.parse(r.body.toString()).code, code);
  await assertNothingSaved(unitId, storagePath);
}

async function expectDestroyed(route: string) {
  const { unitId, storagePath, body } = await seed([route]);
  // Depending on timing the cut comes before or after our response headers
  // were flushed: either way the client never sees a complete response.
  const r = await fetchRaw(urlFor(fx.base, storagePath)).catch((err: Error) => err);
  if (r instanceof Error) {
    assert.match(String((r as NodeJS.ErrnoException).code), /ECONNRESET|EPIPE/);
  } else {
    assert.equal(r.status, 200, 'headers were sent before the failure');
    assert.equal(r.complete, false, 'the client sees a cut connection');
    assert.ok(r.body.length < body.length);
  }
  await assertNothingSaved(unitId, storagePath);
}

// Every entry answered 404: the file is gone upstream (#22 drift: 404, unit flagged, re-sync requested).
test('upstream 404 → 404', T, () => expectJsonError('/missing', 404, 'PL_UPSTREAM_GONE'));
test('upstream 500 → 502', T, () => expectJsonError('/error', 502, 'PL_UPSTREAM'));
test('connection reset before headers → 502', T, () => expectJsonError('/reset-early', 502, 'PL_UPSTREAM'));
test('no headers within headers_timeout → 504', T, () =>
  expectJsonError('/stall-headers', 504, 'PL_UPSTREAM_TIMEOUT'),
);
test('reset mid-body → connection destroyed', T, () => expectDestroyed('/reset-mid'));
test('body shorter than Content-Length → connection destroyed', T, () => expectDestroyed('/short'));
test('body stalls past body_idle_timeout → connection destroyed', T, () => expectDestroyed('/stall-body'));

test('wrong bytes → last byte withheld, entry cooled down, failure queued, next request 502', T, async () => {
  const { unitId, storagePath, body } = await seed(['/wrong'], '/good');
  const r = await fetchRaw(urlFor(fx.base, storagePath));
  assert.equal(r.status, 200);
  assert.equal(r.complete, false);
  assert.ok(r.body.length < body.length, 'the final bytes never reach the client');
  await assertNothingSaved(unitId, storagePath);
  const entry = await fx.db.catalog.findOne({ path: storagePath });
  assert.ok(
    entry?.failed_until && entry.failed_until.getTime() > Date.now(),
    'entry skipped for the cooldown',
  );
  assert.match(entry.last_error ?? '', /sha256/);
  const queued = await fx.db.deferred.find({ unit_id: unitId }).toArray();
  assert.equal(queued.length, 1);
  assert.match(queued[0]!.last_error ?? '', /sha256/);
  assert.equal(fx.streamer.metrics.checksumFailures.get(), 1);

  const again = await fetchRaw(urlFor(fx.base, storagePath));
  assert.equal(again.status, 502);
  assert.equal(origin.getsOf('/wrong'), 1, 'the cooling entry is not fetched again');
});

test('failover: first entry 500, second OK → 200 with the second entry bytes', T, async () => {
  const { unitId, storagePath, body } = await seed(['/error', '/good'], '/good');
  const before500 = origin.getsOf('/error');
  const r = await fetchRaw(urlFor(fx.base, storagePath));
  assert.equal(r.status, 200);
  assert.ok(r.complete);
  assert.equal(sha256(r.body), sha256(body));
  assert.equal(origin.getsOf('/error'), before500 + 1, 'the newest entry was tried first');
  await settled(fx);
  assert.equal((await fx.db.units.findOne({ _id: unitId }))?.downloaded, true);
  assert.deepEqual(await tempFiles(fx), []);
});
