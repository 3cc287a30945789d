/**
 * Real package repositories built during the test run with Debian's tools:
 * RPMs with rpmbuild + createrepo_c, .debs with dpkg-deb + apt-ftparchive.
 * Apt packages needed: rpm, createrepo-c, dpkg-dev (dpkg-deb), apt-utils
 * (apt-ftparchive), xz-utils, bzip2, zstd.
 */

import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { gzipSync } from 'node:zlib';
import { execa } from 'execa';
import type { Database } from '../../src/db/index.ts';
import { unitStoragePath } from '../../src/storage/index.ts';

export const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

/** Every regular file below `dir` (following symlinks), by path relative to it. */
export async function readTree(dir: string): Promise<Map<string, Buffer>> {
  const out = new Map<string, Buffer>();
  const walk = async (d: string, rel: string) => {
    for (const e of await readdir(d, { withFileTypes: true })) {
      const r = rel ? `${rel}/${e.name}` : e.name;
      const full = path.join(d, e.name);
      // Symlinks are followed; dangling ones are skipped.
      const st = e.isSymbolicLink() ? await stat(full).catch(() => undefined) : e;
      if (st?.isDirectory()) await walk(full, r);
      else if (st?.isFile()) out.set(r, await readFile(full));
    }
  };
  await walk(dir, '');
  return out;
}

/** Replaces an upstream's files under `prefix` (e.g. "/yum/") with the tree of `dir`. */
export async function serveTree(
  files: Map<string, Buffer | string>,
  prefix: string,
  dir: string,
): Promise<void> {
  for (const k of [...files.keys()]) if (k.startsWith(prefix)) files.delete(k);
  for (const [rel, body] of await readTree(dir)) files.set(`${prefix}${rel}`, body);
}

export interface RpmSpec {
  name: string;
  version: string;
  release?: string;
}

/** Builds a small noarch RPM into `<repoDir>/Packages/noarch/`; returns its path relative to repoDir. */
export async function buildRpm(work: string, repoDir: string, p: RpmSpec): Promise<string> {
  const release = p.release ?? '1';
  const spec = path.join(work, `${p.name}.spec`);
  await mkdir(work, { recursive: true });
  await writeFile(
    spec,
    [
      `Name: ${p.name}`,
      `Version: ${p.version}`,
      `Release: ${release}`,
      `Summary: pulp-lazy test package ${p.name}`,
      'License: MIT',
      'BuildArch: noarch',
      '%description',
      `Test package ${p.name} & <friends>.`,
      '%install',
      `mkdir -p %{buildroot}/usr/share/${p.name}`,
      `echo '${p.name} ${p.version}' > %{buildroot}/usr/share/${p.name}/hello.txt`,
      '%files',
      `/usr/share/${p.name}/hello.txt`,
      '',
    ].join('\n'),
  );
  await execa('rpmbuild', [
    '--define',
    `_topdir ${path.join(work, 'rpmbuild')}`,
    '--define',
    `_rpmdir ${path.join(repoDir, 'Packages')}`,
    '--define',
    '_build_id_links none',
    '-bb',
    spec,
  ]);
  return `Packages/noarch/${p.name}-${p.version}-${release}.noarch.rpm`;
}

/** (Re)generates repodata/ with createrepo_c. */
export async function createrepo(repoDir: string, args: string[] = []): Promise<void> {
  await rm(path.join(repoDir, 'repodata'), { recursive: true, force: true });
  await execa('createrepo_c', [...args, repoDir]);
}

/** The `<data type=…>` entries of a repomd.xml: type → location href. */
export function repomdLocations(xml: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const m of xml.matchAll(/<data type="([^"]+)">[\s\S]*?<location href="([^"]+)"/g))
    out.set(m[1]!, m[2]!);
  return out;
}

/**
 * Rewrites one `<data>` entry of repomd.xml for new bytes (checksum, size,
 * optionally a new href); drops its open-checksum/open-size.
 */
export function patchRepomd(xml: string, type: string, body: Buffer, href?: string): string {
  const re = new RegExp(`<data type="${type}">[\\s\\S]*?</data>`);
  const block = re.exec(xml)?.[0];
  if (!block) throw new Error(`no ${type} in repomd`);
  let b = block
    .replace(/<checksum type="[^"]+">[^<]*<\/checksum>/, `<checksum type="sha256">${sha256(body)}</checksum>`)
    .replace(/<size>\d+<\/size>/, `<size>${body.length}</size>`)
    .replace(/\s*<open-checksum[^>]*>[^<]*<\/open-checksum>/, '')
    .replace(/\s*<open-size>\d+<\/open-size>/, '');
  if (href) b = b.replace(/<location href="[^"]+"/, `<location href="${href}"`);
  return xml.replace(block, b);
}

export interface DebSpec {
  name: string;
  version: string;
  arch?: string;
  /** More lines of long description (each becomes " <line>" in the control file and Packages). */
  description?: string[];
}

