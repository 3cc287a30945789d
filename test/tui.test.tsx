/** @jsxRuntime automatic */
/** @jsxImportSource react */
/**
 * `pulp-lazy top`: the screen in empty, busy and failing states (sweep
 * throughput and last runs included), how the lists share a small terminal,
 * its keys, and the real command's snapshot.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import chalk from 'chalk';
import { render } from 'ink-testing-library';
import { connect, deferredId, migrate } from '../src/db/index.ts';
import type { QueueStats } from '../src/queue/index.ts';
import type { TaskRun } from '../src/tasks/runs.ts';
import { App, Screen } from '../src/tui/App.tsx';
import { shareRows } from '../src/tui/layout.ts';
import { streamerView } from '../src/tui/metrics-text.ts';
import type { TopSnapshot } from '../src/tui/types.ts';
import { runCli } from './helpers/cli.ts';
import { mongoUrl } from './helpers/db.ts';
import { testEnv } from './helpers/env.ts';

const ANSI = new RegExp(`${String.fromCharCode(27)}\\[[0-9;]*m`, 'g');
const plain = (s: string | undefined) => (s ?? '').replace(ANSI, '');

const daemons = (up: boolean) =>
  ['content', 'streamer', 'authorizer', 'scheduler', 'proxies'].map((name) => ({
    name,
    running: up,
    healthy: up ? true : null,
    pid: up ? 1000 : null,
  }));

const emptyQueue: QueueStats = {
  total: 0,
  ready: 0,
  waiting: 0,
  leased: 0,
  failed: 0,
  oldest_age_s: null,
  oldest_unit_id: null,
  failing: [],
  failing_total: 0,
};

const EMPTY: TopSnapshot = {
  at: new Date('2026-01-01T10:00:00Z'),
  daemons: daemons(false),
  queue: emptyQueue,
  repos: [],
  runs: [],
  streamer: null,
};

const MiB = 1024 * 1024;

/** A run that finished at 10:mm:ss UTC. */
function run(mmss: string, r: Partial<TaskRun> & { seconds: number }): TaskRun {
  const finished = new Date(`2026-01-01T10:${mmss}Z`);
  return {
    kind: 'sweep',
    worker: 'host:1:abc',
    started_at: new Date(finished.getTime() - r.seconds * 1000),
    finished_at: finished,
    claimed: 0,
    stored: 0,
    failed: 0,
    files: 0,
    bytes: 0,
    ...r,
  };
}

/** Newest first: a sweep at 3 units/s and 3 MiB/s, a repository download, an idle sweep, a slower sweep. */
const RUNS: TaskRun[] = [
  run('04:00', { claimed: 120, stored: 120, files: 120, bytes: 120 * MiB, seconds: 40 }),
  run('03:00', {
    kind: 'download_repo',
    repo: 'centos-9-baseos',
    claimed: 500,
    stored: 498,
    failed: 2,
    files: 498,
    bytes: 2048 * MiB,
    seconds: 754,
  }),
  run('02:00', { seconds: 0.05 }),
  run('01:00', { claimed: 80, stored: 80, files: 80, bytes: 40 * MiB, seconds: 60 }),
];

const BUSY: TopSnapshot = {
  at: new Date('2026-01-01T10:00:05Z'),
  daemons: daemons(true),
  queue: {
    ...emptyQueue,
    total: 1500,
    ready: 1200,
    waiting: 40,
    leased: 250,
    failed: 10,
    oldest_age_s: 7260,
    oldest_unit_id: 'u1',
  },
  repos: [
    { name: 'centos-9-baseos', downloaded: 4500, total: 10000 },
    { name: 'debian-bookworm-main-with-a-very-long-name', downloaded: 200, total: 200 },
    { name: 'files', downloaded: 0, total: 12 },
  ],
  runs: RUNS,
  streamer: { misses: 321, hits: 9876, joins: 45, checksumFailures: 0, activeFlights: 3 },
};

const FAILING: TopSnapshot = {
  ...BUSY,
  daemons: BUSY.daemons.map((d) =>
    d.name === 'authorizer' ? { ...d, healthy: false, error: 'no answer' } : d,
  ),
  // The last sweep could store nothing: every claimed unit failed.
  runs: [run('05:00', { claimed: 3, failed: 3, seconds: 2.5 }), ...RUNS],
  queue: {
    ...BUSY.queue!,
    failing_total: 7,
    failing: [
      {
        unit_id: 'a1b2c3',
        unit_type_id: 'rpm',
        state: 'failed',
        attempts: 10,
        last_error: 'upstream answered 503 Service Unavailable for http://mirror/x.rpm',
      },
      {
        unit_id: 'd4e5f6',
        unit_type_id: 'rpm',
        state: 'pending',
        attempts: 2,
        last_error: 'sha256 mismatch',
      },
    ],
  },
};

