/**
 * Path safety for /pulp/content/<path>: the raw (percent-encoded) request
 * path is split and decoded segment by segment, and anything that could
 * leave the published tree lexically is refused: `.`/`..` (also encoded),
 * empty segments (`//`), NUL, backslashes and encoded slashes. What passes
 * can be joined under the published root without escaping it; symlinks are
 * the resolver's job (src/content/resolve.ts).
 */

export interface ContentPath {
  /** Decoded segments, none empty, none `.`/`..`, none containing `/`, `\` or NUL. */
  segments: string[];
  /** `segments.join('/')` ('' for the root). */
  rel: string;
  /** The request ended with `/`. */
  trailingSlash: boolean;
}

/**
 * Parses the part of the request path after the mount point (no query), e.g.
 * `rhel9/Packages/a.rpm`. Returns undefined for anything unsafe.
 */
export function parseContentPath(raw: string): ContentPath | undefined {
  if (raw.includes('\\') || raw.includes('\0')) return undefined;
  if (raw === '') return { segments: [], rel: '', trailingSlash: false };
  const parts = raw.split('/');
  const trailingSlash = parts[parts.length - 1] === '';
  if (trailingSlash) parts.pop();
  const segments: string[] = [];
  for (const part of parts) {
    if (part === '') return undefined;
    let seg: string;
    try {
      seg = part.includes('%') ? decodeURIComponent(part) : part;
    } catch {
      return undefined;
    }
    if (seg === '.' || seg === '..' || /[/\\\0]/.test(seg)) return undefined;
    segments.push(seg);
  }
  return { segments, rel: segments.join('/'), trailingSlash };
}

/** Percent-encodes a decoded segment for an href or URL path (keeps RFC 3986 pchars except `;`, `=`, `&`). */
export function encodeSegment(seg: string): string {
  return encodeURIComponent(seg).replace(/%(2B|24|2C|3A|40)/g, (_m, hex: string) =>
    String.fromCharCode(Number.parseInt(hex, 16)),
  );
}
