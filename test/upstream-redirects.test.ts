/**
 * Upstream redirects, the same rules for a sync (PULP_MANIFEST) and for a
 * file fetched by the streamer (a miss through `serve`, a sweep): 301, 302,
 * 303, 307 and 308 followed, relative Locations, to another host, http to
 * https; at most 5; loops and https to http refused (PL_UPSTREAM_REDIRECT);
 * basic auth and the client certificate only for the feed's own origin; a
 * unit is saved under its own path whatever URL answered.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { edgeRepo, manifestOf, serveEdge, sweepEdge, syncEdge } from './helpers/edge-repo.ts';
import {
  type EdgeRequest,
  redirect,
  redirectChain,
  sized,
  startEdgeUpstream,
} from './helpers/edge-upstream.ts';
import { bytes, eventually, exists, fetchRaw } from './helpers/streamer.ts';

const dir = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-redirects-'));
after(() => rm(dir, { recursive: true, force: true }));
const edge = await startEdgeUpstream(dir);
const AUTH = 'joe:s3cret-pass';
const AUTH_HEADER = `Basic ${Buffer.from(AUTH).toString('base64')}`;

// The repository at /f/: its manifest through 5 redirects of every kind, and files that redirect.
const files = new Map<string, Buffer>();
const twin = bytes(20_000, 2);
const add = (name: string, body: Buffer) => files.set(name, body);
add('plain.bin', bytes(30_000, 1));
add('relative.bin', bytes(40_000, 3));
add('twin-a.bin', twin);
add('twin-b.bin', twin);
add('other.bin', bytes(50_000, 4));
add('tls.bin', bytes(60_000, 5));
add('five.bin', bytes(70_000, 6));
add('six.bin', bytes(10_000, 7));
add('loop.bin', bytes(10_000, 8));
add('down.bin', bytes(10_000, 9));
const GOOD = ['plain.bin', 'relative.bin', 'twin-a.bin', 'other.bin', 'tls.bin', 'five.bin'];
const REFUSED: Record<string, RegExp> = {
  'six.bin': /more than 5 redirects refused/,
  'loop.bin': /redirect loop refused/,
  'down.bin': /redirect from https to http refused/,
};
const r = edge.routes;
const body = (name: string) => files.get(name)!;
r.set('/f/PULP_MANIFEST', redirect(301, 'm/1'));
r.set('/f/m/1', redirect(302, '/f/m/2'));
r.set('/f/m/2', redirect(303, `${edge.other}/m/3`));
r.set('/m/3', redirect(307, `${edge.tls}/m/4`));
r.set('/m/4', redirect(308, 'manifest'));
r.set('/m/manifest', sized(manifestOf(files)));
r.set('/f/plain.bin', sized(body('plain.bin')));
r.set('/f/relative.bin', redirect(302, 'blobs/relative.bin?x=1#frag'));
r.set('/f/blobs/relative.bin', sized(body('relative.bin')));
// twin-a.bin answers with the file of another unit (same bytes, another name).
r.set('/f/twin-a.bin', redirect(302, 'twin-b.bin'));
r.set('/f/twin-b.bin', sized(twin));
r.set('/f/other.bin', redirect(307, `${edge.other}/o/other.bin`));
r.set('/o/other.bin', sized(body('other.bin')));
r.set('/f/tls.bin', redirect(301, `${edge.tls}/t/tls.bin`));
r.set('/t/tls.bin', sized(body('tls.bin')));
r.set('/f/five.bin', redirect(302, redirectChain(edge, '/f/c5', 4, '/f/blobs/five.bin')));
r.set('/f/blobs/five.bin', sized(body('five.bin')));
r.set('/f/six.bin', redirect(302, redirectChain(edge, '/f/c6', 5, '/f/blobs/six.bin')));
r.set('/f/blobs/six.bin', sized(body('six.bin')));
r.set('/f/loop.bin', redirect(302, 'loop2.bin'));
r.set('/f/loop2.bin', redirect(302, 'loop.bin'));
// https to http, with credentials written into the Location (never shown).
r.set('/f/down.bin', redirect(302, `${edge.tls}/t/down.bin`));
r.set(
  '/t/down.bin',
  redirect(302, `http://eve:leaked-pw@127.0.0.1:${new URL(edge.base).port}/f/blobs/down.bin`),
);
r.set('/f/blobs/down.bin', sized(body('down.bin')));

const feed = `${edge.base}/f/`;
/** The repository's settings: basic auth, the CA of the TLS listener and a client certificate. */
const settings = {
  basicAuth: AUTH,
  upstream: { ca_cert: edge.pki.ca, client_cert: edge.pki.clientCert, client_key: edge.pki.clientKey },
};

