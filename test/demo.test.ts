/**
 * The README's "run the main job" command: `pulp-lazy demo`, without
 * MONGODB_URL, starts its own development database and shows a miss then a hit.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { runCli } from './helpers/cli.ts';
import { freePort } from './helpers/proxies.ts';

test('demo --once: dev database started by itself, lazy sync, miss then hit, twice in a row', async (t) => {
  const root = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-demo-test-'));
  t.after(() => rm(root, { recursive: true, force: true }));
  const env = { ...process.env };
  delete env.MONGODB_URL;
  delete env.PULP_LAZY_CONFIG;
  for (let run = 0; run < 2; run++) {
    const port = await freePort();
    const r = await runCli(['demo', '--root', root, '--once', '--port', String(port), '--files', '6'], {
      env,
    });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /database: development FerretDB at mongodb:\/\/127\.0\.0\.1:\d+\//);
    // Storage persists between runs: the file fetched by the first run stays downloaded.
    assert.match(
      r.stdout,
      new RegExp(`sync: 6 units, 6 published links, ${run} downloaded, 0 package bytes fetched`),
    );
    assert.match(
      r.stdout,
      /miss: GET \S+ → 200, \d+ bytes in [\d.]+ ms, bytes match upstream, upstream GETs: 1/,
    );
    assert.match(
      r.stdout,
      /hit : GET \S+ → 200, \d+ bytes in [\d.]+ ms, bytes match upstream, upstream GETs: 0/,
    );
    assert.match(r.stdout, /downloaded=true/);
  }
});

test('demo: bad --port is a one-line usage error', async () => {
  const r = await runCli(['demo', '--port', 'eighty', '--once']);
  assert.equal(r.code, 2);
  assert.equal(r.stderr.trim(), 'pulp-lazy: bad --port "eighty"');
});
