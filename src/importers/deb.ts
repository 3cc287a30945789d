/**
 * Deb (apt) importer. Eager, per distribution: dists/<dist>/InRelease,
 * Release and Release.gpg unchanged, and for the chosen components and
 * architectures every Packages index variant (plain, .gz, .xz, ...) the
 * Release lists, the per-architecture Release and the i18n Translation
 * files; each verified against the Release's SHA256 (and SHA512) hashes and
 * stored as a `deb_metadata` unit (published again under by-hash/ when the
 * Release says Acquire-By-Hash: yes). Lazy: every .deb in the Packages
 * indexes becomes a `deb` unit with a catalog entry, published at its pool/
 * Filename as a link into storage.
 *
 * Options on the repository (repo create --dists/--components/--architectures):
 * dists default to ["stable"]; components and architectures default to
 * those the Release lists.
 */
import { createHash } from 'node:crypto';
import { readFile, rm } from 'node:fs/promises';
import path from 'node:path';
import type { RepoDoc } from '../db/index.ts';
import { BadMetadata, BadSignature, FeedUnreachable } from '../errors.ts';
import { isSafeRelativePath } from '../publish/index.ts';
import { verifySignature } from '../signing/gpg.ts';
import { unitId, unitStoragePath } from '../storage/index.ts';
import { clearsignedBody, parseRelease, type Release, readStanzas, type Stanza } from './debian.ts';
import { compressionOf, readDecompressed } from './decompress.ts';
import { feedUrl } from './file.ts';
import type { Plan } from './plan.ts';
import { type ExpectedDigest, MetadataStage, type StagedFile } from './staging.ts';
import type { ImporterDeps } from './types.ts';

export interface DebOptions {
  dists: string[];
  components?: string[] | undefined;
  architectures?: string[] | undefined;
  /** The repository's gpg key: InRelease / Release.gpg must verify with it. */
  gpgKey?: string | undefined;
}

/** Packages index variants, in the order the importer prefers to parse them. */
const PACKAGES_RE = /^Packages(\.(gz|xz|bz2|zst))?$/;
const PARSE_ORDER = ['none', 'gz', 'xz', 'bz2', 'zst'];

export function debOptions(repo: RepoDoc): DebOptions {
  const list = (k: string): string[] | undefined => {
    const v = repo.options?.[k];
    if (v === undefined) return undefined;
    const arr = (Array.isArray(v) ? v : String(v).split(',')).map((x) => String(x).trim()).filter(Boolean);
    return arr.length ? arr : undefined;
  };
  return {
    dists: list('dists') ?? ['stable'],
    components: list('components'),
    architectures: list('architectures'),
    gpgKey: repo.gpg_key,
  };
}

/** Streams Packages stanzas into deb units and published pool paths of the plan. */
class PackageReader {
  /** Stanzas read, across indexes (one package may be in several). */
  count = 0;

  constructor(
    private readonly repo: RepoDoc,
    private readonly storageRoot: string,
    private readonly plan: Plan,
  ) {}

  async add(s: Stanza, n: number, source: string): Promise<void> {
    const what = `${source}: stanza ${n}${s.get('package') ? ` (${s.get('package')})` : ''}`;
    for (const k of ['package', 'version', 'architecture', 'filename', 'size', 'sha256']) {
      if (!s.get(k)) throw new BadMetadata(`${what}: missing ${k === 'sha256' ? 'SHA256' : k} field`);
    }
    const filename = s.get('filename')!;
    if (!isSafeRelativePath(filename)) throw new BadMetadata(`${what}: unsafe Filename "${filename}"`);
    const sha256 = s.get('sha256')!.toLowerCase();
    if (!/^[0-9a-f]{64}$/.test(sha256)) throw new BadMetadata(`${what}: bad SHA256 "${sha256.slice(0, 80)}"`);
    const sizeText = s.get('size')!;
    if (!/^\d+$/.test(sizeText) || !Number.isSafeInteger(Number(sizeText))) {
      throw new BadMetadata(`${what}: bad Size "${sizeText}"`);
    }
    const size = Number(sizeText);
    const key = {
      name: s.get('package')!,
      version: s.get('version')!,
      architecture: s.get('architecture')!,
      checksumtype: 'sha256',
      checksum: sha256,
    };
    const id = unitId('deb', key);
    const basename = path.posix.basename(filename);
    const storagePath = unitStoragePath(this.storageRoot, 'deb', key.checksum, basename);
    this.count++;
    // A Filename in several indexes, or a unit at two Filenames: the plan keeps the first (plan.check).
    await this.plan.unit({
      unit: {
        _id: id,
        unit_type_id: 'deb',
        unit_key: key,
        files: [
          {
            relative_path: basename,
            size,
            checksum: key.checksum,
            checksum_algorithm: 'sha256',
            storage_path: storagePath,
          },
        ],
        metadata: { filename, size },
      },
      urls: new Map([[storagePath, feedUrl(this.repo.feed, filename)]]),
    });
    await this.plan.publish(
      { relative_path: filename, unit_id: id, unit_type_id: 'deb', target: storagePath },
      what,
    );
  }
}

