/**
 * Scheduled and requested syncs (issue #22, "Scheduled sync"), run by real
 * `pulp-lazy run scheduler` daemons against real file upstreams and the test
 * database: two schedulers sync each due repository once per interval slot;
 * a failing upstream is retried with a doubling backoff, shown by
 * `repo list --json` and /metrics, until it recovers; a requested sync runs
 * once and is cleared, and a request made during a sync stays for the next.
 * Intervals below the CLI's 1-minute floor are set in the database directly.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import http from 'node:http';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Database, RepoDoc } from '../src/db/index.ts';
import { requestSync } from '../src/repos/index.ts';
import { jitterMs, type SyncView } from '../src/scheduler/plan.ts';
import { type RunningDaemon, runCli, runDaemon } from './helpers/cli.ts';
import { request } from './helpers/http.ts';
import { type TaskEnv, taskEnv } from './helpers/tasks.ts';
import { hitsMatching, listenForTestFile, startUpstream } from './helpers/upstream.ts';

const RETRY_MIN_MS = 1000;

async function schedulerEnv(label: string): Promise<{ env: TaskEnv; db: Database }> {
  const env = await taskEnv(label, {
    log: { level: 'info' },
    sync: { check_interval: '200ms', retry_min: `${RETRY_MIN_MS}ms`, metrics_listen: '127.0.0.1:0' },
  });
  return { env, db: env.db };
}

/** A one-file manifest repository on `up` under /<name>/. */
function manifestFor(name: string): [string, string][] {
  const body = `file of ${name}\n`;
  const sha = createHash('sha256').update(body).digest('hex');
  return [
    [`/${name}/PULP_MANIFEST`, `a.txt,${sha},${body.length}\n`],
    [`/${name}/a.txt`, body],
  ];
}

async function createRepo(env: TaskEnv, name: string, feed: string): Promise<void> {
  const r = await runCli(['repo', 'create', name, '--type', 'file', '--feed', feed], { env: env.env });
  assert.equal(r.code, 0, r.stderr);
}

/** Sets the interval directly (the CLI refuses less than a minute). */
async function setSyncInterval(db: Database, name: string, ms: number): Promise<void> {
  await db.repos.updateOne({ _id: name }, { $set: { sync_interval_ms: ms } });
}

const startScheduler = (env: TaskEnv) => runDaemon('scheduler', env.env, 'scheduler listening');

async function waitFor(what: string, daemons: RunningDaemon[], cond: () => Promise<boolean>): Promise<void> {
  for (let waited = 0; !(await cond()); waited += 100) {
    for (const d of daemons)
      assert.equal(d.child.exitCode, null, `scheduler exited while waiting for ${what}`);
    assert.ok(waited < 90_000, `waiting for ${what}`);
    await sleep(100);
  }
}

async function stop(d: RunningDaemon): Promise<void> {
  d.child.kill('SIGTERM');
  assert.deepEqual(await d.exited, { code: 0, signal: null });
}

const events = (daemons: RunningDaemon[], event: string, repo?: string) =>
  daemons.flatMap((d) => d.logs).filter((l) => l.event === event && (repo === undefined || l.repo === repo));

async function listJson(env: TaskEnv): Promise<Map<string, { sync: SyncView }>> {
  const r = await runCli(['repo', 'list', '--json'], { env: env.env });
  assert.equal(r.code, 0, r.stderr);
  return new Map((JSON.parse(r.stdout) as Array<{ name: string; sync: SyncView }>).map((x) => [x.name, x]));
}

const repoDoc = async (db: Database, name: string): Promise<RepoDoc> =>
  (await db.repos.findOne({ _id: name }))!;

test('two schedulers: each due repository is synced once per interval, never twice in one', async () => {
  const { env, db } = await schedulerEnv('sched-two');
  const names = ['alpha', 'beta', 'gamma'];
  const up = await startUpstream(new Map(names.flatMap(manifestFor)));
  const intervalMs = 3000;
  for (const n of names) {
    await createRepo(env, n, `${up.url}${n}/`);
    await setSyncInterval(db, n, intervalMs);
  }
  await createRepo(env, 'manual', `${up.url}alpha/`); // no interval: never synced by a scheduler
  const daemons = [await startScheduler(env), await startScheduler(env)];
  const manifestGets = (n: string) => hitsMatching(up, new RegExp(`^/${n}/PULP_MANIFEST$`));
  await waitFor('three syncs of each repository', daemons, async () =>
    names.every((n) => manifestGets(n) >= 3),
  );
  for (const d of daemons) await stop(d);

  for (const n of names) {
    const synced = events(daemons, 'scheduled_sync.finished', n);
    assert.equal(events(daemons, 'scheduled_sync.failed', n).length, 0);
    // Every sync fetched the manifest once, and no manifest GET came from anything else.
    assert.equal(manifestGets(n), synced.length, `${n}: one manifest GET per scheduled sync`);
    // At most one sync per slot of the interval (slots are shifted by the repository's jitter).
    const slots = synced.map((l) =>
      Math.floor((Date.parse(String(l.started_at)) - jitterMs(n, intervalMs)) / intervalMs),
    );
    assert.equal(
      new Set(slots).size,
      slots.length,
      `${n}: two syncs in one interval: ${JSON.stringify(synced)}`,
    );
    assert.equal(new Set(synced.map((l) => l.key)).size, synced.length, `${n}: a claim taken twice`);
    const doc = await repoDoc(db, n);
    assert.equal(doc.sync_state?.last_result, 'ok');
    assert.equal(doc.sync_state?.failures, 0);
  }
  assert.equal(events(daemons, 'scheduled_sync.started', 'manual').length, 0);
  assert.equal((await repoDoc(db, 'manual')).sync_state, undefined);
  const list = await listJson(env);
  const alpha = list.get('alpha')!.sync;
  assert.equal(alpha.last_result, 'ok');
  assert.equal(alpha.next_reason, 'interval');
  assert.ok(Date.parse(alpha.next_at!) > Date.parse(alpha.last_started_at!));
  assert.equal(list.get('manual')!.sync.next_at, null);
});

