/**
 * Debian archive metadata readers: Release / InRelease (control-file
 * fields plus the per-file hash lists) and a streaming reader of Packages
 * indexes that hands over one stanza at a time.
 */
import { BadMetadata } from '../errors.ts';
import { splitLines } from './lines.ts';

export interface ReleaseFile {
  size: number;
  sha256?: string;
  sha512?: string;
}

export interface Release {
  /** Single-line fields by lower-case name (Origin, Suite, Components, Acquire-By-Hash, ...). */
  fields: Map<string, string>;
  /** Files the Release lists, by path relative to `dists/<dist>/`. */
  files: Map<string, ReleaseFile>;
  components: string[];
  architectures: string[];
  acquireByHash: boolean;
}

/** The signed text of an InRelease (clearsigned) file, dash-escaping undone. */
export function clearsignedBody(text: string, source = 'InRelease'): string {
  const lines = text.split(/\r?\n/);
  const start = lines.indexOf('-----BEGIN PGP SIGNED MESSAGE-----');
  if (start < 0) return text;
  let i = start + 1;
  while (i < lines.length && lines[i] !== '') i++; // Armor headers (Hash: ...).
  const end = lines.findIndex((l, j) => j > i && l === '-----BEGIN PGP SIGNATURE-----');
  if (end < 0) throw new BadMetadata(`${source}: clearsigned message without a signature block`);
  return `${lines
    .slice(i + 1, end)
    .map((l) => (l.startsWith('- ') ? l.slice(2) : l))
    .join('\n')}\n`;
}

/** Parses a Release file; requires SHA256 (or SHA512) hashes. */
export function parseRelease(text: string, source = 'Release'): Release {
  const fields = new Map<string, string>();
  const files = new Map<string, ReleaseFile>();
  let section: 'sha256' | 'sha512' | 'other' | undefined;
  let hashes = 0;
  const lines = text.split(/\r?\n/);
  lines.forEach((line, i) => {
    if (line.trim() === '') return;
    if (/^[ \t]/.test(line)) {
      if (section === 'sha256' || section === 'sha512') {
        const m = /^\s+([0-9a-fA-F]+)\s+(\d+)\s+(\S+)\s*$/.exec(line);
        if (!m) throw new BadMetadata(`${source} line ${i + 1}: bad hash line "${line.trim().slice(0, 80)}"`);
        const [, digest, size, file] = m as unknown as [string, string, string, string];
        const want = section === 'sha256' ? 64 : 128;
        if (digest.length !== want)
          throw new BadMetadata(`${source} line ${i + 1}: bad ${section} "${digest}"`);
        const entry = files.get(file) ?? { size: Number(size) };
        if (entry.size !== Number(size)) {
          throw new BadMetadata(`${source}: ${file} listed with two different sizes`);
        }
        entry[section] = digest.toLowerCase();
        files.set(file, entry);
        hashes++;
      }
      return;
    }
    const m = /^([^\s:]+):\s*(.*)$/.exec(line);
    if (!m) throw new BadMetadata(`${source} line ${i + 1}: not a "Field: value" line`);
    const name = m[1]!.toLowerCase();
    section = name === 'sha256' ? 'sha256' : name === 'sha512' ? 'sha512' : 'other';
    fields.set(name, m[2]!.trim());
  });
  if (hashes === 0 || ![...files.values()].some((f) => f.sha256 || f.sha512)) {
    throw new BadMetadata(`${source}: no SHA256 file hashes (MD5Sum-only Release files are not supported)`);
  }
  const list = (k: string) => (fields.get(k) ?? '').split(/\s+/).filter(Boolean);
  return {
    fields,
    files,
    components: list('components'),
    architectures: list('architectures'),
    acquireByHash: (fields.get('acquire-by-hash') ?? '').toLowerCase() === 'yes',
  };
}

/** One Packages stanza: fields by lower-case name (continuation lines joined with "\n"). */
export type Stanza = Map<string, string>;

/**
 * Reads a Packages index from `chunks` (decompressed bytes, cut anywhere)
 * line by line and calls `onStanza` per paragraph as soon as it ends (a blank
 * line, or the end of the input), awaiting it; returns the stanza count.
 * Lines may end with CRLF. Throws BadMetadata for a line that is neither a
 * field nor a continuation.
 */
export async function readStanzas(
  chunks: AsyncIterable<Buffer>,
  onStanza: (s: Stanza, n: number) => unknown,
  source = 'Packages',
): Promise<number> {
  let stanza: Stanza = new Map();
  let last: string | undefined;
  let count = 0;
  let lineNo = 0;
  /** The stanza a blank line (or the end) closes, if any. */
  const close = (): Stanza | undefined => {
    if (stanza.size === 0) return undefined;
    const done = stanza;
    stanza = new Map();
    last = undefined;
    count++;
    return done;
  };
  const onLine = (raw: string): Stanza | undefined => {
    lineNo++;
    const line = raw.endsWith('\r') ? raw.slice(0, -1) : raw;
    if (line.trim() === '') return close();
    if (line.startsWith('#')) return undefined;
    if (line.startsWith(' ') || line.startsWith('\t')) {
      if (last === undefined)
        throw new BadMetadata(`${source} line ${lineNo}: continuation line without a field`);
      stanza.set(last, `${stanza.get(last)}\n${line.slice(1)}`);
      return undefined;
    }
    const colon = line.indexOf(':');
    if (colon <= 0) throw new BadMetadata(`${source} line ${lineNo}: not a "Field: value" line`);
    last = line.slice(0, colon).toLowerCase();
    stanza.set(last, line.slice(colon + 1).trim());
    return undefined;
  };
  for await (const raw of splitLines(chunks)) {
    const done = onLine(raw);
    if (done) await onStanza(done, count);
  }
  const final = close();
  if (final) await onStanza(final, count);
  return count;
}