export async function planDebSync(repo: RepoDoc, deps: ImporterDeps, plan: Plan): Promise<void> {
  const opts = debOptions(repo);
  const stage = new MetadataStage(repo, deps, 'deb_metadata');
  const packages = new PackageReader(repo, deps.storageRoot, plan);
  try {
    for (const dist of opts.dists) await planDist(dist, opts, stage, packages, deps);
    await plan.check({
      reserved: (p) => stage.has(p),
      conflict: (p) =>
        new BadMetadata(`${p.at}: ${p.relative_path} is listed with different contents elsewhere`),
      clash: (p) => new BadMetadata(`package Filename ${p.relative_path} clashes with metadata`),
    });
    const meta = await stage.commit();
    await plan.add(meta);
    deps.logger.info(
      { event: 'deb.plan', repo: repo._id, packages: packages.count, metadata: meta.published.length },
      'deb metadata read',
    );
  } finally {
    await stage.discard();
  }
}

/**
 * The Release text of a distribution whose repository has a gpg key, from
 * what gpgv verified: InRelease when the feed has one (the text gpgv wrote
 * out, not a parse of the file), else Release with its Release.gpg. A
 * Release published beside a good InRelease must verify too when it has a
 * Release.gpg. Throws BadSignature when nothing signed verifies.
 */
async function verifiedRelease(
  base: string,
  files: {
    inRelease?: StagedFile | undefined;
    release?: StagedFile | undefined;
    releaseGpg?: StagedFile | undefined;
  },
  key: string,
  workingDir: string,
): Promise<{ text: string; name: string }> {
  const { inRelease, release, releaseGpg } = files;
  if (release && releaseGpg) {
    await verifySignature({
      key,
      signed: release.temp,
      signature: releaseGpg.temp,
      what: `${base}/Release`,
      workingDir,
    });
  }
  if (inRelease) {
    const output = `${inRelease.temp}.verified`;
    try {
      await verifySignature({ key, signed: inRelease.temp, output, what: `${base}/InRelease`, workingDir });
      return { text: await readFile(output, 'utf8'), name: `${base}/InRelease` };
    } finally {
      await rm(output, { force: true });
    }
  }
  if (!releaseGpg)
    throw new BadSignature(`${base}/Release: not signed (no Release.gpg and no InRelease on the feed)`);
  return { text: await readFile(release!.temp, 'utf8'), name: `${base}/Release` };
}

