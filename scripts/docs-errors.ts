/**
 * Regenerates docs/errors.md from src/error-codes.ts (`npm run docs:errors`).
 * test/error-codes.test.ts fails when the file differs from what this writes.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { ERROR_CODES } from '../src/error-codes.ts';

export const ERRORS_DOC = path.resolve(import.meta.dirname, '../docs/errors.md');

export function renderErrorsDoc(): string {
  const rows = Object.entries(ERROR_CODES).map(
    ([code, e]) => `| \`${code}\` | ${e.status} | ${e.exitCode} | ${e.summary.replaceAll('|', '\\|')} |`,
  );
  return [
    '# Error codes',
    '',
    '<!-- Generated from src/error-codes.ts by `npm run docs:errors`; do not edit. -->',
    '',
    "Every error of pulp-lazy carries one of these codes: in the JSON body of a daemon's error answer",
    '(`code`) and in the `err.code` of a log line. The HTTP status is what a daemon answers with, the exit',
    'code what the CLI exits with (1: the operation failed, 2: usage or configuration, 130: interrupted).',
    "A download task that passes on the streamer's code keeps the status the streamer answered with.",
    '',
    '| Code | HTTP status | Exit code | Meaning |',
    '| --- | --- | --- | --- |',
    ...rows,
    '',
  ].join('\n');
}

if (process.argv[1] && path.resolve(process.argv[1]) === import.meta.filename) {
  writeFileSync(ERRORS_DOC, renderErrorsDoc());
  console.log(ERRORS_DOC);
}