/** Requests since `from`, with `path` among them or not. */
const since = (from: number) => edge.requests.slice(from);

/** Every request to another origin than `origin` came without Authorization or client certificate; those to it with. */
function assertCredentialsOnlyFor(origin: 'base' | 'tls', reqs: EdgeRequest[]): void {
  assert.ok(reqs.length > 0);
  for (const q of reqs) {
    const what = `${q.listener} ${q.path}`;
    assert.equal(q.headers['accept-encoding'], 'identity', what);
    if (q.listener === origin) {
      assert.equal(q.headers.authorization, AUTH_HEADER, `credentials sent to the feed's origin: ${what}`);
    } else {
      assert.equal(q.headers.authorization, undefined, `no credentials for ${what}`);
      assert.equal(q.clientCert, false, `no client certificate for ${what}`);
    }
  }
  assert.ok(
    reqs.some((q) => q.listener !== origin),
    'some requests went to other origins',
  );
}

test('sync: PULP_MANIFEST through 5 redirects (every status, relative, another host, http to https), credentials only for the feed', async () => {
  const from = edge.requests.length;
  const repo = await edgeRepo('redir-sync', feed, files, settings);
  const s = await syncEdge(repo);
  assert.equal(s.units, files.size);
  assert.equal(await repo.db.units.countDocuments({ downloaded: false }), files.size);
  const reqs = since(from);
  assert.deepEqual(
    reqs.map((q) => `${q.listener} ${q.method} ${q.path}`),
    [
      'base GET /f/PULP_MANIFEST',
      'base GET /f/m/1',
      'base GET /f/m/2',
      'other GET /m/3',
      'tls GET /m/4',
      'tls GET /m/manifest',
    ],
    'a 303 and every other redirect stays a GET',
  );
  assertCredentialsOnlyFor('base', reqs);
  assert.deepEqual(await repo.temps(), []);
});

test('sync of an https feed: client certificate and credentials for it, neither after a redirect to another https origin', async () => {
  r.set('/tf/PULP_MANIFEST', redirect(302, `${edge.tls2}/tf-other/PULP_MANIFEST`));
  r.set('/tf-other/PULP_MANIFEST', sized(manifestOf(new Map([['plain.bin', body('plain.bin')]]))));
  const from = edge.requests.length;
  const repo = await edgeRepo('redir-tlsfeed', `${edge.tls}/tf/`, files, settings);
  assert.equal((await syncEdge(repo)).units, 1);
  const reqs = since(from);
  assert.deepEqual(
    reqs.map((q) => [q.listener, q.clientCert]),
    [
      ['tls', true],
      ['tls2', false],
    ],
  );
  assertCredentialsOnlyFor('tls', reqs);
});

for (const [label, start, why] of [
  ['6 redirects', () => redirectChain(edge, '/s6', 5, '/m/manifest'), /more than 5 redirects refused/],
  ['a loop', () => redirectChain(edge, '/sl', 3, '/sl/1'), /redirect loop refused/],
  [
    'https to http',
    () => redirectChain(edge, '/sd', 1, `${edge.tls}/sd-tls/PULP_MANIFEST`),
    /from https to http/,
  ],
] as const) {
  test(`sync: a manifest behind ${label} fails with PL_UPSTREAM_REDIRECT, nothing synced`, async () => {
    const first = start();
    const prefix = first.slice(0, first.lastIndexOf('/'));
    // The feed's manifest is the chain's first hop.
    r.set(`${prefix}/feed/PULP_MANIFEST`, redirect(302, first));
    r.set(
      '/sd-tls/PULP_MANIFEST',
      redirect(302, `http://eve:leaked-pw@127.0.0.2:${new URL(edge.other).port}/m/manifest`),
    );
    const repo = await edgeRepo(
      `redir-${label.replace(/\W/g, '')}`,
      `${edge.base}${prefix}/feed/`,
      files,
      settings,
    );
    const from = edge.requests.length;
    await assert.rejects(syncEdge(repo), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'PL_UPSTREAM_REDIRECT');
      assert.match(err.message, /^cannot fetch http:\/\/127\.0\.0\.1:\d+\/.*\/feed\/PULP_MANIFEST: /);
      assert.match(err.message, why);
      assert.doesNotMatch(err.message, /leaked-pw|s3cret/, 'no password in the message');
      assert.doesNotMatch(err.message, /\n/);
      return true;
    });
    assert.ok(
      since(from).every((q) => q.path !== '/m/manifest'),
      'the refused target was never requested',
    );
    assert.equal(await repo.db.units.countDocuments({}), 0);
    assert.equal(await repo.db.catalog.countDocuments({}), 0);
    assert.deepEqual(await repo.temps(), []);
  });
}