test('a failing upstream is retried with a doubling backoff, shown by repo list --json and /metrics, until it recovers', async () => {
  const { env, db } = await schedulerEnv('sched-fail');
  const up = await startUpstream(new Map()); // no manifest yet: 404
  await createRepo(env, 'broken', `${up.url}broken/`);
  await setSyncInterval(db, 'broken', 3_600_000);
  const d = await startScheduler(env);
  await waitFor(
    'three failed syncs',
    [d],
    async () => ((await repoDoc(db, 'broken')).sync_state?.failures ?? 0) >= 3,
  );
  const state = (await repoDoc(db, 'broken')).sync_state!;

  const view = (await listJson(env)).get('broken')!.sync;
  assert.equal(view.last_result, 'failed');
  assert.match(view.last_error!, /404/);
  assert.equal(view.next_reason, 'retry');
  assert.equal(view.failures, state.failures);
  // The next retry waits retry_min × 2^(failures-1) after the last failure.
  assert.equal(
    Date.parse(view.next_at!) - Date.parse(view.last_finished_at!),
    RETRY_MIN_MS * 2 ** (view.failures - 1),
  );
  const metrics = (await request(`http://${d.listen}/metrics`)).body.toString();
  assert.match(
    metrics,
    new RegExp(`^pulp_lazy_repo_sync_failures\\{repo="broken"\\} ${view.failures}$`, 'm'),
  );
  assert.match(metrics, /^pulp_lazy_repo_last_sync_success\{repo="broken"\} 0$/m);
  assert.match(
    metrics,
    new RegExp(
      `^pulp_lazy_repo_next_sync_timestamp_seconds\\{repo="broken"\\} ${Date.parse(view.next_at!) / 1000}$`,
      'm',
    ),
  );

  const top = await runCli(['top', '--once'], { env: env.env });
  assert.equal(top.code, 0, top.stderr);
  assert.match(top.stdout, /broken .* failed x\d+, retry (\d+s|now)\n/);

  // Each attempt started no earlier than the backoff after the previous one.
  const starts = events([d], 'scheduled_sync.started', 'broken').map((l) => Date.parse(String(l.time)));
  for (let k = 1; k < starts.length; k++)
    assert.ok(
      starts[k]! - starts[k - 1]! >= RETRY_MIN_MS * 2 ** (k - 1),
      `attempt ${k + 1} came early: ${starts}`,
    );

  // The upstream recovers: the next retry succeeds and the failures are reset.
  for (const [p, body] of manifestFor('broken')) up.files.set(p, body);
  await waitFor(
    'a successful sync',
    [d],
    async () => (await repoDoc(db, 'broken')).sync_state?.last_result === 'ok',
  );
  await stop(d);
  const ok = (await listJson(env)).get('broken')!.sync;
  assert.equal(ok.failures, 0);
  assert.equal(ok.next_reason, 'interval');
  assert.equal(hitsMatching(up, /PULP_MANIFEST$/), events([d], 'scheduled_sync.started', 'broken').length);
});

test('a requested sync runs once and is cleared; a request made during the sync stays for the next one', async () => {
  const { env, db } = await schedulerEnv('sched-req');
  const files = new Map([...manifestFor('drift'), ...manifestFor('later')]);
  let manifestGets = 0;
  // The first manifest GET of "drift" asks for another sync before it answers: during the sync.
  const server = http.createServer(async (req, res) => {
    const p = req.url ?? '/';
    if (p === '/drift/PULP_MANIFEST' && ++manifestGets === 1)
      assert.equal(await requestSync(db, 'drift', 'requested during the sync'), true);
    const body = files.get(p);
    res.writeHead(body === undefined ? 404 : 200).end(body);
  });
  const base = `http://127.0.0.1:${await listenForTestFile(server)}`;
  await createRepo(env, 'drift', `${base}/drift/`);
  await createRepo(env, 'later', `${base}/later/`);
  const d = await startScheduler(env);

  assert.equal(await requestSync(db, 'drift', 'upstream file gone'), true);
  assert.equal(await requestSync(db, 'drift', 'again'), false, 'debounced: one pending request');
  assert.equal((await repoDoc(db, 'drift')).sync_requested?.reason, 'upstream file gone');
  await waitFor('two syncs of drift', [d], async () => {
    const r = await repoDoc(db, 'drift');
    return manifestGets >= 2 && r.sync_state?.last_result === 'ok' && !r.sync_requested;
  });
  // Another request, later: once it is done, the scheduler has checked again and again since.
  assert.equal(await requestSync(db, 'later', 'test'), true);
  await waitFor(
    'the sync of later',
    [d],
    async () => (await repoDoc(db, 'later')).sync_state?.last_result === 'ok',
  );
  await stop(d);

  assert.equal(manifestGets, 2, 'drift: the first request and the one made during its sync, once each');
  const started = events([d], 'scheduled_sync.started');
  assert.deepEqual(
    started.map((l) => [l.repo, l.reason]),
    [
      ['drift', 'request'],
      ['drift', 'request'],
      ['later', 'request'],
    ],
  );
  const list = await listJson(env);
  assert.equal(list.get('drift')!.sync.requested, null);
  assert.equal(list.get('drift')!.sync.next_at, null, 'no interval, no request: nothing scheduled');
});
