/** The Cache-Control table of hits (src/http/cache-control.ts), path by path. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CACHE_RULES, cacheControlFor, IMMUTABLE, NO_CACHE } from '../src/http/cache-control.ts';

const HEX = '0f'.repeat(32);

test('metadata that changes in place is no-cache; content-addressed files are immutable', () => {
  const cases: Array<[string, string | undefined]> = [
    ['el9/repodata/repomd.xml', NO_CACHE],
    ['el9/repodata/repomd.xml.asc', NO_CACHE],
    ['el9/repodata/repomd.xml.key', NO_CACHE],
    ['deb/dists/bookworm/InRelease', NO_CACHE],
    ['deb/dists/bookworm/Release', NO_CACHE],
    ['deb/dists/bookworm/Release.gpg', NO_CACHE],
    ['deb/dists/bookworm/main/binary-amd64/Packages', NO_CACHE],
    ['deb/dists/bookworm/main/binary-amd64/Packages.xz', NO_CACHE],
    ['deb/dists/bookworm/main/source/Sources.gz', NO_CACHE],
    ['files/PULP_MANIFEST', NO_CACHE],
    [`el9/repodata/${HEX}-primary.xml.gz`, IMMUTABLE],
    [`el9/repodata/${HEX}-comps.xml`, IMMUTABLE],
    [`deb/dists/bookworm/main/binary-amd64/by-hash/SHA256/${HEX}`, IMMUTABLE],
    [`deb/dists/bookworm/main/binary-amd64/by-hash/MD5Sum/${HEX.slice(0, 32)}`, IMMUTABLE],
    ['el9/Packages/b/bash-5.2-1.el9.x86_64.rpm', IMMUTABLE],
    ['el9/Packages/b/bash-5.2-1.el9.src.rpm', IMMUTABLE],
    ['deb/pool/main/h/hello/hello_2.10-3_amd64.deb', IMMUTABLE],
    ['deb/pool/main/h/hello/hello-udeb_2.10-3_amd64.udeb', IMMUTABLE],
    // Neither: a plain file may change under its name; an unhashed repodata file too.
    ['files/iso/disk.iso', undefined],
    ['el9/repodata/primary.xml.gz', undefined],
    ['deb/dists/bookworm/main/binary-amd64/Release.notes', undefined],
    ['el9/repodata/repomd.xml.bak', undefined],
    ['el9/Packages/readme.rpm.txt', undefined],
    ['el9/PackagesList', undefined],
  ];
  for (const [rel, want] of cases) assert.equal(cacheControlFor(rel), want, rel);
});

test('every rule is written so Apache (PCRE, in a quoted m#…# expression) reads it as JavaScript does', () => {
  for (const r of CACHE_RULES) {
    assert.ok(!/[#"]/.test(r.pattern), `${r.pattern}: no # or " (they end the rendered expression)`);
    assert.ok(!/\(\?<?[=!]|\\[dDwWsSpPkK]/.test(r.pattern), `${r.pattern}: no lookarounds or class escapes`);
    assert.ok(r.value === NO_CACHE || r.value === IMMUTABLE, r.value);
  }
});
