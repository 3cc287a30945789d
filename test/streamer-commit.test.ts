/**
 * Verify and commit (src/streamer/commit.ts) with a real file and the
 * database writes recorded in memory (CommitRecords is the seam; the writes
 * themselves are covered by streamer-deferred and streamer-faults): good
 * bytes are moved into storage and the unit marked or queued; bad bytes are
 * not moved, cool the entry down for failure_cooldown and record why; a
 * failed save still answers, counted as failed.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import type { CatalogEntryDoc } from '../src/db/index.ts';
import { ChecksumMismatch } from '../src/errors.ts';
import { silentLogger } from '../src/log.ts';
import {
  type CommitDeps,
  type CommitRecords,
  queueAfterFailure,
  recordVerificationFailure,
  verifyAndCommit,
} from '../src/streamer/commit.ts';
import { createStreamerMetrics } from '../src/streamer/metrics.ts';

const work = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-commit-'));
after(() => rm(work, { recursive: true, force: true }));
const bytes = Buffer.from('the file as upstream sent it\n');
const digest = createHash('sha256').update(bytes).digest('hex');
const NOW = 1_700_000_000_000;

function entry(name: string): CatalogEntryDoc {
  return {
    path: path.join(work, 'storage', name),
    importer_id: 'imp',
    unit_id: `u-${name}`,
    unit_type_id: 'file',
    url: `https://user:secret@upstream.invalid/${name}`,
    checksum: digest,
    checksum_algorithm: 'sha256',
    size: bytes.length,
    revision: 1,
  };
}

/** The database writes, recorded; `downloaded` answers `unitDone`; `failing` makes every write throw. */
function records(unitDone: boolean, failing = false): CommitRecords & { calls: string[] } {
  const calls: string[] = [];
  const write = async (what: string) => {
    calls.push(what);
    if (failing) throw new Error('database is locked');
  };
  return {
    calls,
    downloaded: async (e) => {
      await write(`downloaded ${e.unit_id}`);
      return unitDone;
    },
    clearDeferred: (e) => write(`clear ${e.unit_id}`),
    queueDeferred: (e, now) => write(`queue ${e.unit_id} ${now.getTime()}`),
    markFailed: (e, reason, now, until) =>
      write(`failed ${e.unit_id} ${now.getTime()} ${until.getTime()} ${reason}`),
  };
}

function deps(recs: CommitRecords, saveToStorage = true): CommitDeps {
  return {
    records: recs,
    metrics: createStreamerMetrics(),
    log: silentLogger,
    clock: () => NOW,
    settings: { saveToStorage, failureCooldownMs: 60_000 },
  };
}

/** A temp file holding `content`, moved the way TempFileWriter.moveTo does (rename). */
async function tempFile(content: Buffer) {
  const p = path.join(work, `temp-${Math.random()}`);
  await writeFile(p, content);
  return {
    path: p,
    moveTo: async (target: string) => {
      await mkdir(path.dirname(target), { recursive: true });
      await rename(p, target);
    },
  };
}

test('good bytes go into storage, the unit is marked downloaded and leaves the queue', async () => {
  const recs = records(true);
  const d = deps(recs);
  const e = entry('good.bin');
  const file = await tempFile(bytes);
  const got = { digest, size: bytes.length };
  const done = await verifyAndCommit(d, e, file, got, bytes.length, true);
  assert.deepEqual(done, { saved: true, savedAt: NOW });
  assert.deepEqual(await readFile(e.path), bytes);
  assert.deepEqual(recs.calls, ['downloaded u-good.bin', 'clear u-good.bin']);
  assert.equal(d.metrics.saves.get({ result: 'saved' }), 1);
});

