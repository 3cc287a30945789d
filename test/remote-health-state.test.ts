/**
 * The states of src/upstream/health.ts on the real database, with a fake
 * clock: what counts as a connection failure; failures must be consecutive
 * (an answer resets them); the probe waits double up to remotes.probe_max;
 * two processes that see the same due probe move it on once, and both see
 * the block and the unblock.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { UpstreamError } from '../src/errors.ts';
import { isConnectionFailure, toUpstreamError } from '../src/upstream/describe.ts';
import { RemoteHealth } from '../src/upstream/health.ts';
import { runDaemon } from './helpers/cli.ts';
import { testDatabase } from './helpers/db.ts';
import { eventually, startOrigin } from './helpers/streamer.ts';
import { taskEnv } from './helpers/tasks.ts';

const ORIGIN = 'http://feed.example:8080';
const FEED = `${ORIGIN}/repo/`;
const refused = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' });

test('connection failures count; HTTP answers, refused redirects and aborts do not', () => {
  const codes = ['ECONNREFUSED', 'ECONNRESET', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'UND_ERR_SOCKET'];
  for (const code of [
    ...codes,
    'UND_ERR_CONNECT_TIMEOUT',
    'UND_ERR_HEADERS_TIMEOUT',
    'ERR_TLS_CERT_ALTNAME_INVALID',
  ]) {
    const raw = Object.assign(new Error(code), { code });
    assert.ok(isConnectionFailure(raw), code);
    assert.ok(isConnectionFailure(toUpstreamError(raw, `${ORIGIN}/f`)), `${code} through our typed error`);
  }
  assert.ok(
    isConnectionFailure(new Error('fetch failed', { cause: { code: 'DEPTH_ZERO_SELF_SIGNED_CERT' } })),
  );
  for (const code of ['UND_ERR_ABORTED', 'UND_ERR_BODY_TIMEOUT', 'PL_UPSTREAM_REDIRECT'])
    assert.ok(!isConnectionFailure(Object.assign(new Error(code), { code })), code);
  assert.ok(!isConnectionFailure(new UpstreamError(`${ORIGIN}/f: upstream answered 500`)));
});

test('blocked after block_after consecutive failures; probes back off up to probe_max; an answer unblocks', async (t) => {
  const db = await testDatabase('health-state');
  let now = Date.parse('2026-01-01T00:00:00Z');
  const clock = () => now;
  const settings = { blockAfter: 3, probeMinMs: 1000, probeMaxMs: 3500 };
  const h = new RemoteHealth(db, settings, { clock, refreshMs: 0 });
  const doc = () => db.remoteHealth.findOne({ _id: ORIGIN });

  // Not consecutive: an answer in between resets the count.
  h.failed(ORIGIN, refused, FEED);
  h.failed(ORIGIN, refused, FEED);
  await h.flush();
  h.answered(ORIGIN);
  h.failed(ORIGIN, refused, FEED);
  await h.flush();
  assert.equal((await doc())!.failures, 1);
  assert.equal((await doc())!.blocked_at, null);
  assert.equal(h.blocked(`${ORIGIN}/f`), undefined);

  h.failed(ORIGIN, refused, FEED);
  h.failed(ORIGIN, refused, FEED);
  await h.flush();
  const blocked = (await doc())!;
  assert.equal(blocked.failures, 3);
  assert.equal(blocked.blocked_at?.getTime(), now);
  assert.equal(blocked.next_probe_at?.getTime(), now + 1000, 'first probe after probe_min');
  assert.match(blocked.last_error ?? '', /ECONNREFUSED/);
  const err = h.blocked(`${ORIGIN}/any/path`);
  assert.equal(err?.code, 'PL_UPSTREAM_BLOCKED');
  assert.equal(err?.retryAfterS, 1);
  assert.equal(h.blocked('http://other.example/f'), undefined, 'other origins are not blocked');

  // A second process (its own view) sees the block.
  const other = new RemoteHealth(db, settings, { clock, refreshMs: 0 });
  await other.refresh();
  assert.ok(other.blocked(`${ORIGIN}/f`));

  // Probes: both processes see the same due probe; the wait doubles up to probe_max.
  const probes: string[] = [];
  const prober = async (origin: string) => {
    probes.push(origin);
  };
  h.start(prober, { everyMs: 3_600_000 });
  other.start(prober, { everyMs: 3_600_000 });
  t.after(async () => {
    await h.stop();
    await other.stop();
  });
  for (const wait of [2000, 3500, 3500]) {
    const due = (await doc())!.next_probe_at!.getTime();
    now = due;
    const before = probes.length;
    await Promise.all([h.refresh(), other.refresh()]);
    h.probeDue();
    other.probeDue();
    await eventually(() => probes.length > before, 'a probe');
    await eventually(
      async () => (await doc())!.next_probe_at!.getTime() === now + wait,
      `next probe ${wait} ms later`,
    );
    assert.equal((await doc())!.probe_backoff_ms, wait);
    // Retry-After says when the next probe is.
    await h.refresh();
    assert.equal(h.blocked(`${ORIGIN}/f`)?.retryAfterS, Math.ceil(wait / 1000));
  }

  // The probe's answer (the pool tells health.answered) unblocks it, for both processes.
  h.answered(ORIGIN);
  await h.flush();
  const up = (await doc())!;
  assert.equal(up.blocked_at, null);
  assert.equal(up.failures, 0);
  assert.equal(up.last_ok_at?.getTime(), now);
  await other.refresh();
  assert.equal(other.blocked(`${ORIGIN}/f`), undefined);
  assert.ok(!other.anyBlocked());
});

test('the scheduler daemon probes a blocked origin too (a mirror with only the sweep recovers)', async () => {
  const te = await taskEnv('health-scheduler', {
    remotes: { probe_min: '1s', probe_max: '1s' },
    tasks: { sweep_interval: '1h' },
    log: { level: 'info' }, // runDaemon waits for its 'sweeping on schedule' line
  });
  const origin = await startOrigin({});
  const now = new Date();
  // Blocked by some other process, its probe due now; no streamer runs.
  await te.db.remoteHealth.insertOne({
    _id: origin.base,
    failures: 3,
    blocked_at: now,
    next_probe_at: now,
    probe_backoff_ms: 1000,
    last_error: 'connect ECONNREFUSED',
    last_failure_at: now,
    last_ok_at: null,
    feed: `${origin.base}/`,
  });
  const daemon = await runDaemon('scheduler', te.env, 'sweeping on schedule');
  await eventually(
    async () => (await te.db.remoteHealth.findOne({ _id: origin.base }))?.blocked_at === null,
    'unblocked by the scheduler',
    15_000,
  );
  assert.ok(origin.getsOf('/') >= 1, 'probed at the root');
  daemon.child.kill('SIGTERM');
  assert.equal((await daemon.exited).code, 0);
});
