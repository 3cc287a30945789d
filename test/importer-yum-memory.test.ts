/**
 * A 60,000-package primary.xml.gz (generated as text, no rpmbuild) syncs
 * with bounded memory: the CLI runs under /usr/bin/time (package `time`),
 * which reports the peak RSS of the sync process.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { execa } from 'execa';
import { connect } from '../src/db/index.ts';
import { BIN, ROOT, runCli } from './helpers/cli.ts';
import { mongoUrl } from './helpers/db.ts';
import { testEnv } from './helpers/env.ts';
import { startUpstream } from './helpers/upstream.ts';
import { generateYumRepo } from './helpers/yum-primary.ts';

const PACKAGES = 60_000;
/**
 * The sync runs with a V8 heap capped at HEAP_MIB: a sync that held the
 * 78 MiB (two-byte once decoded: ~155 MiB) primary.xml in memory, or a
 * DOM of it, dies of heap exhaustion. The plan itself (one small record per
 * package) needs ~130 MiB at 60,000 packages. RSS_LIMIT_MIB is generous;
 * the measured peak is reported in the test output.
 */
const HEAP_MIB = 192;
const RSS_LIMIT_MIB = 384;

test(`a ${PACKAGES}-package primary.xml.gz syncs with bounded memory`, async (t) => {
  const env = await testEnv('yummem');
  const work = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-yummem-'));
  after(() => rm(work, { recursive: true, force: true }));
  const repo = await generateYumRepo(PACKAGES, work);
  const up = await startUpstream(new Map([...repo.files].map(([p, body]) => [`/big/${p}`, body])));
  assert.equal(
    (await runCli(['repo', 'create', 'big', '--type', 'yum', '--feed', `${up.url}big/`], { env: env.env }))
      .code,
    0,
  );

  const r = await execa(
    '/usr/bin/time',
    [
      '-f',
      'PEAK_RSS_KB=%M',
      process.execPath,
      `--max-old-space-size=${HEAP_MIB}`,
      BIN,
      'sync',
      'big',
      '--json',
    ],
    {
      env: env.env,
      cwd: ROOT,
      reject: false,
      timeout: 900_000,
    },
  );
  assert.equal(r.exitCode, 0, r.stderr);
  const summary = JSON.parse(r.stdout);
  assert.equal(summary.units, PACKAGES + 2, 'packages + primary.xml.gz + repomd.xml');
  assert.equal(summary.published, PACKAGES + 2);
  const kb = Number(/PEAK_RSS_KB=(\d+)/.exec(r.stderr)?.[1]);
  assert.ok(kb > 0, r.stderr);
  const mib = kb / 1024;
  t.diagnostic(
    `peak RSS of the sync process: ${mib.toFixed(1)} MiB for ${PACKAGES} packages (primary.xml ${(repo.openSize / 2 ** 20).toFixed(1)} MiB, .gz ${(repo.gzSize / 2 ** 20).toFixed(1)} MiB)`,
  );
  assert.ok(mib < RSS_LIMIT_MIB, `peak RSS ${mib.toFixed(1)} MiB >= ${RSS_LIMIT_MIB} MiB`);

  const db = await connect(mongoUrl(), env.dbName);
  t.after(() => db.close());
  assert.equal(await db.catalog.countDocuments({}), PACKAGES);
  assert.equal(up.hits.size, 5, 'repomd.xml, .asc, .treeinfo, treeinfo, primary: no package requested');
});