test('sync: a redirect to a host that refuses the connection names both URLs (FeedUnreachable)', async () => {
  r.set('/gone/PULP_MANIFEST', redirect(302, 'http://127.0.0.2:9/moved/PULP_MANIFEST'));
  const repo = await edgeRepo('redir-gone', `${edge.base}/gone/`, files, settings);
  await assert.rejects(syncEdge(repo), (err: Error & { code?: string }) => {
    assert.equal(err.code, 'PL_FEED_UNREACHABLE');
    assert.match(
      err.message,
      /^cannot fetch http:\/\/127\.0\.0\.1:\d+\/gone\/PULP_MANIFEST \(redirected to http:\/\/127\.0\.0\.2:9\/moved\/PULP_MANIFEST\): .*ECONNREFUSED/,
    );
    return true;
  });
  assert.equal(await repo.db.units.countDocuments({}), 0);
});

test('miss through serve: redirected files are streamed, verified and saved under their own unit; refused redirects are 502', async () => {
  const repo = await edgeRepo('redir-serve', feed, files, settings);
  await syncEdge(repo);
  const base = await serveEdge(repo);
  const from = edge.requests.length;
  for (const name of GOOD) {
    const got = await fetchRaw(`${base}/pulp/content/r/${name}`);
    assert.equal(got.status, 200, name);
    assert.ok(got.complete && got.body.equals(body(name)), `${name}: the bytes`);
    assert.ok((await readFile(repo.storagePath(name))).equals(body(name)), `${name}: saved`);
    assert.equal((await repo.unitOf(name))?.downloaded, true, name);
  }
  // twin-a.bin was answered by twin-b.bin's URL: saved as twin-a's unit only.
  assert.notEqual(repo.storagePath('twin-a.bin'), repo.storagePath('twin-b.bin'));
  assert.equal(await exists(repo.storagePath('twin-b.bin')), false, "nothing saved under the target's unit");
  assert.equal((await repo.unitOf('twin-b.bin'))?.downloaded, false);
  for (const [name, why] of Object.entries(REFUSED)) {
    const got = await fetchRaw(`${base}/pulp/content/r/${name}`);
    assert.equal(got.status, 502, name);
    const err = JSON.parse(got.body.toString()) as { code: string; message: string };
    assert.equal(err.code, 'PL_UPSTREAM_REDIRECT', name);
    assert.match(err.message, why);
    assert.doesNotMatch(err.message, /leaked-pw|s3cret/);
    assert.equal(await exists(repo.storagePath(name)), false, `${name}: nothing saved`);
    assert.equal((await repo.unitOf(name))?.downloaded, false, name);
  }
  const reqs = since(from);
  assert.ok(reqs.every((q) => q.path !== '/f/blobs/six.bin' && q.path !== '/f/blobs/down.bin'));
  assertCredentialsOnlyFor('base', reqs);
  // A failed fetch removes its temp file once its client has the 502.
  await eventually(async () => (await repo.temps()).length === 0, 'no temp file left');
  const again = await fetchRaw(`${base}/pulp/content/r/plain.bin`);
  assert.equal(again.status, 200, 'serve still answers');
});

test('sweep: redirected files are stored under their own unit; refused redirects fail their units', async () => {
  const repo = await edgeRepo('redir-sweep', feed, files, settings);
  await syncEdge(repo);
  const from = edge.requests.length;
  const s = await sweepEdge(repo);
  assert.deepEqual(
    s.failed.map((f) => f.unit_id).sort(),
    await Promise.all(Object.keys(REFUSED).map(async (n) => (await repo.unitOf(n))!._id)).then((ids) =>
      ids.sort(),
    ),
  );
  for (const f of s.failed) assert.match(f.error, /PL_UPSTREAM_REDIRECT|redirect/);
  for (const name of [...GOOD, 'twin-b.bin']) {
    assert.ok((await readFile(repo.storagePath(name))).equals(body(name)), `${name}: saved`);
    assert.equal((await repo.unitOf(name))?.downloaded, true, name);
  }
  for (const name of Object.keys(REFUSED)) {
    assert.equal(await exists(repo.storagePath(name)), false, `${name}: nothing saved`);
    assert.equal((await repo.unitOf(name))?.downloaded, false, name);
  }
  assertCredentialsOnlyFor('base', since(from));
  assert.deepEqual(await repo.temps(), [], 'no temp file left');
});
