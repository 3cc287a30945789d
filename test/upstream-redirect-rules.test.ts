/**
 * The redirect rules and the messages of src/upstream on their own (the
 * requests are in upstream-redirects.test.ts): every refusal is a
 * PL_UPSTREAM_REDIRECT with a one-line message and no password, and the
 * describer and redactor keep credentials out of every message.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { describeError, redactUrl, toUpstreamError } from '../src/upstream/describe.ts';
import { MAX_REDIRECTS, nextUrl } from '../src/upstream/redirect.ts';

const START = 'http://joe:pw1@mirror.example/feed/PULP_MANIFEST';

function follow(from: string, location: string | string[] | undefined, seen = new Set([from])): URL {
  return nextUrl(START, new URL(from), 302, location, seen);
}

function refused(fn: () => unknown, why: RegExp): void {
  assert.throws(fn, (err: Error & { code?: string; status?: number }) => {
    assert.equal(err.code, 'PL_UPSTREAM_REDIRECT');
    assert.equal(err.status, 502);
    assert.match(err.message, why);
    assert.doesNotMatch(err.message, /pw1|pw2|\n/);
    assert.ok(err.message.startsWith('http://joe:***@mirror.example/feed/PULP_MANIFEST: '), err.message);
    return true;
  });
}

test('followed: relative and absolute Locations, another host, http to https; fragments and credentials dropped', () => {
  assert.equal(follow('http://a.example/x/y', '../z?q=1#f').href, 'http://a.example/z?q=1');
  assert.equal(follow('http://a.example/x/y', '/abs').href, 'http://a.example/abs');
  assert.equal(follow('http://a.example/x', '//b.example:8080/p').href, 'http://b.example:8080/p');
  assert.equal(follow('http://a.example/x', 'https://eve:pw2@b.example/p').href, 'https://b.example/p');
});

test('refused: https to http, a loop, more than MAX_REDIRECTS, no or a bad Location, another scheme', () => {
  refused(() => follow('https://a.example/x', 'http://a.example/x'), /redirect from https to http refused/);
  refused(() => follow('https://a.example/x', 'http://eve:pw2@b.example/'), /to http:\/\/b\.example\/\)/);
  const seen = new Set(['http://a.example/1']);
  follow('http://a.example/1', '/2', seen);
  refused(
    () => follow('http://a.example/2', '/1', seen),
    /redirect loop refused \(http:\/\/a\.example\/1 was/,
  );
  const chain = new Set(['http://a.example/0']);
  for (let i = 1; i <= MAX_REDIRECTS; i++) follow(`http://a.example/${i - 1}`, `/${i}`, chain);
  refused(() => follow(`http://a.example/${MAX_REDIRECTS}`, '/next', chain), /more than 5 redirects refused/);
  refused(() => follow('http://a.example/x', undefined), /HTTP 302 redirect without a single Location/);
  refused(() => follow('http://a.example/x', ['/a', '/b']), /without a single Location/);
  refused(() => follow('http://a.example/x', 'http://[bad'), /invalid Location "http:\/\/\[bad"/);
  refused(() => follow('http://a.example/x', 'ftp://a.example/f'), /only http and https are followed/);
});

test('messages: every URL redacted, the cause and code of undici errors on one line, timeouts 504', () => {
  assert.equal(
    redactUrl('GET http://u:p@a/x then https://tok@b/y and http://c/z'),
    'GET http://u:***@a/x then https://***@b/y and http://c/z',
  );
  const cause = Object.assign(new Error('connect ECONNREFUSED 127.0.0.1:9'), { code: 'ECONNREFUSED' });
  const err = Object.assign(new TypeError('fetch failed\nfor http://u:secret@h/'), { cause });
  assert.equal(describeError(err), 'fetch failed for http://u:***@h/: connect ECONNREFUSED 127.0.0.1:9');
  const timeout = Object.assign(new Error('Body Timeout Error'), { code: 'UND_ERR_BODY_TIMEOUT' });
  const mapped = toUpstreamError(timeout, 'http://u:secret@h/f');
  assert.equal(mapped.code, 'PL_UPSTREAM_TIMEOUT');
  assert.equal(mapped.status, 504);
  assert.equal(mapped.message, 'http://u:***@h/f: Body Timeout Error (UND_ERR_BODY_TIMEOUT)');
  assert.equal(toUpstreamError(err, 'http://h/f').code, 'PL_UPSTREAM');
});
