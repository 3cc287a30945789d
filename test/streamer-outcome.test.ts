/**
 * Outcome names and error responses of the streamer (src/streamer/outcome.ts),
 * on a recording response: before the first byte a JSON error with our code
 * and no-store; after it the connection is destroyed ('broken'); an error
 * that is not ours is a 500, and a database that is down a 503.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NotInCatalog, PulpLazyError, UpstreamError, UpstreamTimeout } from '../src/errors.ts';
import { silentLogger } from '../src/log.ts';
import {
  type ErrorResponse,
  outcomeOf,
  sendError,
  sendOutcome,
  shuttingDown,
} from '../src/streamer/outcome.ts';

class Recorder {
  headersSent = false;
  destroyed = false;
  status = 0;
  headers: Record<string, unknown> = {};
  body = '';
  destroy(): this {
    this.destroyed = true;
    return this;
  }
  writeHead(status: number, headers?: unknown): this {
    this.status = status;
    this.headers = headers as Record<string, unknown>;
    this.headersSent = true;
    return this;
  }
  end(body?: unknown): this {
    this.body = String(body);
    return this;
  }
}

test('errors before the first byte: JSON with code, message and status, never stored', () => {
  const cases: Array<[unknown, number, string, string]> = [
    [new NotInCatalog('/storage/x'), 404, 'PL_NOT_IN_CATALOG', 'not_found'],
    [new UpstreamError('bad gateway'), 502, 'PL_UPSTREAM', 'upstream_error'],
    [new UpstreamTimeout('slow'), 504, 'PL_UPSTREAM_TIMEOUT', 'upstream_timeout'],
    [shuttingDown(), 503, 'PL_SHUTTING_DOWN', 'unavailable'],
    [new PulpLazyError('PL_BAD_PATH', 'bad', { status: 400 }), 400, 'PL_BAD_PATH', 'bad_request'],
    [new Error('boom'), 500, 'PL_INTERNAL', 'error'],
  ];
  for (const [err, status, code, outcome] of cases) {
    const res = new Recorder();
    assert.equal(sendError(res as unknown as ErrorResponse, err, silentLogger), outcome);
    assert.equal(res.status, status);
    assert.equal(res.headers['cache-control'], 'no-store');
    assert.equal(res.headers['content-type'], 'application/json');
    const body = JSON.parse(res.body);
    assert.equal(body.code, code);
    assert.equal(body.status, status);
    assert.equal(res.headers['content-length'], Buffer.byteLength(res.body));
  }
});

test('after the first byte the connection is destroyed, never ended cleanly', () => {
  const res = new Recorder();
  res.headersSent = true;
  assert.equal(
    sendError(res as unknown as ErrorResponse, new UpstreamError('reset mid-body'), silentLogger),
    'broken',
  );
  assert.ok(res.destroyed);
  assert.equal(res.body, '');
});

test('outcome names', () => {
  assert.equal(sendOutcome('complete'), 'streamed');
  assert.equal(sendOutcome('client_gone'), 'client_gone');
  assert.equal(sendOutcome('broken'), 'broken');
  assert.equal(outcomeOf(503, 'PL_DATABASE_UNAVAILABLE'), 'error', 'a 503 that is not the shutdown');
  assert.equal(outcomeOf(405, 'PL_METHOD_NOT_ALLOWED'), 'bad_request');
});