async function planDist(
  dist: string,
  opts: DebOptions,
  stage: MetadataStage,
  packages: PackageReader,
  deps: ImporterDeps,
): Promise<void> {
  const base = `dists/${dist}`;
  if (!isSafeRelativePath(base)) throw new BadMetadata(`bad distribution name "${dist}"`);
  const inRelease = await stage.fetch(`${base}/InRelease`, { optional: true });
  const release = await stage.fetch(`${base}/Release`, { optional: true });
  const releaseGpg = release ? await stage.fetch(`${base}/Release.gpg`, { optional: true }) : undefined;
  if (!inRelease && !release) {
    throw new FeedUnreachable(
      `distribution "${dist}": neither ${base}/InRelease nor ${base}/Release on the feed (HTTP 404)`,
    );
  }
  const { text, name: relName } = opts.gpgKey
    ? await verifiedRelease(base, { inRelease, release, releaseGpg }, opts.gpgKey, deps.workingDir)
    : release
      ? { text: await readFile(release.temp, 'utf8'), name: `${base}/Release` }
      : {
          text: clearsignedBody(await readFile(inRelease!.temp, 'utf8'), `${base}/InRelease`),
          name: `${base}/InRelease`,
        };
  const rel = parseRelease(text, relName);

  const components = opts.components ?? rel.components;
  if (components.length === 0)
    throw new BadMetadata(`${relName}: no Components field; set the repository's components`);
  for (const c of components) {
    if (rel.components.length && !rel.components.includes(c)) {
      throw new BadMetadata(`${relName}: no component "${c}" (it lists ${rel.components.join(', ')})`);
    }
  }
  const explicitArches = opts.architectures !== undefined;
  const staged: StagedFile[] = [];
  const fetchListed = async (rp: string): Promise<StagedFile | undefined> => {
    const entry = rel.files.get(rp)!;
    const digests: ExpectedDigest[] = [];
    if (entry.sha256) digests.push({ algorithm: 'sha256', checksum: entry.sha256 });
    if (entry.sha512) digests.push({ algorithm: 'sha512', checksum: entry.sha512 });
    // Mirrors commonly omit some listed variants (Debian's omit plain Packages): 404 is fine.
    const f = await stage.fetch(`${base}/${rp}`, {
      digests,
      size: entry.size,
      optional: true,
      listedIn: relName,
    });
    if (f) staged.push(f);
    return f;
  };

  for (const comp of components) {
    const arches = opts.architectures ?? architecturesOf(rel, comp);
    for (const arch of arches) {
      const dir = `${comp}/binary-${arch}`;
      const listed = filesIn(rel, dir);
      const indexes = listed.filter((n) => PACKAGES_RE.test(n));
      if (indexes.length === 0) {
        if (arch === 'all' || !explicitArches) continue;
        throw new BadMetadata(`${relName}: lists no Packages index for ${dir}`);
      }
      const got: StagedFile[] = [];
      for (const n of listed) {
        const f = await fetchListed(`${dir}/${n}`);
        if (f && PACKAGES_RE.test(n)) got.push(f);
      }
      if (got.length === 0) {
        throw new BadMetadata(
          `${relName}: none of the Packages indexes listed for ${dir} is on the feed (HTTP 404)`,
        );
      }
      got.sort((a, b) => rank(a.relative_path) - rank(b.relative_path));
      await readIndex(got[0]!, rel.files.get(`${dir}/Packages`)?.sha256, packages);
    }
    for (const n of filesIn(rel, `${comp}/i18n`)) {
      if (/^(Translation-[^/]+|Index)$/.test(n)) await fetchListed(`${comp}/i18n/${n}`);
    }
  }

  if (rel.acquireByHash) {
    for (const f of staged) {
      const dir = path.posix.dirname(f.relative_path);
      stage.alias(`${dir}/by-hash/SHA256/${f.sha256}`, f);
      if (f.digests.sha512) stage.alias(`${dir}/by-hash/SHA512/${f.digests.sha512}`, f);
    }
  }
  deps.logger.debug({ event: 'deb.dist', dist, files: staged.length }, 'distribution metadata staged');
}

/** Names (no subdirectories) the Release lists directly in `dir`. */
function filesIn(rel: Release, dir: string): string[] {
  const out: string[] = [];
  for (const p of rel.files.keys()) {
    if (!p.startsWith(`${dir}/`)) continue;
    const name = p.slice(dir.length + 1);
    if (name && !name.includes('/')) out.push(name);
  }
  return out.sort();
}

/** Architectures with a Packages index for `comp`, from the Architectures field or the file list. */
function architecturesOf(rel: Release, comp: string): string[] {
  const arches = new Set(rel.architectures);
  for (const p of rel.files.keys()) {
    const m = /^(.+)\/binary-([^/]+)\/Packages/.exec(p);
    if (m && m[1] === comp) arches.add(m[2]!);
  }
  return [...arches].sort();
}

function rank(name: string): number {
  const i = PARSE_ORDER.indexOf(compressionOf(name) ?? 'unknown');
  return i < 0 ? PARSE_ORDER.length : i;
}

/** Streams one Packages index into the package set; checks the uncompressed SHA256 when the Release has it. */
async function readIndex(
  index: StagedFile,
  plainSha256: string | undefined,
  packages: PackageReader,
): Promise<void> {
  const source = index.relative_path;
  const hash = plainSha256 ? createHash('sha256') : undefined;
  async function* hashed(): AsyncGenerator<Buffer> {
    for await (const chunk of readDecompressed(index.temp, source)) {
      hash?.update(chunk);
      yield chunk;
    }
  }
  await readStanzas(hashed(), (s, n) => packages.add(s, n, source), source);
  if (hash && plainSha256) {
    const got = hash.digest('hex');
    if (got !== plainSha256) {
      throw new BadMetadata(
        `${source}: uncompressed sha256 ${got}, Release says ${plainSha256} (checksum mismatch)`,
      );
    }
  }
}
