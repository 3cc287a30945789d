/**
 * rpm-md metadata readers: `repomd.xml` (the index of repodata/) and a
 * streaming reader of `primary.xml` that hands over one package at a time,
 * so memory does not grow with the repository. XML goes through saxes
 * (a strict, non-validating streaming parser): anything that is not
 * well-formed fails with BadMetadata.
 */
import { StringDecoder } from 'node:string_decoder';
import { SaxesParser } from 'saxes';
import type { ChecksumAlgorithm } from '../db/index.ts';
import { BadMetadata, oneLine } from '../errors.ts';
import { detach } from './detach.ts';

export interface RepomdData {
  /** `primary`, `filelists`, `other`, `primary_db`, `group`, `updateinfo`, `modules`, ... */
  type: string;
  location_href: string;
  location_base?: string | undefined;
  checksum: { algorithm: ChecksumAlgorithm; value: string };
  open_checksum?: { algorithm: ChecksumAlgorithm; value: string } | undefined;
  size?: number | undefined;
}

export interface Repomd {
  revision?: string | undefined;
  data: RepomdData[];
}

export interface PrimaryPackage {
  name: string;
  arch: string;
  epoch: string;
  version: string;
  release: string;
  checksum: { algorithm: ChecksumAlgorithm; value: string };
  /** Package (file) size in bytes. */
  size: number;
  location_href: string;
  location_base?: string | undefined;
}

const HEX_LENGTH: Record<ChecksumAlgorithm, number> = {
  md5: 32,
  sha1: 40,
  sha224: 56,
  sha256: 64,
  sha384: 96,
  sha512: 128,
};

/** rpm-md checksum type names (`sha` is sha1) → our algorithm names. */
export function checksumAlgorithm(type: string | undefined): ChecksumAlgorithm | undefined {
  const t = (type ?? '').toLowerCase();
  if (t === 'sha') return 'sha1';
  return t in HEX_LENGTH ? (t as ChecksumAlgorithm) : undefined;
}

function checksumOf(
  type: string | undefined,
  value: string,
  what: () => string,
): { algorithm: ChecksumAlgorithm; value: string } {
  const algorithm = checksumAlgorithm(type);
  if (!algorithm) throw new BadMetadata(`${what()}: unsupported checksum type "${type ?? ''}"`);
  const v = value.trim().toLowerCase();
  if (v.length !== HEX_LENGTH[algorithm] || !/^[0-9a-f]+$/.test(v)) {
    throw new BadMetadata(`${what()}: bad ${algorithm} checksum "${v.slice(0, 140)}"`);
  }
  return { algorithm, value: v };
}

function sizeOf(text: string | undefined, what: () => string): number {
  const t = (text ?? '').trim();
  if (!/^\d+$/.test(t) || !Number.isSafeInteger(Number(t))) {
    throw new BadMetadata(`${what()}: bad size "${t.slice(0, 40)}"`);
  }
  return Number(t);
}

function xmlError(source: string, err: unknown): BadMetadata {
  if (err instanceof BadMetadata) return err;
  return new BadMetadata(`${source}: not well-formed XML (${oneLine(err)})`);
}

/** Parses repomd.xml; `source` names it in errors. */
export function parseRepomd(xml: string, source = 'repodata/repomd.xml'): Repomd {
  const parser = new SaxesParser({ xmlns: false });
  const result: Repomd = { data: [] };
  const stack: string[] = [];
  let text = '';
  let root: string | undefined;
  let cur:
    | {
        type: string;
        href?: string;
        base?: string;
        checksumType?: string;
        checksum?: string;
        openType?: string;
        open?: string;
        size?: string;
      }
    | undefined;
  let attrType: string | undefined;
  parser.on('opentag', (tag) => {
    stack.push(tag.name);
    text = '';
    const a = tag.attributes as Record<string, string>;
    if (stack.length === 1) root = tag.name;
    if (stack.length === 2 && tag.name === 'data') cur = { type: a.type ?? '' };
    else if (cur && stack.length === 3) {
      if (tag.name === 'location') {
        cur.href = a.href;
        cur.base = a['xml:base'];
      } else if (tag.name === 'checksum' || tag.name === 'open-checksum') {
        attrType = a.type;
      }
    }
  });
  parser.on('text', (t) => {
    text += t;
  });
  parser.on('cdata', (t) => {
    text += t;
  });
  parser.on('closetag', (tag) => {
    const depth = stack.length;
    stack.pop();
    if (depth === 2 && tag.name === 'revision') result.revision = text.trim();
    if (cur && depth === 3) {
      if (tag.name === 'checksum') {
        cur.checksumType = attrType;
        cur.checksum = text;
      } else if (tag.name === 'open-checksum') {
        cur.openType = attrType;
        cur.open = text;
      } else if (tag.name === 'size') cur.size = text;
    }
    if (cur && depth === 2 && tag.name === 'data') {
      const d = cur;
      cur = undefined;
      const what = () => `${source}: <data type="${d.type}">`;
      if (!d.type) throw new BadMetadata(`${source}: <data> without a type`);
      if (!d.href) throw new BadMetadata(`${what()}: no <location href>`);
      if (d.checksum === undefined) throw new BadMetadata(`${what()}: no <checksum>`);
      result.data.push({
        type: d.type,
        location_href: d.href,
        location_base: d.base,
        checksum: checksumOf(d.checksumType, d.checksum, what),
        open_checksum: d.open !== undefined ? checksumOf(d.openType, d.open, what) : undefined,
        size: d.size !== undefined ? sizeOf(d.size, what) : undefined,
      });
    }
    text = '';
  });
  try {
    parser.write(xml).close();
  } catch (err) {
    throw xmlError(source, err);
  }
  if (root !== 'repomd') throw new BadMetadata(`${source}: not a repomd.xml (root element <${root ?? ''}>)`);
  const seen = new Set<string>();
  for (const d of result.data) {
    if (seen.has(d.type)) throw new BadMetadata(`${source}: <data type="${d.type}"> listed twice`);
    seen.add(d.type);
  }
  return result;
}