test('a unit with files still missing is queued, but only when a client (not a download task) asked', async () => {
  for (const wantsDeferred of [true, false]) {
    const recs = records(false);
    const e = entry(`partial-${wantsDeferred}.bin`);
    await verifyAndCommit(
      deps(recs),
      e,
      await tempFile(bytes),
      { digest, size: bytes.length },
      29,
      wantsDeferred,
    );
    const expected = [`downloaded ${e.unit_id}`, ...(wantsDeferred ? [`queue ${e.unit_id} ${NOW}`] : [])];
    assert.deepEqual(recs.calls, expected);
  }
});

test('save disabled: nothing is moved, the unit is queued, the save counted as not_saved', async () => {
  const recs = records(true);
  const d = deps(recs, false);
  const e = entry('unsaved.bin');
  const file = await tempFile(bytes);
  const done = await verifyAndCommit(d, e, file, { digest, size: bytes.length }, bytes.length, true);
  assert.equal(done.saved, false);
  await assert.rejects(stat(e.path), { code: 'ENOENT' });
  assert.deepEqual(recs.calls, [`queue ${e.unit_id} ${NOW}`]);
  assert.equal(d.metrics.saves.get({ result: 'not_saved' }), 1);
});

test('wrong bytes: not moved, the entry cooled down for failure_cooldown with the reason, counted, thrown', async () => {
  for (const got of [
    { digest: '1'.repeat(64), size: bytes.length },
    { digest, size: bytes.length - 1 },
  ]) {
    const recs = records(true);
    const d = deps(recs);
    const e = entry('bad.bin');
    const file = await tempFile(bytes);
    await assert.rejects(verifyAndCommit(d, e, file, got, bytes.length, true), ChecksumMismatch);
    await assert.rejects(stat(e.path), { code: 'ENOENT' });
    assert.equal(recs.calls.length, 1);
    const [what, unit, now, until, ...reason] = recs.calls[0]!.split(' ');
    assert.deepEqual([what, unit, Number(now), Number(until)], ['failed', 'u-bad.bin', NOW, NOW + 60_000]);
    assert.doesNotMatch(reason.join(' '), /secret/, 'the reason names the URL without its password');
    assert.equal(d.metrics.checksumFailures.get(), 1);
    assert.equal(d.metrics.saves.get({ result: 'failed' }), 1);
  }
});

test('a verification failure before the flight committed to the entry is not a failed save', async () => {
  const recs = records(true);
  const d = deps(recs);
  await recordVerificationFailure(d, entry('early.bin'), new ChecksumMismatch('Content-Length 1'), false);
  assert.equal(d.metrics.checksumFailures.get(), 1);
  assert.equal(d.metrics.saves.get({ result: 'failed' }), 0);
  assert.match(recs.calls[0]!, /^failed u-early\.bin .* Content-Length 1$/);
});

test('a failed save or database write is logged, not thrown: the client still gets its bytes', async () => {
  const failingMove = { moveTo: async () => Promise.reject(new Error('ENOSPC')) };
  const recs = records(true);
  const d = deps(recs);
  const done = await verifyAndCommit(d, entry('nospace.bin'), failingMove, { digest, size: 29 }, 29, true);
  assert.equal(done.saved, false);
  assert.deepEqual(recs.calls, ['queue u-nospace.bin 1700000000000'], 'not marked downloaded');
  assert.equal(d.metrics.saves.get({ result: 'failed' }), 1);
  const down = records(true, true);
  const e = entry('dbdown.bin');
  const saved = await verifyAndCommit(deps(down), e, await tempFile(bytes), { digest, size: 29 }, 29, true);
  assert.equal(saved.saved, true);
  await recordVerificationFailure(deps(down), e, new ChecksumMismatch('x'), true);
  await queueAfterFailure(deps(down), e, true);
});

test('after a failure the unit is queued only when a client asked, and there is a unit', async () => {
  const recs = records(false);
  await queueAfterFailure(deps(recs), entry('a.bin'), true);
  await queueAfterFailure(deps(recs), entry('b.bin'), false);
  await queueAfterFailure(deps(recs), undefined, true);
  assert.deepEqual(recs.calls, [`queue u-a.bin ${NOW}`]);
});
