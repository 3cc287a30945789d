/**
 * The error-code table (src/error-codes.ts, #21 §3): every code used in src/
 * is in it and every entry is used, no code is built inline, a misspelt code
 * does not compile, and docs/errors.md is what `npm run docs:errors` writes.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { ERRORS_DOC, renderErrorsDoc } from '../scripts/docs-errors.ts';
import { ERROR_CODES, isErrorCode } from '../src/error-codes.ts';
import { ConfigError, PulpLazyError, UsageError } from '../src/errors.ts';

const SRC = path.resolve(import.meta.dirname, '../src');
const TABLE = path.join(SRC, 'error-codes.ts');

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const file = path.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(file);
    return /\.tsx?$/.test(e.name) && file !== TABLE ? [file] : [];
  });
}

/** Every `'PL_…'` literal in src/ (a prefix such as 'PL_SIG_' ends in `_` and is not a code). */
function codesUsed(): Map<string, string[]> {
  const used = new Map<string, string[]>();
  for (const file of sourceFiles(SRC)) {
    for (const m of readFileSync(file, 'utf8').matchAll(/'(PL_[A-Z0-9_]*[A-Z0-9])'/g)) {
      used.set(m[1]!, [...(used.get(m[1]!) ?? []), path.relative(SRC, file)]);
    }
  }
  return used;
}

test('every code used in src/ is in the table, and every entry is used', () => {
  const used = codesUsed();
  assert.ok(used.size > 50, `found only ${used.size} codes: is the scan broken?`);
  const missing = [...used]
    .filter(([code]) => !isErrorCode(code))
    .map(([c, files]) => `${c} (${files.join(', ')})`);
  assert.deepEqual(missing, [], 'codes used in src/ but not in src/error-codes.ts');
  const unused = Object.keys(ERROR_CODES).filter((code) => !used.has(code));
  assert.deepEqual(unused, [], 'entries of src/error-codes.ts that nothing in src/ uses');
});

test('no code is built inline', () => {
  const built = sourceFiles(SRC).flatMap((file) =>
    // `PL_SIG_${string}` is a type (a subset of the table), not a built code.
    [...readFileSync(file, 'utf8').matchAll(/[`'"]PL_[A-Z0-9_]*(\$\{(?!string\})|'\s*\+|"\s*\+)/g)].map(
      (m) => `${path.relative(SRC, file)}: ${m[0]}`,
    ),
  );
  assert.deepEqual(built, []);
});

test('every entry has a status, an exit code and a one-line summary', () => {
  for (const [code, e] of Object.entries(ERROR_CODES)) {
    assert.match(code, /^PL_[A-Z0-9_]+$/);
    assert.ok(e.status >= 400 && e.status < 600, `${code}: status ${e.status}`);
    assert.ok([1, 2, 130].includes(e.exitCode), `${code}: exit code ${e.exitCode}`);
    assert.ok(e.summary.length > 0 && !e.summary.includes('\n'), `${code}: summary`);
  }
});

test('status and exit code come from the table unless overridden', () => {
  assert.deepEqual([new UsageError('x').status, new UsageError('x').exitCode], [400, 2]);
  assert.deepEqual([new ConfigError('x').status, new ConfigError('x').exitCode], [500, 2]);
  const e = new PulpLazyError('PL_UPSTREAM_TIMEOUT', 'slow');
  assert.deepEqual([e.code, e.status, e.exitCode], ['PL_UPSTREAM_TIMEOUT', 504, 1]);
  const o = new PulpLazyError('PL_FETCH_HTTP', 'x', { status: 418, exitCode: 2 });
  assert.deepEqual([o.status, o.exitCode], [418, 2]);
});

test('a misspelt code does not compile', () => {
  // Never called: checked by `tsc -p tsconfig.test.json --noEmit`, which fails if the line compiles.
  const misspelt = () =>
    // @ts-expect-error PL_REPO_NOTFOUND is not in src/error-codes.ts
    new PulpLazyError('PL_REPO_NOTFOUND', 'no such repository');
  assert.equal(typeof misspelt, 'function');
  assert.equal(isErrorCode('PL_REPO_NOTFOUND'), false);
  assert.equal(isErrorCode('PL_REPO_NOT_FOUND'), true);
});

test('docs/errors.md is what `npm run docs:errors` writes', () => {
  assert.equal(
    readFileSync(ERRORS_DOC, 'utf8'),
    renderErrorsDoc(),
    'docs/errors.md is stale: run `npm run docs:errors`',
  );
});