/**
 * Reads primary.xml from `chunks` (decompressed bytes) and calls
 * `onPackage` once per package, in order, once the chunk in which its
 * element closes is parsed (and awaits it before the next chunk). Returns the
 * package count; throws BadMetadata for malformed XML, a package with a
 * missing or bad field, or a count that differs from `<metadata packages=N>`.
 */
export async function readPrimary(
  chunks: AsyncIterable<Buffer>,
  onPackage: (p: PrimaryPackage) => unknown,
  source = 'primary.xml',
): Promise<number> {
  const parser = new SaxesParser({ xmlns: false });
  const decoder = new StringDecoder('utf8');
  let depth = 0;
  let root: string | undefined;
  let declared: number | undefined;
  let count = 0;
  let text = '';
  let capture = false;
  let pkg: Partial<Omit<PrimaryPackage, 'checksum' | 'size'>> & {
    checksumType?: string;
    checksum?: string;
    size?: string;
  } = {};
  let inPackage = false;
  /** The packages of the chunk being parsed (handed over after it). */
  let done: PrimaryPackage[] = [];

  parser.on('opentag', (tag) => {
    depth++;
    const a = tag.attributes as Record<string, string>;
    if (depth === 1) {
      root = tag.name;
      if (a.packages !== undefined) declared = sizeOf(a.packages, () => `${source}: <metadata packages>`);
      return;
    }
    if (depth === 2 && tag.name === 'package') {
      inPackage = true;
      pkg = {};
      return;
    }
    if (!inPackage || depth !== 3) return;
    switch (tag.name) {
      case 'name':
      case 'arch':
        capture = true;
        text = '';
        break;
      case 'checksum':
        capture = true;
        text = '';
        pkg.checksumType = a.type;
        break;
      case 'version':
        pkg.epoch = a.epoch ?? '0';
        pkg.version = a.ver;
        pkg.release = a.rel;
        break;
      case 'size':
        pkg.size = a.package;
        break;
      case 'location':
        pkg.location_href = a.href;
        pkg.location_base = a['xml:base'];
        break;
    }
  });
  const onText = (t: string) => {
    if (capture) text += t;
  };
  parser.on('text', onText);
  parser.on('cdata', onText);
  parser.on('closetag', (tag) => {
    if (inPackage && depth === 3 && capture) {
      if (tag.name === 'name') pkg.name = text.trim();
      else if (tag.name === 'arch') pkg.arch = text.trim();
      else if (tag.name === 'checksum') pkg.checksum = text;
      capture = false;
      text = '';
    }
    if (inPackage && depth === 2) {
      inPackage = false;
      count++;
      done.push(finishPackage(pkg, count, source));
    }
    depth--;
  });

  const handOver = async () => {
    const packages = done;
    done = [];
    for (const p of packages) await onPackage(p);
  };
  try {
    for await (const chunk of chunks) {
      parser.write(decoder.write(chunk));
      await handOver();
    }
    parser.write(decoder.end());
    parser.close();
    await handOver();
  } catch (err) {
    throw xmlError(source, err);
  }
  if (root !== 'metadata')
    throw new BadMetadata(`${source}: not a primary.xml (root element <${root ?? ''}>)`);
  if (declared !== undefined && declared !== count) {
    throw new BadMetadata(`${source}: <metadata packages="${declared}"> but ${count} packages listed`);
  }
  return count;
}

function finishPackage(
  p: Partial<Omit<PrimaryPackage, 'checksum' | 'size'>> & {
    checksumType?: string;
    checksum?: string;
    size?: string;
  },
  n: number,
  source: string,
): PrimaryPackage {
  const what = () => `${source}: package ${n}${p.name ? ` (${p.name})` : ''}`;
  for (const k of ['name', 'arch', 'version', 'release', 'location_href'] as const) {
    if (!p[k]) throw new BadMetadata(`${what()}: missing ${k}`);
  }
  if (p.checksum === undefined) throw new BadMetadata(`${what()}: missing checksum`);
  if (p.size === undefined) throw new BadMetadata(`${what()}: missing <size package>`);
  const checksum = checksumOf(p.checksumType, p.checksum, what);
  return {
    name: detach(p.name!),
    arch: detach(p.arch!),
    epoch: detach(p.epoch || '0'),
    version: detach(p.version!),
    release: detach(p.release!),
    checksum: { algorithm: checksum.algorithm, value: detach(checksum.value) },
    size: sizeOf(p.size, what),
    location_href: detach(p.location_href!),
    location_base: detach(p.location_base),
  };
}
