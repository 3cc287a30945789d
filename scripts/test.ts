/**
 * Test entry point (`npm test`): starts one dev database for the whole run
 * unless MONGODB_URL names a server, then runs node's test runner over the
 * flat test/ folder, then stops the database.
 *
 *   npm test                       all tests
 *   npm test -- test/config.test.ts  some files
 */
import { spawn } from 'node:child_process';
import { mkdtemp, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { startDevDb } from '../src/devdb.ts';

const root = path.resolve(import.meta.dirname, '..');
const args = process.argv.slice(2);
const files = args.length
  ? args
  : (await readdir(path.join(root, 'test')))
      .filter((f) => f.endsWith('.test.ts') || f.endsWith('.test.tsx'))
      .sort()
      .map((f) => path.join('test', f));

let stopDb: (() => Promise<void>) | undefined;
let tmp: string | undefined;
const env = { ...process.env };
if (!env.MONGODB_URL) {
  tmp = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-testdb-'));
  const db = await startDevDb({ dataDir: path.join(tmp, 'data'), stderr: 'ignore' });
  env.MONGODB_URL = db.url;
  stopDb = db.stop;
  console.log(`# test database: FerretDB launcher at ${db.url}`);
} else {
  console.log('# test database: MONGODB_URL from the environment');
}

const concurrency = env.TEST_CONCURRENCY ?? '2';
const child = spawn(
  process.execPath,
  ['--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, '--test-reporter=spec', ...files],
  { cwd: root, env, stdio: 'inherit' },
);
const code = await new Promise<number>((resolve) =>
  child.on('exit', (c, sig) => resolve(c ?? (sig ? 1 : 0))),
);
await stopDb?.();
if (tmp) await rm(tmp, { recursive: true, force: true });
process.exit(code);
