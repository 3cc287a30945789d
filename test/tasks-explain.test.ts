/**
 * A task fetching through the in-process streamer (tasks.fetch = local) sees
 * only a cut connection when the streamer's fetch fails; its error names the
 * streamer's reason too (the disk-full test depends on it: the streamer may
 * run out of space before the task does).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { queueUnits, runPulp, startFaultyUpstream, syncFileRepo } from './helpers/reliability.ts';
import { bytes, taskEnv } from './helpers/tasks.ts';

test('a sweep through the local streamer reports why the streamer cut the transfer', async (t) => {
  const te = await taskEnv('explain-local', {
    tasks: { fetch: 'local', concurrency: 1, max_attempts: 100 },
    log: { level: 'warn' },
  });
  const up = await startFaultyUpstream();
  t.after(() => up.close());
  const body = bytes(256 * 1024, 'explain');
  const repo = await syncFileRepo(te.db, te.config.paths, up, 'explain', new Map([['cut/f.bin', body]]));
  const file = [...repo.values()][0]!;
  // Content-Length of the whole file, half of it, then the connection closes.
  up.modes.set('/explain/cut/f.bin', 'short');
  await queueUnits(te.db, [file.unitId]);
  const sweep = await runPulp(['sweep', '--json'], te.env);
  assert.equal(sweep.code, 1, sweep.stderr);
  const { failed } = JSON.parse(sweep.stdout) as { failed: Array<{ error: string }> };
  assert.equal(failed.length, 1, sweep.stdout);
  assert.match(failed[0]!.error, /transfer cut after/, failed[0]!.error);
  assert.match(
    failed[0]!.error,
    /; streamer: http:\/\/127\.0\.0\.1:\d+\/explain\/cut\/f\.bin: other side closed/,
    "the streamer's reason",
  );
});
