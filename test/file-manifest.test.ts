import assert from 'node:assert/strict';
import { test } from 'node:test';
import { feedUrl, parseManifest } from '../src/importers/file.ts';

const sum = 'a'.repeat(64);

test('parses PULP_MANIFEST lines', () => {
  const entries = parseManifest(`a/b.txt,${sum},12\r\nc.iso,${'B'.repeat(64)},0\n\n`);
  assert.deepEqual(
    entries.map((e) => [e.relative_path, e.sha256, e.size, e.line]),
    [
      ['a/b.txt', sum, 12, 1],
      ['c.iso', 'b'.repeat(64), 0, 2],
    ],
  );
});

test('rejects bad lines with their line numbers', () => {
  const bad: Array<[string, RegExp]> = [
    [`ok.txt,${sum},1\nonly,two\n`, /line 2: expected 3 fields/],
    [`x.txt,nothex,1`, /line 1: bad sha256/],
    [`x.txt,${sum},-5`, /line 1: bad size "-5"/],
    [`x.txt,${sum},1.5`, /line 1: bad size/],
    [`../etc/passwd,${sum},1`, /line 1: unsafe or empty path "..\/etc\/passwd"/],
    [`/abs/path,${sum},1`, /line 1: unsafe or empty path/],
    [`a/./b,${sum},1`, /unsafe/],
    [`a//b,${sum},1`, /unsafe/],
    [`a\\b,${sum},1`, /unsafe/],
    [`x.txt,${sum},1\nx.txt,${sum},1`, /line 2: duplicate path "x.txt" \(first on line 1\)/],
  ];
  for (const [text, re] of bad) {
    assert.throws(
      () => parseManifest(text),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'PL_BAD_METADATA');
        assert.match(err.message, re);
        return true;
      },
    );
  }
});

test('summarises many bad lines in one message', () => {
  const text = Array.from({ length: 10 }, (_, i) => `f${i},bad,1`).join('\n');
  assert.throws(() => parseManifest(text), /line 1: .*line 2: .*line 3: .*\(and 7 more\)/);
});

test('feed URLs encode each path segment', () => {
  assert.equal(feedUrl('http://h/repo/', 'a b/c#d.txt'), 'http://h/repo/a%20b/c%23d.txt');
});
