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
