/** Parses sizes such as `4096`, `"512KiB"`, `"32MiB"`, `"1GiB"` (K/M/G are the same powers of 1024) into bytes. */
export function parseSize(value: string | number): number | undefined {
  if (typeof value === 'number') return Number.isSafeInteger(value) && value >= 0 ? value : undefined;
  const m = /^\s*(\d+)\s*(B|K|KiB|M|MiB|G|GiB)?\s*$/.exec(value);
  if (!m) return undefined;
  const factor = { B: 1, K: 1024, KiB: 1024, M: 1 << 20, MiB: 1 << 20, G: 1 << 30, GiB: 1 << 30 }[
    (m[2] ?? 'B') as 'B'
  ];
  const n = Number(m[1]) * factor;
  return Number.isSafeInteger(n) ? n : undefined;
}

/** storage.min_free: bytes, a percentage of the filesystem's size, or both (the smaller wins); off: no guard. */
export interface MinFree {
  bytes?: number | undefined;
  percent?: number | undefined;
  off?: boolean;
}

/** The default min_free: 2 GiB or 5 % of the filesystem, the smaller. */
export const DEFAULT_MIN_FREE: MinFree = { bytes: 2 * 1024 ** 3, percent: 5 };

/**
 * Parses storage.min_free: a size ("2GiB"), a percentage of the filesystem ("5%"), "default"
 * (the smaller of 2GiB and 5 %), or "off" (no guard: a full disk fails the save with ENOSPC).
 */
export function parseMinFree(value: string | number): MinFree | undefined {
  if (value === 'default') return DEFAULT_MIN_FREE;
  if (value === 'off') return { off: true };
  const pct = typeof value === 'string' ? /^\s*(\d+(?:\.\d+)?)\s*%\s*$/.exec(value) : null;
  if (pct) return Number(pct[1]) <= 100 ? { percent: Number(pct[1]) } : undefined;
  const bytes = parseSize(value);
  return bytes === undefined ? undefined : { bytes };
}
