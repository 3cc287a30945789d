/**
 * Test entry point (`npm test`): starts one dev database for the whole run
 * unless MONGODB_URL names a server, then runs node's test runner, then
 * stops the database.
 *
 *   npm test                                     all tests: test/*.test.ts, then test/reliability/
 *   npm test -- test/config.test.ts              some files (any folder)
 *   npm run test:long                            the same with PULP_LAZY_LONG=1 (long load test)
 *
 * The reliability suite (test/reliability/*.test.ts: load, faults, disk
 * full, fuzz, scale-out) runs after the flat suite, one file at a time
 * (TEST_RELIABILITY_CONCURRENCY, default 1): its load and fault tests
 * saturate the machine and would starve the timing of whatever ran beside
 * them. Files named on the command line run in one pass.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startDevDb } from '../src/devdb.ts';

const root = path.resolve(import.meta.dirname, '..');
const args = process.argv.slice(2);

async function testFiles(dir: string): Promise<string[]> {
  const names = await readdir(path.join(root, dir)).catch(() => [] as string[]);
  return names
    .filter((f) => f.endsWith('.test.ts') || f.endsWith('.test.tsx'))
    .sort()
    .map((f) => path.join(dir, f));
}

const env = { ...process.env };
const concurrency = env.TEST_CONCURRENCY ?? '2';
const passes: Array<{ files: string[]; concurrency: string }> = args.length
  ? [{ files: args, concurrency }]
  : [
      { files: await testFiles('test'), concurrency },
      {
        files: await testFiles(path.join('test', 'reliability')),
        concurrency: env.TEST_RELIABILITY_CONCURRENCY ?? '1',
      },
    ].filter((p) => p.files.length > 0);

let stopDb: (() => Promise<void>) | undefined;
let tmp: string | undefined;
if (!env.MONGODB_URL) {
  tmp = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-testdb-'));
  const db = await startDevDb({ dataDir: path.join(tmp, 'data'), stderr: 'ignore' });
  env.MONGODB_URL = db.url;
  stopDb = db.stop;
  console.log(`# test database: FerretDB launcher at ${db.url}`);
} else {
  console.log('# test database: MONGODB_URL from the environment');
}

function runPass(files: string[], n: string): Promise<number> {
  const child = spawn(
    process.execPath,
    ['--import', 'tsx', '--test', `--test-concurrency=${n}`, '--test-reporter=spec', ...files],
    { cwd: root, env, stdio: 'inherit' },
  );
  return new Promise<number>((resolve) => child.on('exit', (c, sig) => resolve(c ?? (sig ? 1 : 0))));
}

let code = 0;
for (const pass of passes) {
  if (passes.length > 1) console.log(`# ${pass.files.length} files, concurrency ${pass.concurrency}`);
  const c = await runPass(pass.files, pass.concurrency);
  if (c !== 0) code = c;
}
await stopDb?.();
if (tmp) await rm(tmp, { recursive: true, force: true });
process.exit(code);
