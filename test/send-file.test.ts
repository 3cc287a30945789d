/**
 * sendFile (src/http/send-file.ts) on files larger than its reused read
 * buffers together: whole bodies and ranges that cross buffer boundaries
 * come out byte for byte, a client that goes away mid-body is reported and
 * the file closed, and a file that shrank after its stat never reaches the
 * client complete.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { statSync } from 'node:fs';
import { mkdtemp, readdir, rm, truncate, writeFile } from 'node:fs/promises';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { FILE_HIGH_WATER_MARK, type SendFileResult, sendFile } from '../src/http/send-file.ts';

/** Larger than the loopback socket buffers (several MiB), so a slow client leaves writes pending. */
const SIZE = 24 * FILE_HIGH_WATER_MARK + 12_345;

function pattern(n: number): Buffer {
  const b = Buffer.alloc(n);
  for (let i = 0; i + 4 <= n; i += 4) b.writeUInt32LE(i >>> 0, i);
  return b;
}

async function setup(t: { after: (fn: () => Promise<void>) => void }) {
  const dir = await mkdtemp(path.join(tmpdir(), 'send-file-'));
  const file = path.join(dir, 'big.bin');
  const bytes = pattern(SIZE);
  await writeFile(file, bytes);
  const results: Array<SendFileResult | Error> = [];
  /** Bytes sendFile reported (onBytes) per response, in order. */
  const counted: number[] = [];
  let beforeSend: () => Promise<void> = async () => {};
  const server = http.createServer((req, res) => {
    const st = statSync(file);
    const n = counted.push(0) - 1;
    void beforeSend()
      .then(() =>
        sendFile(req, res, file, st, { 'content-type': 'application/octet-stream' }, (b) => {
          counted[n]! += b;
        }),
      )
      .then(
        (r) => results.push(r),
        (err: Error) => {
          results.push(err);
          res.destroy();
        },
      );
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(async () => {
    server.closeAllConnections();
    server.close();
    await rm(dir, { recursive: true, force: true });
  });
  const port = (server.address() as AddressInfo).port;
  return {
    file,
    bytes,
    results,
    counted,
    port,
    setBeforeSend: (fn: () => Promise<void>) => {
      beforeSend = fn;
    },
  };
}

/** GET; `slow`: the client pauses 5 ms after each 256 KiB, so the server's socket backs up. */
function get(port: number, headers: http.OutgoingHttpHeaders = {}, slow = false) {
  return new Promise<{ status: number; body: Buffer; complete: boolean }>((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path: '/', headers, agent: false }, (res) => {
        const chunks: Buffer[] = [];
        let since = 0;
        res.on('data', (c: Buffer) => {
          chunks.push(c);
          since += c.length;
          if (slow && since >= 256 * 1024) {
            since = 0;
            res.pause();
            setTimeout(() => res.resume(), 5);
          }
        });
        res.on('end', () =>
          resolve({ status: res.statusCode!, body: Buffer.concat(chunks), complete: res.complete }),
        );
        res.on('error', () =>
          resolve({ status: res.statusCode!, body: Buffer.concat(chunks), complete: false }),
        );
      })
      .on('error', reject);
  });
}

const openFds = async () => (await readdir('/proc/self/fd')).length;

test('whole body and ranges across the reused buffers arrive byte for byte', async (t) => {
  const s = await setup(t);
  const whole = await get(s.port);
  assert.equal(whole.status, 200);
  assert.equal(whole.body.length, SIZE);
  assert.ok(whole.body.equals(s.bytes), 'whole body');
  // A slow reader: a buffer is only read into again once the socket took its bytes.
  const slow = await get(s.port, {}, true);
  assert.ok(slow.body.equals(s.bytes), 'whole body, slow client');
  const ranges: Array<[number, number]> = [
    [FILE_HIGH_WATER_MARK - 7, 3 * FILE_HIGH_WATER_MARK + 9],
    [0, 0],
    [SIZE - 1, SIZE - 1],
    [12_345, SIZE - 1],
  ];
  for (const [a, b] of ranges) {
    const r = await get(s.port, { range: `bytes=${a}-${b}` });
    assert.equal(r.status, 206, `bytes=${a}-${b}`);
    assert.ok(r.body.equals(s.bytes.subarray(a, b + 1)), `bytes=${a}-${b}`);
  }
  for (let i = 0; i < 100 && s.results.length < ranges.length + 2; i++)
    await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(s.results, Array(ranges.length + 2).fill('complete'));
  assert.deepEqual(s.counted, [SIZE, SIZE, ...ranges.map(([a, b]) => b - a + 1)], 'bytes reported');
});

test('a client that goes away mid-body is reported and the file is closed', async (t) => {
  const s = await setup(t);
  const fds = await openFds();
  await new Promise<void>((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port: s.port, path: '/', agent: false }, (res) => {
        let got = 0;
        res.on('data', (c: Buffer) => {
          got += c.length;
          if (got >= FILE_HIGH_WATER_MARK) {
            res.destroy();
            resolve();
          }
        });
      })
      .on('error', reject);
  });
  for (let i = 0; i < 100 && s.results.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
  assert.deepEqual(s.results, ['client_gone']);
  assert.ok(s.counted[0]! >= FILE_HIGH_WATER_MARK && s.counted[0]! < SIZE, `bytes reported: ${s.counted[0]}`);
  assert.equal(await openFds(), fds, 'file descriptors after the abort');
});

test('a file that shrank after its stat is cut short, never sent complete', async (t) => {
  const s = await setup(t);
  s.setBeforeSend(() => truncate(s.file, 2 * FILE_HIGH_WATER_MARK));
  const r = await get(s.port);
  assert.equal(r.status, 200);
  assert.equal(r.complete, false, 'the response looked complete');
  assert.ok(r.body.length <= 2 * FILE_HIGH_WATER_MARK);
  for (let i = 0; i < 100 && s.results.length === 0; i++) await new Promise((r) => setTimeout(r, 20));
  assert.equal(s.results.length, 1);
  assert.ok(s.results[0] instanceof Error, `result: ${String(s.results[0])}`);
  assert.match((s.results[0] as Error).message, /shorter than/);
});