function noop() {}

test('empty state: every daemon down, empty queue, no repositories, no failures; fits 80x24', () => {
  const { lastFrame, unmount } = render(
    <App snapshot={EMPTY} color={false} onQuit={noop} onSweep={noop} onRetry={noop} />,
  );
  const f = plain(lastFrame());
  unmount();
  assert.match(f, /daemons: content down streamer down authorizer down scheduler down proxies down/);
  assert.match(f, /queue: empty/);
  assert.match(f, /repositories: none/);
  assert.match(f, /recent failures: none/);
  assert.match(f, /streamer: \/metrics not reachable/);
  assert.match(f, /sweep: no runs recorded yet/);
  assert.match(f, /last runs: none recorded/);
  for (const line of f.split('\n')) assert.ok(line.length <= 80, `too wide: ${line}`);
});

test('busy state: queue counts, oldest age, progress bars, streamer activity; fits 80x24', () => {
  const { lastFrame, unmount } = render(
    <App snapshot={BUSY} color={false} onQuit={noop} onSweep={noop} onRetry={noop} />,
  );
  const f = plain(lastFrame());
  unmount();
  assert.match(f, /content up streamer up authorizer up scheduler up proxies up/);
  assert.match(f, /queue: 1500 total, 1200 ready, 40 waiting, 250 leased, 10 failed, oldest 2h0?1m/);
  assert.match(f, /centos-9-baseos +\[#{11}-{13}\] +45% 4500\/10000/);
  assert.match(f, /\[#{24}\] 100% 200\/200/);
  assert.match(f, /files +\[-{24}\] +0% 0\/12/);
  assert.match(f, /streamer: 321 misses, 9876 hits, 45 joins, 0 checksum failures, 3 active/);
  // Last sweep: 120 units and 120 MiB in 40 s; average of the two busy sweeps (the idle one is left out):
  // 200 units and 160 MiB in 100 s.
  assert.match(f, /sweep: last run 3\.0 units\/s, 3\.0 MiB\/s; avg of 2 runs 2\.0 units\/s, 1\.6 MiB\/s/);
  assert.match(f, /last runs\n {2}10:04:00 sweep +120 stored, 0 failed, 120\.0 MiB in 40s\n/);
  assert.match(f, / {2}10:03:00 repo centos-9-baseos +498 stored, 2 failed, 2\.0 GiB in 12m34s\n/);
  assert.match(f, / {2}10:02:00 sweep +0 stored, 0 failed, 0 B in 0\.1s\n/);
  assert.match(f, / {2}10:01:00 sweep +80 stored, 0 failed, 40\.0 MiB in 1m00s/);
  const lines = f.split('\n');
  for (const line of lines) assert.ok(line.length <= 80, `too wide: ${line}`);
  assert.ok(lines.length <= 24, `${lines.length} lines`);
});

test('failing state: an unhealthy daemon and the failing units with their errors', () => {
  const { lastFrame, unmount } = render(
    <App snapshot={FAILING} color={false} onQuit={noop} onSweep={noop} onRetry={noop} />,
  );
  const f = plain(lastFrame());
  unmount();
  assert.match(f, /authorizer BAD/);
  assert.match(f, /failures \(2 of 7\)/);
  assert.match(f, /a1b2c3 parked, 10 tries: ….*503 Service Unavailable for http:\/\/mirror\/x\.rpm$/m);
  assert.match(f, /d4e5f6 pending, 2 tries: sha256 mismatch$/m);
  assert.match(f, /sweep: last run 0\.0 units\/s, 0 B\/s; avg of 3 runs 2\.0 units\/s, 1\.6 MiB\/s/);
  assert.match(f, / {2}10:05:00 sweep +0 stored, 3 failed, 0 B in 2\.5s/);
  for (const line of f.split('\n')) assert.ok(line.length <= 80, `too wide: ${line}`);
});

test('supervised daemons: restarts and the last exit reason; one that was given up on', () => {
  const snapshot: TopSnapshot = {
    ...BUSY,
    daemons: BUSY.daemons.map((d) =>
      d.name === 'streamer'
        ? { ...d, restarts: 1, lastExit: 'SIGKILL' }
        : d.name === 'content'
          ? { ...d, running: false, healthy: null, pid: null, restarts: 5, lastExit: 'code 1', givenUp: true }
          : d,
    ),
  };
  const { lastFrame, unmount } = render(
    <App snapshot={snapshot} color={false} onQuit={noop} onSweep={noop} onRetry={noop} />,
  );
  const f = plain(lastFrame());
  unmount();
  assert.match(f, /daemons: content down streamer up authorizer up scheduler up proxies up/);
  assert.match(f, /^restarts: content gave up after 5 \(last code 1\), streamer 1 \(last SIGKILL\)$/m);
  const lines = f.split('\n');
  for (const line of lines) assert.ok(line.length <= 80, `too wide: ${line}`);
  assert.ok(lines.length <= 24, `${lines.length} lines`);
});

test('failing state: no database, so no queue and no run history', () => {
  const { lastFrame, unmount } = render(
    <App
      snapshot={{ ...EMPTY, queue: null, runs: null, error: 'database: cannot reach MongoDB at x' }}
      color={false}
      onQuit={noop}
      onSweep={noop}
      onRetry={noop}
    />,
  );
  const f = plain(lastFrame());
  unmount();
  assert.match(f, /queue: unknown/);
  assert.match(f, /sweep: run history not readable/);
  assert.match(f, /last runs: unknown/);
  assert.match(f, /database: cannot reach MongoDB at x/);
});

test('a full screen fits the rows it is given: the lists share them and shrink', () => {
  const full: TopSnapshot = {
    ...FAILING,
    error: 'database: slow',
    repos: Array.from({ length: 12 }, (_, i) => ({ name: `repo-${i}`, downloaded: i, total: 12 })),
    queue: {
      ...FAILING.queue!,
      failing_total: 9,
      failing: Array.from({ length: 5 }, (_, i) => ({
        unit_id: `unit${i}`,
        unit_type_id: 'rpm',
        state: 'pending' as const,
        attempts: 1,
        last_error: 'upstream answered 404',
      })),
    },
    runs: Array.from({ length: 8 }, (_, i) => run(`0${9 - i}:00`, { claimed: 1, stored: 1, seconds: 1 })),
  };
  const frame = (height: number | undefined) => {
    const app = render(
      <App snapshot={full} color={false} height={height} onQuit={noop} onSweep={noop} onRetry={noop} />,
    );
    const f = plain(app.lastFrame());
    app.unmount();
    return f;
  };
  const free = frame(undefined);
  // No limit: 6 repository rows (5 and "... 7 more"), 5 failures, 4 runs.
  assert.match(free, /repo-4 .*\n {2}\.\.\. 7 more\n/);
  assert.equal((free.match(/unit\d pending/g) ?? []).length, 5);
  assert.equal((free.match(/^ {2}10:0\d:00 /gm) ?? []).length, 4);

  const tall = frame(23);
  const lines = tall.split('\n');
  assert.ok(lines.length <= 23, `${lines.length} lines for 23 rows:\n${tall}`);
  for (const line of lines) assert.ok(line.length <= 80, `too wide: ${line}`);
  assert.match(tall, /^pulp-lazy top 10:00:05/);

  const small = frame(15);
  assert.ok(small.split('\n').length <= 15, small);
  // 10 fixed lines leave 5 rows: two for repositories, two for failures, one for runs.
  assert.match(small, /repo-0 .*\n {2}\.\.\. 11 more\nfailures \(2 of 9\)/);
  assert.equal((small.match(/^ {2}10:0\d:00 /gm) ?? []).length, 1);
});

test('units gone upstream: listed with since when, the status and where, within the rows given', () => {
  const unit = (i: number) => ({
    unit_id: `u${i}`,
    unit_type_id: 'file',
    where: [
      { repo: 'r', path: `pkgs/f${i}.bin` },
      { repo: 's', path: `f${i}.bin` },
    ],
    since: `2026-01-01T09:0${i}:00.000Z`,
    status: i === 1 ? 410 : 404,
  });
  const snapshot: TopSnapshot = { ...FAILING, gone: { total: 4, units: [0, 1, 2].map(unit) } };
  const frame = (height: number | undefined) => {
    const app = render(
      <Screen snapshot={snapshot} color={false} width={80} height={height} footer="last action" />,
    );
    const f = plain(app.lastFrame());
    app.unmount();
    return f;
  };
  const free = frame(undefined);
  assert.match(free, /^gone upstream \(3 of 4, re-sync requested\)$/m);
  assert.match(free, /^ {2}2026-01-01 09:00:00 404 r\/pkgs\/f0\.bin \(\+1 more\)$/m);
  assert.match(free, /^ {2}2026-01-01 09:01:00 410 r\/pkgs\/f1\.bin \(\+1 more\)$/m);
  for (let height = 12; height <= 24; height++) {
    const f = frame(height);
    assert.ok(f.split('\n').length <= height, `${f.split('\n').length} lines for ${height} rows:\n${f}`);
    assert.match(f, /^gone upstream \([0-3] of 4, re-sync requested\)$/m);
  }
  // None gone: no panel at all.
  assert.doesNotMatch(
    plain(render(<Screen snapshot={FAILING} color={false} width={80} />).lastFrame()),
    /gone upstream/,
  );
});

test('a narrow terminal (60 x 15): every line is cut at the width, none wraps, the frame keeps its height', () => {
  const wide = (s: string) => `${s} ${'x'.repeat(120)}`;
  const snapshot: TopSnapshot = {
    ...FAILING,
    error: wide('database: unreachable'),
    repos: [{ name: wide('a-repository-with-a-long-name'), downloaded: 3, total: 7 }],
    queue: {
      ...FAILING.queue!,
      failing: FAILING.queue!.failing.map((f) => ({ ...f, last_error: wide(f.last_error ?? '') })),
    },
  };
  for (const help of [false, true]) {
    const app = render(<Screen snapshot={snapshot} color={false} width={60} height={15} help={help} />);
    const f = plain(app.lastFrame());
    app.unmount();
    const lines = f.split('\n');
    for (const line of lines) assert.ok(line.length <= 60, `too wide (${line.length}): ${line}`);
    assert.match(f, /^pulp-lazy top/);
    assert.match(f, /daemons: /);
    if (help) continue;
    assert.match(f, /a-repository-with-a-long \[#+-+\]/);
    assert.ok(lines.length <= 15, `${lines.length} lines for 15 rows:\n${f}`);
  }
});

test('rows are handed out in turn, never more than a list wants', () => {
  assert.deepEqual(shareRows(15, [6, 5, 4]), [6, 5, 4]);
  assert.deepEqual(shareRows(14, [6, 5, 4]), [5, 5, 4]);
  assert.deepEqual(shareRows(7, [6, 0, 4]), [4, 0, 3]);
  assert.deepEqual(shareRows(-3, [6, 5, 4]), [0, 0, 0]);
  assert.deepEqual(shareRows(100, [1, 2, 0]), [1, 2, 0]);
});

test('colours on: ANSI codes; colours off (NO_COLOR): none', (t) => {
  // Not a terminal here: give ink's chalk colours so "off" proves the components add none of their own.
  const level = chalk.level;
  chalk.level = 1;
  t.after(() => {
    chalk.level = level;
  });
  const on = render(<App snapshot={FAILING} color={true} onQuit={noop} onSweep={noop} onRetry={noop} />);
  const off = render(<App snapshot={FAILING} color={false} onQuit={noop} onSweep={noop} onRetry={noop} />);
  const a = on.lastFrame() ?? '';
  const b = off.lastFrame() ?? '';
  on.unmount();
  off.unmount();
  assert.match(a, /\[3[12]m/);
  // The failed count of the last run (3 failed) is red.
  assert.match(a, /\[31m3 failed/);
  assert.doesNotMatch(b, /\[3[0-9]m/);
});

test('keys: q quits, s sweeps, ? toggles help, r asks y/n and only y retries', async () => {
  const calls: string[] = [];
  const app = render(
    <App
      snapshot={FAILING}
      color={false}
      onQuit={() => calls.push('quit')}
      onSweep={() => calls.push('sweep')}
      onRetry={() => calls.push('retry')}
    />,
  );
  const press = async (k: string) => {
    app.stdin.write(k);
    await sleep(20);
  };
  /** Waits until the screen shows (or stops showing) `re`: ink throttles its frames. */
  const screen = async (re: RegExp, shown = true) => {
    for (let i = 0; i < 100 && re.test(plain(app.lastFrame())) !== shown; i++) await sleep(20);
    assert.equal(re.test(plain(app.lastFrame())), shown, `${re} ${shown ? 'shown' : 'gone'}`);
  };
  await sleep(30);
  await press('s');
  assert.deepEqual(calls, ['sweep']);
  await press('?');
  await screen(/r retry failed and backed-off entries/);
  await press('?');
  await screen(/r retry failed and backed-off entries/, false);
  await press('r');
  await screen(/retry 7 failing entries now\? \(y\/n\)/);
  assert.deepEqual(calls, ['sweep'], 'r alone retries nothing');
  await press('n');
  await screen(/\(y\/n\)/, false);
  assert.deepEqual(calls, ['sweep'], 'n retries nothing');
  await press('r');
  await screen(/\(y\/n\)/);
  await press('y');
  await screen(/\(y\/n\)/, false);
  assert.deepEqual(calls, ['sweep', 'retry']);
  await press('q');
  assert.deepEqual(calls, ['sweep', 'retry', 'quit']);
  app.unmount();
});

test('streamer /metrics text becomes misses, hits, joins, checksum failures', () => {
  const v = streamerView(
    [
      '# TYPE pulp_lazy_streamer_requests_total counter',
      'pulp_lazy_streamer_requests_total{outcome="storage"} 7',
      'pulp_lazy_streamer_requests_total{outcome="streamed"} 3',
      'pulp_lazy_streamer_upstream_fetches_total{result="ok"} 2',
      'pulp_lazy_streamer_upstream_fetches_total{result="error"} 1',
      'pulp_lazy_streamer_single_flight_joins_total 4',
      'pulp_lazy_streamer_checksum_failures_total 1',
      'pulp_lazy_streamer_flights_active 0',
    ].join('\n'),
  );
  assert.deepEqual(v, { misses: 3, hits: 7, joins: 4, checksumFailures: 1, activeFlights: 0 });
});

test('the real "top" with stdout not a terminal prints one plain snapshot of a database with data', async () => {
  const env = await testEnv('tui-top');
  const d = await connect(mongoUrl(), env.dbName);
  await migrate(d);
  const now = new Date();
  await d.repos.insertOne({
    _id: 'alpha',
    type: 'file',
    feed: 'http://127.0.0.1:1/alpha/',
    importer_id: 'alpha',
    upstream: {},
    published_path: 'alpha',
    created_at: now,
  } as never);
  for (let i = 0; i < 4; i++) {
    await d.units.insertOne({
      _id: `unit${i}`,
      unit_type_id: 'iso',
      unit_key: { i },
      files: [],
      downloaded: i < 1,
      created_at: now,
    });
    await d.repoContentUnits.insertOne({
      repo_id: 'alpha',
      unit_id: `unit${i}`,
      unit_type_id: 'iso',
      relative_path: `f${i}`,
    });
  }
  const old = new Date(now.getTime() - 3_600_000);
  await d.deferred.insertMany([
    {
      _id: deferredId({ unit_id: 'unit1', unit_type_id: 'iso' }),
      unit_id: 'unit1',
      unit_type_id: 'iso',
      state: 'failed',
      created_at: old,
      attempts: 10,
      last_error: 'upstream answered 404',
      next_attempt_at: now,
    },
    {
      _id: deferredId({ unit_id: 'unit2', unit_type_id: 'iso' }),
      unit_id: 'unit2',
      unit_type_id: 'iso',
      state: 'pending',
      created_at: now,
      attempts: 0,
      next_attempt_at: now,
    },
    {
      _id: deferredId({ unit_id: 'unit3', unit_type_id: 'iso' }),
      unit_id: 'unit3',
      unit_type_id: 'iso',
      state: 'pending',
      created_at: now,
      attempts: 0,
      next_attempt_at: now,
    },
  ]);
  await d.close();
  const r = await runCli(['top'], { env: env.env });
  await (async () => {
    const c = await connect(mongoUrl(), env.dbName);
    await c.db.dropDatabase();
    await c.close();
  })();
  assert.equal(r.code, 0, r.stderr);
  assert.doesNotMatch(r.stdout, ANSI);
  assert.match(r.stdout, /pulp-lazy top \d\d:\d\d:\d\d/);
  assert.match(r.stdout, /content down .* proxies down/);
  assert.match(r.stdout, /queue: 3 total, 2 ready, 0 waiting, 0 leased, 1 failed, oldest (1h|60m)/);
  assert.match(r.stdout, /alpha +\[#{6}-{18}\] +25% 1\/4/);
  assert.match(r.stdout, /unit1 parked, 10 tries: upstream answered 404/);
  assert.match(r.stdout, /streamer: \/metrics not reachable/);
});
