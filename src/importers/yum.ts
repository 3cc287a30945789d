/**
 * Yum (rpm-md) importer. Eager: repodata/repomd.xml, every file it lists
 * (primary, filelists, other, their sqlite variants, comps, updateinfo,
 * modules, ...), repomd.xml.asc and .treeinfo/treeinfo when present, all
 * verified and stored as `yum_metadata` units and published byte for byte.
 * Lazy: every package in primary.xml becomes an `rpm` unit with a catalog
 * entry, published at its upstream location_href (so the published
 * repomd.xml stays valid unchanged) as a link into storage.
 */
import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import type { RepoDoc } from '../db/index.ts';
import { BadMetadata, BadSignature } from '../errors.ts';
import { isSafeRelativePath } from '../publish/index.ts';
import { verifySignature } from '../signing/gpg.ts';
import { unitId, unitStoragePath } from '../storage/index.ts';
import { readDecompressed } from './decompress.ts';
import { feedUrl } from './file.ts';
import type { Plan } from './plan.ts';
import { type PrimaryPackage, parseRepomd, readPrimary } from './rpmmd.ts';
import { MetadataStage, type StagedFile } from './staging.ts';
import type { ImporterDeps } from './types.ts';

export const REPOMD = 'repodata/repomd.xml';
export const REPOMD_SIGNATURE = 'repodata/repomd.xml.asc';
/** Fetched when present; a 404 is fine (the signature must be there when the repository has a gpg key). */
export const OPTIONAL_YUM_FILES = [REPOMD_SIGNATURE, '.treeinfo', 'treeinfo'];

export async function planYumSync(repo: RepoDoc, deps: ImporterDeps, plan: Plan): Promise<void> {
  const stage = new MetadataStage(repo, deps, 'yum_metadata');
  try {
    const repomdFile = (await stage.fetch(REPOMD))!;
    const optional = new Map<string, StagedFile | undefined>();
    for (const rel of OPTIONAL_YUM_FILES) optional.set(rel, await stage.fetch(rel, { optional: true }));
    if (repo.gpg_key) {
      const asc = optional.get(REPOMD_SIGNATURE);
      if (!asc) throw new BadSignature(`${REPOMD}: not signed (no ${REPOMD_SIGNATURE} on the feed)`);
      await verifySignature({
        key: repo.gpg_key,
        signed: repomdFile.temp,
        signature: asc.temp,
        what: REPOMD,
        workingDir: deps.workingDir,
      });
    }
    const repomd = parseRepomd(await readFile(repomdFile.temp, 'utf8'), REPOMD);
    const primaryData = repomd.data.find((d) => d.type === 'primary');
    if (!primaryData) throw new BadMetadata(`${REPOMD}: lists no primary metadata`);

    let primary: StagedFile | undefined;
    for (const d of repomd.data) {
      if (d.location_base) {
        throw new BadMetadata(`${REPOMD}: <data type="${d.type}"> has an xml:base (not supported)`);
      }
      if (stage.has(d.location_href)) {
        throw new BadMetadata(`${REPOMD}: ${d.location_href} listed twice`);
      }
      const digests = [{ algorithm: d.checksum.algorithm, checksum: d.checksum.value }];
      const staged = (await stage.fetch(d.location_href, { digests, size: d.size, listedIn: REPOMD }))!;
      if (d === primaryData) primary = staged;
    }

    const source = primary!.relative_path;
    const packages = await planPackages(repo, deps, primary!, primaryData.open_checksum, plan);
    await plan.check({
      reserved: (p) => stage.has(p),
      conflict: (p) => new BadMetadata(`${source}: two different packages at location ${p.relative_path}`),
      clash: (p) => new BadMetadata(`${source}: package location ${p.relative_path} clashes with metadata`),
    });
    const meta = await stage.commit();
    await plan.add(meta);
    deps.logger.info(
      { event: 'yum.plan', repo: repo._id, packages, metadata: meta.published.length },
      'yum metadata read',
    );
  } finally {
    await stage.discard();
  }
}

/** Streams primary.xml into rpm units and published paths of the plan; returns the package count. */
async function planPackages(
  repo: RepoDoc,
  deps: ImporterDeps,
  primary: StagedFile,
  openChecksum: { algorithm: string; value: string } | undefined,
  plan: Plan,
): Promise<number> {
  const source = primary.relative_path;
  const hash = openChecksum ? createHash(openChecksum.algorithm) : undefined;
  async function* hashed(): AsyncGenerator<Buffer> {
    for await (const chunk of readDecompressed(primary.temp, source)) {
      hash?.update(chunk);
      yield chunk;
    }
  }
  const onPackage = async (p: PrimaryPackage) => {
    const href = p.location_href;
    if (!isSafeRelativePath(href))
      throw new BadMetadata(`${source}: package ${p.name}: unsafe location "${href}"`);
    const key = {
      name: p.name,
      epoch: p.epoch,
      version: p.version,
      release: p.release,
      arch: p.arch,
      checksumtype: p.checksum.algorithm,
      checksum: p.checksum.value,
    };
    const id = unitId('rpm', key);
    const basename = path.posix.basename(href);
    const storagePath = unitStoragePath(deps.storageRoot, 'rpm', p.checksum.value, basename);
    // A location listed twice, or a unit at two locations: the plan keeps the first (plan.check).
    await plan.unit({
      unit: {
        _id: id,
        unit_type_id: 'rpm',
        unit_key: key,
        files: [
          {
            relative_path: basename,
            size: p.size,
            checksum: p.checksum.value,
            checksum_algorithm: p.checksum.algorithm,
            storage_path: storagePath,
          },
        ],
        metadata: { location_href: href, size: p.size },
      },
      urls: new Map([[storagePath, packageUrl(repo.feed, href, p.location_base)]]),
    });
    await plan.publish({ relative_path: href, unit_id: id, unit_type_id: 'rpm', target: storagePath });
  };
  const count = await readPrimary(hashed(), onPackage, source);
  if (hash && openChecksum) {
    const got = hash.digest('hex');
    if (got !== openChecksum.value) {
      throw new BadMetadata(
        `${source}: uncompressed ${openChecksum.algorithm} ${got}, ${REPOMD} says ${openChecksum.value} (open-checksum mismatch)`,
      );
    }
  }
  return count;
}

/** Upstream URL of a package: below the feed, or below its xml:base when it has one. */
function packageUrl(feed: string, href: string, base: string | undefined): string {
  if (!base) return feedUrl(feed, href);
  try {
    return feedUrl(base.endsWith('/') ? base : `${base}/`, href);
  } catch {
    throw new BadMetadata(`primary.xml: bad xml:base "${base}"`);
  }
}
