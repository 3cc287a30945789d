/** The FastCGI server itself: framing, roles, management records, limits, malformed input. */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import { test } from 'node:test';
import { healthCheck } from '../src/fastcgi/health.ts';
import { createFcgiServer, type FcgiHandler, type FcgiLimits } from '../src/fastcgi/server.ts';
import { answerOf, authorize, beginRequest, exchange, pairs, record } from './helpers/fcgi.ts';

async function server(
  t: { after(fn: () => unknown): void },
  handler: FcgiHandler,
  limits: Partial<FcgiLimits> = {},
) {
  const errors: unknown[] = [];
  const s = createFcgiServer({ handler, limits, onError: (err) => errors.push(err) });
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  t.after(() => new Promise((r) => s.close(r)));
  const sockets = new Set<net.Socket>();
  s.on('connection', (c) => {
    sockets.add(c);
    c.on('close', () => sockets.delete(c));
  });
  t.after(() => {
    for (const c of sockets) c.destroy();
  });
  return { port: (s.address() as AddressInfo).port, errors, sockets };
}

const echo: FcgiHandler = (req) => ({
  status: req.params.get('REQUEST_URI') === '/ok' ? 200 : 403,
  headers: { 'Variable-ROLE': req.role, 'Variable-STDIN': String(req.stdin.length) },
  body: req.params.get('REQUEST_URI') === '/ok' ? '' : `denied ${req.params.get('REQUEST_URI')}`,
});

test('an authorizer request is answered once its PARAMS end, framed with its id', async (t) => {
  const { port } = await server(t, echo);
  const ok = await authorize(port, { REQUEST_URI: '/ok', REMOTE_ADDR: '127.0.0.1' }, 7);
  assert.equal(ok.status, 200);
  assert.equal(ok.id, 7);
  assert.equal(ok.headers['Variable-ROLE'], 'authorizer');
  assert.equal(ok.protocolStatus, 0);
  const no = await authorize(port, { REQUEST_URI: '/no' });
  assert.equal(no.status, 403);
  assert.equal(no.body, 'denied /no');
});

test('parameters split across PARAMS records, and long (4-byte) lengths, are reassembled', async (t) => {
  const { port } = await server(t, (req) => ({
    status: 200,
    headers: { 'Variable-LEN': String(req.params.get('BIG')?.length) },
  }));
  const body = pairs({ REQUEST_URI: '/ok', BIG: 'x'.repeat(70_000) });
  const parts = [beginRequest(1)];
  for (let off = 0; off < body.length; off += 1000)
    parts.push(record(4, 1, body.subarray(off, off + 1000), 3));
  parts.push(record(4, 1));
  const { records } = await exchange(port, parts);
  assert.equal(answerOf(records, 1)?.headers['Variable-LEN'], '70000');
});

test('a responder request is answered after STDIN ends, with the stdin bytes', async (t) => {
  const { port } = await server(t, echo);
  const { records } = await exchange(port, [
    beginRequest(3, 1),
    record(4, 3, pairs({ REQUEST_URI: '/ok' })),
    record(4, 3),
    record(5, 3, Buffer.from('hello')),
    record(5, 3),
  ]);
  const a = answerOf(records, 3)!;
  assert.equal(a.headers['Variable-ROLE'], 'responder');
  assert.equal(a.headers['Variable-STDIN'], '5');
});

test('multiplexed requests on one connection each get their own answer', async (t) => {
  const { port } = await server(t, echo);
  const { records } = await exchange(
    port,
    [
      beginRequest(1, 2, true),
      beginRequest(2, 2, true),
      record(4, 2, pairs({ REQUEST_URI: '/no' })),
      record(4, 1, pairs({ REQUEST_URI: '/ok' })),
      record(4, 2),
      record(4, 1),
    ],
    { untilEnds: 2 },
  );
  assert.equal(answerOf(records, 1)?.status, 200);
  assert.equal(answerOf(records, 2)?.status, 403);
  assert.equal(answerOf(records, 2)?.body, 'denied /no');
});

test('FCGI_GET_VALUES is answered, unknown management records get UNKNOWN_TYPE, healthCheck works', async (t) => {
  const { port } = await server(t, echo);
  const { records } = await exchange(
    port,
    [
      record(9, 0, pairs({ FCGI_MPXS_CONNS: '', FCGI_MAX_CONNS: '', NOT_A_VALUE: '' })),
      record(42, 0, Buffer.alloc(8)),
    ],
    { untilType: 11 },
  );
  const result = records.find((r) => r.type === 10);
  assert.ok(result, 'GET_VALUES_RESULT');
  const text = result.content.toString('latin1');
  assert.match(text, /FCGI_MPXS_CONNS1/);
  assert.match(text, /FCGI_MAX_CONNS\d+/);
  assert.doesNotMatch(text, /NOT_A_VALUE/);
  const unknown = records.find((r) => r.type === 11);
  assert.equal(unknown?.content[0], 42);
  const values = await healthCheck({ host: '127.0.0.1', port });
  assert.equal(values.get('FCGI_MPXS_CONNS'), '1');
});

