/**
 * A flat copy of a string that shares no memory with its source. V8 keeps
 * substrings as slices of their parent and concatenations as pairs, so a
 * 64-character checksum cut from a parser's 64 KiB input chunk would keep
 * the whole chunk alive for as long as the plan holds the checksum.
 */
export function detach(s: string): string;
export function detach(s: string | undefined): string | undefined;
export function detach(s: string | undefined): string | undefined {
  return s === undefined ? undefined : Buffer.from(s, 'utf8').toString('utf8');
}