/** Builds a small .deb into `<archive>/pool/main/<x>/<name>/`; returns its Filename. */
export async function buildDeb(work: string, archive: string, p: DebSpec): Promise<string> {
  const arch = p.arch ?? 'all';
  const root = path.join(work, `${p.name}_${p.version}`);
  await rm(root, { recursive: true, force: true });
  await mkdir(path.join(root, 'DEBIAN'), { recursive: true });
  await mkdir(path.join(root, 'usr/share', p.name), { recursive: true });
  await writeFile(
    path.join(root, 'DEBIAN/control'),
    `Package: ${p.name}\nVersion: ${p.version}\nArchitecture: ${arch}\nMaintainer: Test <test@example.invalid>\nDescription: pulp-lazy test package ${p.name}\n more text\n${(p.description ?? []).map((l) => ` ${l}\n`).join('')}`,
  );
  await writeFile(path.join(root, 'usr/share', p.name, 'hello.txt'), `${p.name} ${p.version}\n`);
  const filename = `pool/main/${p.name[0]}/${p.name}/${p.name}_${p.version}_${arch}.deb`;
  await mkdir(path.dirname(path.join(archive, filename)), { recursive: true });
  await execa('dpkg-deb', ['--root-owner-group', '-Zgzip', '--build', root, path.join(archive, filename)]);
  return filename;
}

export interface AptIndexOptions {
  dist?: string;
  /** Index variants to write (default all three). */
  variants?: Array<'plain' | 'gz' | 'xz'>;
  byHash?: boolean;
}

/**
 * Writes dists/<dist>/main/binary-amd64/Packages{,.gz,.xz} with
 * `apt-ftparchive packages`, then Release with `apt-ftparchive release`.
 */
export async function aptIndexes(archive: string, opts: AptIndexOptions = {}): Promise<void> {
  const dist = opts.dist ?? 'stable';
  const distDir = path.join(archive, 'dists', dist);
  await rm(distDir, { recursive: true, force: true });
  const bin = path.join(distDir, 'main/binary-amd64');
  await mkdir(bin, { recursive: true });
  const { stdout } = await execa('apt-ftparchive', ['packages', 'pool'], {
    cwd: archive,
    stripFinalNewline: false,
  });
  const plain = Buffer.from(stdout);
  const variants = opts.variants ?? ['plain', 'gz', 'xz'];
  if (variants.includes('plain')) await writeFile(path.join(bin, 'Packages'), plain);
  if (variants.includes('gz')) await writeFile(path.join(bin, 'Packages.gz'), gzipSync(plain));
  if (variants.includes('xz')) {
    await writeFile(path.join(bin, 'Packages.xz'), await compress('xz', plain));
  }
  await writeAptRelease(archive, dist, opts.byHash ?? true);
}

/** (Re)writes dists/<dist>/Release over the files below it. */
export async function writeAptRelease(archive: string, dist: string, byHash = true): Promise<void> {
  const distDir = path.join(archive, 'dists', dist);
  await rm(path.join(distDir, 'Release'), { force: true });
  const conf = [
    `APT::FTPArchive::Release::Suite=${dist}`,
    `APT::FTPArchive::Release::Codename=${dist}`,
    'APT::FTPArchive::Release::Components=main',
    'APT::FTPArchive::Release::Architectures=amd64 all',
    ...(byHash ? ['APT::FTPArchive::Release::Acquire-By-Hash=yes'] : []),
  ].flatMap((o) => ['-o', o]);
  const { stdout } = await execa('apt-ftparchive', [...conf, 'release', '.'], {
    cwd: distDir,
    stripFinalNewline: false,
  });
  await writeFile(path.join(distDir, 'Release'), stdout);
}

const SUFFIX = { xz: '.xz', bzip2: '.bz2', zstd: '.zst' } as const;

/**
 * `plain` compressed by the `xz`, `bzip2` or `zstd` program, file to file
 * (no pipe in between whose end could be cut short).
 */
export async function compress(tool: keyof typeof SUFFIX, plain: Buffer): Promise<Buffer> {
  const dir = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-compress-'));
  try {
    const file = path.join(dir, 'data');
    await writeFile(file, plain);
    await execa(tool, ['-k', '-f', '-q', '--', file], { stdin: 'ignore' });
    return await readFile(file + SUFFIX[tool]);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

/**
 * A lazy sync's packages: each published as a symlink to its unit's storage path that dangles
 * (nothing downloaded), with a catalog entry whose URL ends with `/<feedDir>/<rel>` and whose
 * checksum and size are the package's; and no other catalog entry.
 */
export async function checkLazyPackages(
  db: Database,
  storage: string,
  publishedRepo: string,
  unitType: string,
  feedDir: string,
  blobs: Map<string, Buffer>,
  packages: string[],
): Promise<void> {
  const catalog = new Map((await db.catalog.find({}).toArray()).map((e) => [e.path, e]));
  assert.equal(catalog.size, packages.length);
  for (const rel of packages) {
    const link = path.join(publishedRepo, rel);
    assert.ok((await lstat(link)).isSymbolicLink(), rel);
    const target = await readlink(link);
    assert.equal(target, unitStoragePath(storage, unitType, sha256(blobs.get(rel)!), path.basename(rel)));
    await assert.rejects(stat(link), `${rel} dangles`);
    const e = catalog.get(target);
    assert.ok(e, `catalog entry for ${rel}`);
    assert.ok(e.url.endsWith(`/${feedDir}/${rel}`), e.url);
    assert.equal(e.checksum, sha256(blobs.get(rel)!));
    assert.equal(e.size, blobs.get(rel)!.length);
  }
}
