/**
 * Splits a URL or request target into its raw (still percent-encoded) path
 * and query parameters, without decoding or normalising anything: the
 * signature covers the bytes the client sends.
 */

export interface RawTarget {
  /** Everything before the query: scheme://authority of an absolute URL (else ''). */
  origin: string;
  /** The path exactly as written ('/' when an absolute URL has none). */
  path: string;
  /** The query without '?', or undefined when there is no '?'. */
  query: string | undefined;
  /** Query parameters split on '&' and ';' ([] for an absent or empty query). */
  params: string[];
}

const ABSOLUTE = /^https?:\/\/[^/?#]*/i;

/** Returns undefined when `input` is neither an http(s) URL nor a request target starting with '/'. */
export function parseTarget(input: string): RawTarget | undefined {
  const hash = input.indexOf('#');
  const s = hash < 0 ? input : input.slice(0, hash);
  let origin = '';
  let rest = s;
  if (!s.startsWith('/')) {
    const m = ABSOLUTE.exec(s);
    if (!m) return undefined;
    origin = m[0];
    rest = s.slice(origin.length);
  }
  const q = rest.indexOf('?');
  const path = (q < 0 ? rest : rest.slice(0, q)) || '/';
  const query = q < 0 ? undefined : rest.slice(q + 1);
  return { origin, path, query, params: query ? query.split(/[&;]/) : [] };
}

/** The name of a raw parameter (`name=value`, or a bare `name`). */
export function paramName(param: string): string {
  const eq = param.indexOf('=');
  return eq < 0 ? param : param.slice(0, eq);
}

/** path + `?` + params joined by '&' (or just the path when there are none). */
export function resourceOf(path: string, params: readonly string[]): string {
  return params.length ? `${path}?${params.join('&')}` : path;
}
