/** download-repo's progress line: one redrawn line on a terminal, plain periodic lines otherwise. */
import assert from 'node:assert/strict';
import { PassThrough } from 'node:stream';
import { test } from 'node:test';
import type { RepoProgress } from '../src/tasks/download-repo.ts';
import {
  createProgressReporter,
  formatBytes,
  formatDuration,
  formatProgress,
} from '../src/tasks/progress.ts';

const p = (files_done: number, bytes_done: number): RepoProgress => ({
  units_total: 10,
  units_done: files_done,
  files_total: 10,
  files_done,
  bytes_total: 10 * 1024 * 1024,
  bytes_done,
  bytes_fetched: bytes_done,
  failed: 0,
});

function capture() {
  const s = new PassThrough();
  let text = '';
  s.on('data', (c: Buffer) => {
    text += c;
  });
  return { s, text: () => text };
}

test('the progress text gives files, bytes, rate and ETA', () => {
  assert.equal(formatBytes(512), '512 B');
  assert.equal(formatBytes(1536), '1.5 KiB');
  assert.equal(formatDuration(75), '1m15s');
  assert.equal(formatDuration(3725), '1h02m');
  assert.equal(
    formatProgress(p(3, 3 * 1024 * 1024), 3000),
    'files 3/10, 3.0 MiB/10.0 MiB, 1.0 MiB/s, ETA 7s',
  );
  assert.equal(
    formatProgress({ ...p(0, 0), failed: 2 }, 0),
    'files 0/10, 0 B/10.0 MiB, 0 B/s, ETA ?, 2 failed',
  );
});

test('on a terminal the line is redrawn in place, at most every 200 ms, and ended once', async () => {
  let now = 0;
  const out = capture();
  const r = createProgressReporter({ stream: out.s, tty: true, clock: () => now });
  now = 250;
  r.update(p(1, 1024 * 1024));
  now = 300;
  r.update(p(2, 2 * 1024 * 1024)); // too soon: not drawn
  now = 500;
  r.update(p(3, 3 * 1024 * 1024));
  now = 550;
  r.update(p(4, 4 * 1024 * 1024)); // too soon, but done() shows it
  r.done();
  const text = out.text();
  assert.equal(text.split('\r\x1b[K').length - 1, 3, 'two redraws and the final one');
  assert.ok(!text.includes('files 2/10'));
  assert.ok(text.includes('files 3/10, 3.0 MiB/10.0 MiB, 6.0 MiB/s, ETA 1s'));
  assert.ok(text.endsWith('files 4/10, 4.0 MiB/10.0 MiB, 7.3 MiB/s, ETA 1s\n'), JSON.stringify(text));
  assert.equal(text.split('\n').length - 1, 1, 'one newline, at the end');
});

test('elsewhere it prints plain lines at the given interval', () => {
  let now = 0;
  const out = capture();
  const r = createProgressReporter({ stream: out.s, tty: false, intervalMs: 5000, clock: () => now });
  for (let i = 1; i <= 10; i++) {
    now = i * 1000;
    r.update(p(i, i * 1024 * 1024));
  }
  r.done();
  const lines = out.text().trimEnd().split('\n');
  assert.ok(!out.text().includes('\r'));
  assert.deepEqual(
    lines.map((l) => l.split(',')[0]),
    ['files 1/10', 'files 6/10', 'files 10/10'],
  );
});