test('healthCheck rejects with PL_FCGI_UNHEALTHY when nothing listens or nothing answers', async (t) => {
  const probe = net.createServer((c) => c.resume()); // accepts, never answers
  probe.listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const port = (probe.address() as AddressInfo).port;
  await assert.rejects(healthCheck({ host: '127.0.0.1', port }, { timeoutMs: 300 }), {
    code: 'PL_FCGI_UNHEALTHY',
  });
  await new Promise((r) => probe.close(r));
  await assert.rejects(healthCheck({ host: '127.0.0.1', port }, { timeoutMs: 300 }), {
    code: 'PL_FCGI_UNHEALTHY',
  });
  t.diagnostic('silent server and closed port both rejected');
});

test('the filter role and an unknown role are refused with UNKNOWN_ROLE', async (t) => {
  const { port } = await server(t, echo);
  for (const role of [3, 9]) {
    const { records } = await exchange(port, [beginRequest(5, role)]);
    const end = records.find((r) => r.type === 3);
    assert.equal(end?.content[4], 3, `role ${role}`);
  }
});

test('ABORT_REQUEST ends the request without calling the handler', async (t) => {
  let calls = 0;
  const { port } = await server(t, (req) => {
    calls++;
    return echo(req);
  });
  const { records } = await exchange(port, [
    beginRequest(4),
    record(4, 4, pairs({ REQUEST_URI: '/ok' })),
    record(2, 4),
  ]);
  const end = records.find((r) => r.type === 3 && r.id === 4);
  assert.ok(end);
  assert.equal(end.content.readUInt32BE(0), 1);
  assert.equal(calls, 0);
});

test('a handler that throws gives a 500 answer, not a crash', async (t) => {
  const { port, errors } = await server(t, (req) => {
    if (req.params.get('REQUEST_URI') === '/boom') throw new Error('boom');
    return echo(req);
  });
  const a = await authorize(port, { REQUEST_URI: '/boom' });
  assert.equal(a.status, 500);
  assert.equal(errors.length, 1);
  assert.equal((await authorize(port, { REQUEST_URI: '/ok' })).status, 200);
});

test('malformed input closes that connection only; the server keeps answering', async (t) => {
  const { port, errors } = await server(t, echo, { maxParamsBytes: 4096 });
  const cases: Array<[string, Buffer[]]> = [
    ['bad version', [Buffer.from([2, 1, 0, 1, 0, 8, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0])]],
    ['short BEGIN_REQUEST', [record(1, 1, Buffer.from([0, 2, 0]))]],
    ['duplicate BEGIN_REQUEST', [beginRequest(1), beginRequest(1)]],
    [
      'truncated name-value pair',
      [beginRequest(1), record(4, 1, Buffer.from([5, 200, 65, 66])), record(4, 1)],
    ],
    ['PARAMS beyond the limit', [beginRequest(1), record(4, 1, pairs({ X: 'y'.repeat(5000) }))]],
    ['STDIN before PARAMS end', [beginRequest(1, 1), record(5, 1, Buffer.from('x'))]],
    ['END_REQUEST from the client', [beginRequest(1), record(3, 1, Buffer.alloc(8))]],
    ['garbage', [Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n')]],
  ];
  for (const [name, data] of cases) {
    const { records, closed } = await exchange(port, data, { timeoutMs: 2000 });
    assert.equal(closed, true, `${name}: connection closed`);
    assert.equal(records.filter((r) => r.type === 6).length, 0, `${name}: no answer`);
  }
  assert.ok(errors.length >= cases.length);
  assert.equal((await authorize(port, { REQUEST_URI: '/ok' })).status, 200);
});

test('records for request ids that are not active are ignored', async (t) => {
  const { port } = await server(t, echo);
  const { records } = await exchange(port, [
    record(4, 9, pairs({ REQUEST_URI: '/x' })),
    record(5, 9),
    ...[beginRequest(1), record(4, 1, pairs({ REQUEST_URI: '/ok' })), record(4, 1)],
  ]);
  assert.equal(answerOf(records, 1)?.status, 200);
  assert.equal(answerOf(records, 9), undefined);
});

test('a slowloris partial record neither blocks other clients nor stays open past the idle timeout', async (t) => {
  const { port } = await server(t, echo, { idleTimeoutMs: 400 });
  const slow = net.connect({ host: '127.0.0.1', port });
  await once(slow, 'connect');
  slow.write(beginRequest(1).subarray(0, 5));
  const closed = once(slow, 'close');
  const answers = await Promise.all(
    Array.from({ length: 20 }, () => authorize(port, { REQUEST_URI: '/ok' })),
  );
  assert.ok(answers.every((a) => a.status === 200));
  await closed;
  assert.equal(slow.destroyed, true);
});
