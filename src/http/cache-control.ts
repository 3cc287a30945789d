/**
 * Cache-Control of a hit, by the file's path in its repository: metadata
 * that changes in place is revalidated every time (`no-cache`: caches keep
 * it but ask first), content-addressed files never change under their name
 * (a long `max-age` with `immutable`). Other files get no header, as before.
 *
 * One table for every serving path: the content daemon and `serve` call
 * cacheControlFor(); the Apache fast path's rendered config uses the same
 * patterns (src/render/fastpath.ts), so the regular expressions below keep
 * to syntax that JavaScript and PCRE read alike.
 */

export const NO_CACHE = 'no-cache';
export const IMMUTABLE = 'public, max-age=31536000, immutable';

export interface CacheRule {
  /** Matched against the path inside the repository (no leading slash) and, by Apache, the URL path. */
  pattern: string;
  value: string;
  why: string;
}

/** First match wins. */
export const CACHE_RULES: readonly CacheRule[] = [
  {
    // deb: /by-hash/<algorithm>/<digest>: the name is the content's digest.
    pattern: '(^|/)by-hash/[^/]+/[0-9A-Fa-f]+$',
    value: IMMUTABLE,
    why: 'deb by-hash file',
  },
  {
    pattern:
      '(^|/)(repomd\\.xml(\\.asc|\\.key)?|InRelease|Release(\\.gpg)?|Packages(\\.[A-Za-z0-9]+)?|Sources(\\.[A-Za-z0-9]+)?|PULP_MANIFEST)$',
    value: NO_CACHE,
    why: 'metadata that changes in place',
  },
  {
    // yum: repodata/<checksum>-primary.xml.gz and the like.
    pattern: '(^|/)repodata/[0-9a-f]{32,}-[^/]+$',
    value: IMMUTABLE,
    why: 'yum metadata named by its checksum',
  },
  {
    pattern: '\\.(rpm|drpm|deb|udeb|ddeb)$',
    value: IMMUTABLE,
    why: 'package (a new build gets a new name)',
  },
];

const COMPILED = CACHE_RULES.map((r) => ({ re: new RegExp(r.pattern), value: r.value }));

/** The Cache-Control value for a hit on `relPath`, or undefined for none. */
export function cacheControlFor(relPath: string): string | undefined {
  for (const r of COMPILED) if (r.re.test(relPath)) return r.value;
  return undefined;
}
