/**
 * The registry of a streamer's flights (src/streamer/flights.ts), with
 * stand-in flights: one flight taking clients per path until it retires,
 * the failure of a path's last fetch remembered (and forgotten on success,
 * at most FAILURES_KEPT), one claim among the streamers for concurrent
 * requests of a path, the lease released once the flight settled, and the
 * shutdown: wait for every running flight, or abort them.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { CatalogEntryDoc } from '../src/db/index.ts';
import { PulpLazyError } from '../src/errors.ts';
import { FAILURES_KEPT, FlightRegistry, type TrackedFlight } from '../src/streamer/flights.ts';
import type { PathClaim } from '../src/streamer/shared-flight.ts';

/** A flight the test ends: retire() (optionally failed), then settle(). */
class StandIn implements TrackedFlight {
  error: PulpLazyError | undefined;
  aborted: PulpLazyError | undefined;
  readonly settled: Promise<void>;
  settle!: () => void;
  constructor(
    readonly path: string,
    readonly onRetire: (f: StandIn) => void,
  ) {
    this.settled = new Promise((resolve) => {
      this.settle = resolve;
    });
  }
  retire(error?: PulpLazyError): void {
    this.error = error;
    this.onRetire(this);
  }
  abort(reason: PulpLazyError): void {
    this.aborted = reason;
    this.retire(reason);
    this.settle();
  }
}

function registry() {
  const started: StandIn[] = [];
  const streams: number[] = [];
  const flights = new FlightRegistry<StandIn>(
    (path, _entries, onRetire) => {
      const f = new StandIn(path, onRetire);
      started.push(f);
      return f;
    },
    { streams: (n) => streams.push(n) },
  );
  return { flights, started, streams };
}

const entries: CatalogEntryDoc[] = [];
const failure = (m: string) => new PulpLazyError('PL_UPSTREAM', m, { status: 502 });

test('a flight takes clients for its path until it retires; it runs until it settled', async () => {
  const { flights, streams } = registry();
  const f = flights.start('/a', entries);
  assert.equal(flights.get('/a'), f);
  assert.equal(flights.size, 1);
  f.retire();
  assert.equal(flights.get('/a'), undefined, 'a retired flight takes no new client');
  assert.equal(flights.size, 1, 'but still runs (saving)');
  f.settle();
  await flights.settled();
  await new Promise((r) => setImmediate(r));
  assert.equal(flights.size, 0);
  assert.deepEqual(streams, [1, 0], 'the memory guard is told how many run');
});

test('a retiring flight does not remove the newer flight of its path', () => {
  const { flights } = registry();
  const old = flights.start('/a', entries);
  old.retire();
  const next = flights.start('/a', entries);
  old.retire();
  assert.equal(flights.get('/a'), next);
});

test("a path's last failure is remembered until a fetch of it succeeds; the oldest are forgotten first", () => {
  const { flights } = registry();
  flights.start('/a', entries).retire(failure('disk full'));
  assert.match(flights.lastFailure('/a') ?? '', /disk full/);
  flights.start('/a', entries).retire();
  assert.equal(flights.lastFailure('/a'), undefined);
  for (let i = 0; i <= FAILURES_KEPT; i++) flights.start(`/p${i}`, entries).retire(failure(`f${i}`));
  assert.equal(flights.lastFailure('/p0'), undefined, 'the oldest was forgotten');
  assert.match(flights.lastFailure(`/p${FAILURES_KEPT}`) ?? '', new RegExp(`f${FAILURES_KEPT}`));
});

test('concurrent requests of a path make one claim; the winner starts one flight and releases the lease once it settled', async () => {
  const { flights, started } = registry();
  let claims = 0;
  let released = 0;
  let answer!: (c: PathClaim) => void;
  const shared = {
    claim: () => {
      claims++;
      return new Promise<PathClaim>((resolve) => {
        answer = resolve;
      });
    },
  };
  const a = flights.startShared(shared, '/a', entries);
  const b = flights.startShared(shared, '/a', entries);
  answer({
    kind: 'won',
    release: async () => {
      released++;
    },
  });
  const [ra, rb] = await Promise.all([a, b]);
  assert.equal(claims, 1);
  assert.equal(started.length, 1);
  assert.ok(ra.kind === 'flight' && rb.kind === 'flight' && ra.flight === rb.flight);
  assert.equal(released, 0);
  started[0]!.settle();
  await new Promise((r) => setImmediate(r));
  assert.equal(released, 1);
  // The claim is over: the next request claims again; another streamer holds the path now.
  const held = flights.startShared(shared, '/a', entries);
  answer({ kind: 'held', owner: 'other', url: 'http://other:1' });
  assert.deepEqual(await held, { kind: 'held', url: 'http://other:1' });
  assert.equal(claims, 2);
});

test('shutdown: abortAll aborts every running flight, settled() waits for them', async () => {
  const { flights } = registry();
  const a = flights.start('/a', entries);
  const b = flights.start('/b', entries);
  a.retire();
  const reason = new PulpLazyError('PL_SHUTTING_DOWN', 'bye', { status: 503 });
  flights.abortAll(reason);
  await flights.settled();
  assert.equal(a.aborted, reason, 'a retired flight still saving is aborted too');
  assert.equal(b.aborted, reason);
});
