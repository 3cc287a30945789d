/**
 * Errors in log lines (#21 §3): `{ err }` through the serializer of
 * src/log.ts gives code, message, status and one level of cause; the stack
 * only at debug level or lower, or on a crash line.
 */
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { test } from 'node:test';
import { PulpLazyError, UpstreamTimeout } from '../src/errors.ts';
import { crashLogger, createLogger } from '../src/log.ts';

/** A logger at `level` and the JSON lines it wrote. */
function capture(level: string) {
  const lines: Record<string, unknown>[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l.trim()) lines.push(JSON.parse(l));
      cb();
    },
  });
  return { log: createLogger({ level, destination }), lines };
}

const upstreamErr = () =>
  new UpstreamTimeout(
    'http://mirror.example/f.iso: headers timeout',
    Object.assign(new Error('Headers Timeout Error'), { code: 'UND_ERR_HEADERS_TIMEOUT' }),
  );

test('at info: code, message, status and the cause (message and code), no stack', () => {
  const { log, lines } = capture('info');
  log.warn({ err: upstreamErr() }, 'fetch failed');
  assert.equal(lines.length, 1);
  assert.deepEqual(lines[0]!.err, {
    type: 'UpstreamTimeout',
    code: 'PL_UPSTREAM_TIMEOUT',
    message: 'http://mirror.example/f.iso: headers timeout',
    status: 504,
    cause: { message: 'Headers Timeout Error', code: 'UND_ERR_HEADERS_TIMEOUT' },
  });
  assert.equal(lines[0]!.msg, 'fetch failed');
});

test('the cause is one level deep', () => {
  const { log, lines } = capture('info');
  const inner = new Error('ECONNREFUSED', { cause: new Error('deeper') });
  log.error({ err: new PulpLazyError('PL_PROXY_UNREACHABLE', 'GET /x: refused', { cause: inner }) }, 'x');
  assert.deepEqual((lines[0]!.err as { cause: unknown }).cause, { message: 'ECONNREFUSED' });
});

test('at debug: the stack too', () => {
  const { log, lines } = capture('debug');
  log.warn({ err: upstreamErr() }, 'fetch failed');
  const err = lines[0]!.err as { stack?: string; code: string };
  assert.equal(err.code, 'PL_UPSTREAM_TIMEOUT');
  assert.match(
    err.stack ?? '',
    /^UpstreamTimeout: http:\/\/mirror\.example\/f\.iso: headers timeout\n\s+at /,
  );
});

test('a plain Error keeps its code (errno); a non-Error value is logged as it is', () => {
  const { log, lines } = capture('info');
  log.error({ err: Object.assign(new Error('ENOSPC: no space left'), { code: 'ENOSPC' }) }, 'a');
  log.error({ err: 'a string' }, 'b');
  assert.deepEqual(lines[0]!.err, { type: 'Error', message: 'ENOSPC: no space left', code: 'ENOSPC' });
  assert.equal(lines[1]!.err, 'a string');
});

test('a child logger (module, reqId) uses the same serializer', () => {
  const { log, lines } = capture('info');
  log.child({ module: 'streamer', reqId: 'r-1' }).warn({ err: upstreamErr() }, 'fetch failed');
  assert.equal(lines[0]!.reqId, 'r-1');
  assert.equal((lines[0]!.err as { code: string }).code, 'PL_UPSTREAM_TIMEOUT');
  assert.equal((lines[0]!.err as { stack?: string }).stack, undefined);
});

test('a crash line keeps the stack at any level', () => {
  const { log, lines } = capture('info');
  crashLogger(log).fatal({ err: new Error('boom') }, 'uncaught exception: exiting');
  assert.match((lines[0]!.err as { stack: string }).stack, /^Error: boom\n\s+at /);
});
