/**
 * Single byte ranges (RFC 9110 §14): `bytes=a-b`, `bytes=a-`, `bytes=-n`.
 * Multiple ranges are not supported and are answered with the whole file
 * (a server may ignore Range).
 */
export interface ByteRange {
  start: number;
  /** Inclusive. */
  end: number;
}

/** `undefined`: no usable Range (send 200); `'unsatisfiable'`: send 416. */
export function parseRange(
  header: string | undefined,
  size: number,
): ByteRange | 'unsatisfiable' | undefined {
  if (!header) return undefined;
  const m = /^\s*bytes\s*=\s*(\d*)\s*-\s*(\d*)\s*$/i.exec(header);
  if (!m) return undefined; // multiple ranges or another unit: ignored
  const [, a, b] = m as unknown as [string, string, string];
  if (a === '' && b === '') return undefined;
  if (a === '') {
    const n = Number(b);
    if (n === 0) return 'unsatisfiable';
    return size === 0 ? 'unsatisfiable' : { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(a);
  if (start >= size) return 'unsatisfiable';
  const end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
  if (end < start) return undefined; // syntactically invalid: ignore
  return { start, end };
}

export const contentRange = (r: ByteRange, size: number) => `bytes ${r.start}-${r.end}/${size}`;
export const unsatisfiedRange = (size: number) => `bytes */${size}`;
