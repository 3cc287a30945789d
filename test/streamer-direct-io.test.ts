/**
 * Large files are saved with O_DIRECT (streamer.direct_io_min_size): whole
 * blocks through aligned staging slots, the tail through the ordinary
 * handle; a lone client that fell behind reads the temp file back with
 * O_DIRECT too; while one of several clients reads it back, writes go
 * through the page cache again, and every client gets the same bytes;
 * smaller files (and all with "off") go through the page cache as before.
 */
import assert from 'node:assert/strict';
import { mkdtemp, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import type http from 'node:http';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import {
  alignDown,
  DIRECT_ALIGN,
  openDirect,
  readDirect,
  STAGING_SLOT,
  writeDirect,
} from '../src/storage/direct-io.ts';
import {
  addRepo,
  bytes,
  fetchRaw,
  seedUnit,
  serveSlowly,
  settled,
  sha256,
  startOrigin,
  startStreamer,
  tempFiles,
  urlFor,
} from './helpers/streamer.ts';

async function scratch(parent: string): Promise<string> {
  const dir = await mkdtemp(path.join(parent, 'pulp-lazy-direct-'));
  after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

/**
 * A streamer saving files of 1 MiB or more with O_DIRECT, and one unit of
 * `size` bytes its upstream sends at about 50 MB/s; `url` asks the streamer for it.
 */
async function largeMiss(label: string, size: number, seed: number) {
  const fx = await startStreamer(label, { direct_io_min_size: '1MiB' });
  const body = bytes(size, seed);
  const origin = await startOrigin({ '/big.iso': serveSlowly(body, { chunk: 50_000, intervalMs: 1 }) });
  await addRepo(fx.db, `imp-${label}`);
  const { unitId, paths } = await seedUnit(fx, [
    { name: 'big.iso', body, sources: [{ importer: `imp-${label}`, url: `${origin.base}/big.iso` }] },
  ]);
  return { fx, body, origin, unitId, stored: paths[0]!, url: urlFor(fx.base, paths[0]!) };
}

test('writeDirect: blocks taken from chunks of any size land at their offsets; unaligned writes are refused', async () => {
  const dir = await scratch(tmpdir());
  const file = path.join(dir, 'f');
  await (await open(file, 'w')).close();
  const fh = await openDirect(file);
  assert.ok(fh, `O_DIRECT is available in ${tmpdir()}`);
  try {
    const body = bytes(3 * STAGING_SLOT + 5000, 3);
    /** Bytes `from` to `end` of the body, in pieces of odd sizes. */
    const sizes = [1, 4095, 70_000, 333, 12_345];
    const pieces = (from: number, end: number) => {
      const out: Buffer[] = [];
      for (let at = from, i = 0; at < end; i++) {
        const n = Math.min(sizes[i % sizes.length]!, end - at);
        out.push(body.subarray(at, at + n));
        at += n;
      }
      return out;
    };
    const blocks = alignDown(body.length);
    const writes: Promise<void>[] = [];
    for (let at = 0; at < blocks; at += STAGING_SLOT) {
      writes.push(writeDirect(fh, pieces(at, Math.min(blocks, at + STAGING_SLOT)), at));
    }
    await Promise.all(writes); // more writes than staging slots at once: they wait for a slot
    await assert.rejects(writeDirect(fh, pieces(0, DIRECT_ALIGN), 100), /unaligned/);
    await assert.rejects(writeDirect(fh, pieces(0, 100), 0), /unaligned/);
    await assert.rejects(writeDirect(fh, pieces(0, 2 * STAGING_SLOT), 0), /unaligned/);
  } finally {
    await fh.close();
  }
  const got = await readFile(file);
  const body = bytes(3 * STAGING_SLOT + 5000, 3);
  assert.equal(got.length, alignDown(body.length));
  assert.ok(got.equals(body.subarray(0, alignDown(body.length))));
});

test('a large miss to a client that keeps up is saved with O_DIRECT, the tail through the page cache', async () => {
  // Not a whole number of blocks.
  const { fx, body, unitId, stored, url } = await largeMiss('direct-miss', 6 * STAGING_SLOT + 1234, 21);
  const r = await fetchRaw(url);
  assert.equal(r.status, 200);
  assert.ok(r.complete);
  assert.equal(sha256(r.body), sha256(body));
  await settled(fx);
  assert.ok((await readFile(stored)).equals(body), 'the stored file holds the upstream bytes');
  assert.equal((await fx.db.units.findOne({ _id: unitId }))?.downloaded, true);
  const written = fx.streamer.metrics.tempFileBytes;
  assert.equal(written.get({ io: 'direct' }), alignDown(body.length), 'whole blocks went direct');
  assert.equal(written.get({ io: 'buffered' }), body.length % DIRECT_ALIGN, 'the tail went buffered');
  assert.deepEqual(await tempFiles(fx), []);
});

test('readDirect: any offset and length, across staging slots and past the end of the file', async () => {
  const dir = await scratch(tmpdir());
  const file = path.join(dir, 'f');
  const body = bytes(3 * STAGING_SLOT + 5000, 4);
  await writeFile(file, body);
  const fh = await openDirect(file, 'read');
  assert.ok(fh, `O_DIRECT is available in ${tmpdir()}`);
  try {
    const cases: Array<[number, number]> = [
      [0, 1],
      [1, 4095],
      [4095, 2],
      [12_345, STAGING_SLOT + 7777], // more than one slot, from and to the middle of blocks
      [STAGING_SLOT, STAGING_SLOT],
      [body.length - 10, 10],
      [body.length - 10, 5000], // past the end: what is there
      [body.length, 100],
    ];
    const reads = cases.map(async ([at, n]) => {
      const buf = Buffer.alloc(n);
      const got = await readDirect(fh, buf, n, at);
      const want = body.subarray(at, at + n);
      assert.equal(got, want.length, `${n} at ${at}`);
      assert.ok(buf.subarray(0, got).equals(want), `${n} at ${at}`);
    });
    await Promise.all(reads); // more reads than staging slots at once: they wait for a slot
  } finally {
    await fh.close();
  }
});

test('a lone client that fell behind reads the file back with O_DIRECT while the writes stay direct', async () => {
  // 16 MiB at about 50 MB/s; the only client stops reading for 300 ms after its first chunk.
  const { fx, body, stored, url } = await largeMiss('direct-alone', 16 * STAGING_SLOT + 1234, 26);
  const r = await fetchRaw(url, {
    onResponse: (res) => {
      res.once('data', () => {
        res.pause();
        setTimeout(() => res.resume(), 300);
      });
    },
  });
  assert.equal(r.status, 200);
  assert.ok(r.complete);
  assert.equal(sha256(r.body), sha256(body));
  await settled(fx);
  assert.ok((await readFile(stored)).equals(body));
  const { tempFileBytes: written, tempFileReadBytes: read } = fx.streamer.metrics;
  assert.equal(written.get({ io: 'direct' }), alignDown(body.length), 'whole blocks went direct');
  assert.equal(written.get({ io: 'buffered' }), body.length % DIRECT_ALIGN, 'only the tail went buffered');
  assert.ok(
    read.get({ io: 'direct' }) > STAGING_SLOT,
    `it read back with O_DIRECT (${read.get({ io: 'direct' })} bytes)`,
  );
  assert.equal(read.get({ io: 'buffered' }), 0, 'nothing read through the page cache');
  assert.deepEqual(await tempFiles(fx), []);
});

test('while a client reads the file back, writes go through the page cache; every client gets the same bytes', async () => {
  // Larger than what the paused client's socket buffers take in before it falls behind (a few MiB).
  const { fx, body, origin, stored, url } = await largeMiss('direct-lag', 16 * STAGING_SLOT + 1234, 24);
  // The lagging client stops after its first chunk until the fast one is done, then reads the
  // rest back from the temp file (what was written with O_DIRECT before it fell behind too).
  let lagRes: http.IncomingMessage | undefined;
  let firstChunk!: () => void;
  const gotFirst = new Promise<void>((r) => {
    firstChunk = r;
  });
  const lagging = fetchRaw(url, {
    onResponse: (res) => {
      lagRes = res;
      res.once('data', () => {
        res.pause();
        firstChunk();
      });
    },
  });
  await gotFirst;
  const fast = await fetchRaw(url);
  lagRes!.resume();
  const lag = await lagging;
  for (const r of [fast, lag]) {
    assert.equal(r.status, 200);
    assert.ok(r.complete);
    assert.equal(sha256(r.body), sha256(body));
  }
  await settled(fx);
  assert.equal(origin.getsOf('/big.iso'), 1);
  assert.ok((await readFile(stored)).equals(body));
  const written = fx.streamer.metrics.tempFileBytes;
  const direct = written.get({ io: 'direct' });
  const buffered = written.get({ io: 'buffered' });
  assert.equal(direct + buffered, body.length);
  assert.ok(direct > 0, 'blocks went direct while both clients were live');
  assert.ok(
    buffered > (body.length % DIRECT_ALIGN) + STAGING_SLOT,
    `whole blocks went through the page cache once the client read back (buffered ${buffered})`,
  );
  assert.deepEqual(await tempFiles(fx), []);
});

test('a client that caught up again turns the writes back to O_DIRECT; every byte is written once', async () => {
  // 32 MiB at about 50 MB/s: the transfer goes on long after the paused client caught up.
  const { fx, body, stored, url } = await largeMiss('direct-back', 32 * STAGING_SLOT + 777, 25);
  const written = fx.streamer.metrics.tempFileBytes;
  const steady = fetchRaw(url);
  // The other client stops reading for 300 ms after its first chunk (it falls behind), then reads on.
  let directAtResume = 0;
  const paused = fetchRaw(url, {
    onResponse: (res) => {
      res.once('data', () => {
        res.pause();
        setTimeout(() => {
          directAtResume = written.get({ io: 'direct' });
          res.resume();
        }, 300);
      });
    },
  });
  const [a, b] = await Promise.all([steady, paused]);
  for (const r of [a, b]) {
    assert.equal(r.status, 200);
    assert.ok(r.complete);
    assert.equal(sha256(r.body), sha256(body));
  }
  await settled(fx);
  assert.ok((await readFile(stored)).equals(body));
  const direct = written.get({ io: 'direct' });
  const buffered = written.get({ io: 'buffered' });
  assert.equal(direct + buffered, body.length, 'every byte written once');
  assert.ok(buffered > STAGING_SLOT, `buffered while the client read back (${buffered})`);
  assert.ok(
    direct - directAtResume > 4 * STAGING_SLOT,
    `direct again once it caught up (${direct - directAtResume} bytes after it resumed)`,
  );
});

test('below direct_io_min_size, and with "off", files are written through the page cache', async () => {
  for (const min of ['8MiB', 'off']) {
    const fx = await startStreamer(`direct-small-${min}`, { direct_io_min_size: min });
    const body = bytes(2 * STAGING_SLOT + 99, 22);
    const origin = await startOrigin({ '/f.bin': serveSlowly(body, { chunk: 200_000, intervalMs: 1 }) });
    await addRepo(fx.db, 'imp-small');
    const { paths } = await seedUnit(fx, [
      { name: 'f.bin', body, sources: [{ importer: 'imp-small', url: `${origin.base}/f.bin` }] },
    ]);
    const r = await fetchRaw(urlFor(fx.base, paths[0]!));
    assert.equal(sha256(r.body), sha256(body));
    await settled(fx);
    assert.equal(fx.streamer.metrics.tempFileBytes.get({ io: 'direct' }), 0, min);
    assert.equal(fx.streamer.metrics.tempFileBytes.get({ io: 'buffered' }), body.length, min);
    assert.equal((await stat(paths[0]!)).size, body.length);
  }
});
