/**
 * Permanent content storage: content-addressed paths, verification, and
 * the one way bytes enter storage (temp file in the working dir, verify,
 * fsync, atomic rename).
 */
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, open, rename, rm, stat } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import type { ChecksumAlgorithm } from '../db/models.ts';
import { ChecksumMismatch } from '../errors.ts';

/**
 * `<storage>/units/<type>/<ab>/<rest of digest>/<basename>`: one file shared
 * by several repositories is stored once.
 */
export function unitStoragePath(
  storageRoot: string,
  unitType: string,
  digest: string,
  basename: string,
): string {
  if (!/^[0-9a-f]{32,128}$/.test(digest)) throw new Error(`not a hex digest: ${digest}`);
  if (
    basename === '' ||
    basename.includes('/') ||
    basename === '.' ||
    basename === '..' ||
    basename.includes('\0')
  ) {
    throw new Error(`bad basename: ${JSON.stringify(basename)}`);
  }
  return path.join(storageRoot, 'units', unitType, digest.slice(0, 2), digest.slice(2), basename);
}

/** Stable unit id from a unit's type and natural key. */
export function unitId(unitType: string, key: Record<string, unknown>): string {
  const canonical = JSON.stringify(
    Object.keys(key)
      .sort()
      .map((k) => [k, key[k]]),
  );
  return createHash('sha256').update(`${unitType}\0${canonical}`).digest('hex');
}

const HASH_BLOCK = 1 << 20;

export async function hashFile(
  file: string,
  algorithm: ChecksumAlgorithm,
): Promise<{ digest: string; size: number }> {
  const h = createHash(algorithm);
  // One buffer for the whole file: a Buffer per read is garbage that lives
  // until V8's next collection, tens of MiB for a large Packages.
  const buf = Buffer.allocUnsafeSlow(HASH_BLOCK);
  const fh = await open(file, 'r');
  let size = 0;
  try {
    for (;;) {
      const { bytesRead } = await fh.read(buf, 0, HASH_BLOCK, null);
      if (bytesRead === 0) break;
      h.update(buf.subarray(0, bytesRead));
      size += bytesRead;
    }
  } finally {
    await fh.close();
  }
  return { digest: h.digest('hex'), size };
}

export interface Expected {
  size?: number | undefined;
  checksum: string;
  checksum_algorithm: ChecksumAlgorithm;
}

/** True when `file` exists with the expected size and checksum. */
export async function fileMatches(file: string, expected: Expected): Promise<boolean> {
  try {
    const st = await stat(file);
    if (!st.isFile()) return false;
    if (expected.size !== undefined && st.size !== expected.size) return false;
    const { digest } = await hashFile(file, expected.checksum_algorithm);
    return digest === expected.checksum.toLowerCase();
  } catch {
    return false;
  }
}

/** Throws ChecksumMismatch when the measured size/digest differ from the expected ones. */
export function checkDigest(what: string, got: { digest: string; size: number }, expected: Expected): void {
  if (expected.size !== undefined && got.size !== expected.size) {
    throw new ChecksumMismatch(`${what}: size ${got.size}, expected ${expected.size}`);
  }
  if (got.digest !== expected.checksum.toLowerCase()) {
    throw new ChecksumMismatch(
      `${what}: ${expected.checksum_algorithm} ${got.digest}, expected ${expected.checksum}`,
    );
  }
}

/** A host name as temp file names carry it: letters, digits, dots and dashes (never '_', their separator). */
export function tempHost(hostname: string = os.hostname()): string {
  return hostname.replace(/[^A-Za-z0-9.-]/g, '-') || 'localhost';
}

const TEMP_HOST = tempHost();

/**
 * A unique temp file name in the working dir (never derived from the
 * basename alone): `<host>_<pid>_<time>-<random>-<basename>.part`, so that a
 * restarted streamer can tell the files of a dead predecessor on this host
 * (tempWriter; temp-files.ts removeDeadWritersTemps).
 */
export async function tempPath(workingDir: string, hint: string): Promise<string> {
  const dir = path.join(workingDir, 'tmp');
  await mkdir(dir, { recursive: true });
  const safe = path
    .basename(hint)
    .replace(/[^A-Za-z0-9._-]/g, '_')
    .slice(-60);
  const unique = `${Date.now().toString(36)}-${randomBytes(6).toString('hex')}`;
  return path.join(dir, `${TEMP_HOST}_${process.pid}_${unique}-${safe}.part`);
}

/** The host and pid in a name tempPath made; undefined for any other name. */
export function tempWriter(name: string): { host: string; pid: number } | undefined {
  const m = /^([A-Za-z0-9.-]+)_([1-9]\d*)_[0-9a-z]+-[0-9a-f]{12}-.*\.part$/.exec(name);
  return m ? { host: m[1]!, pid: Number(m[2]) } : undefined;
}

/** fsyncs `temp` and renames it atomically onto `target` (creating parent dirs). */
export async function commitFile(temp: string, target: string): Promise<void> {
  const fh = await open(temp, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
  await mkdir(path.dirname(target), { recursive: true });
  try {
    await rename(temp, target);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EXDEV') throw err;
    // Working dir on another filesystem: copy next to the target, then rename there.
    const { copyFile } = await import('node:fs/promises');
    const near = `${target}.${randomBytes(6).toString('hex')}.part`;
    try {
      await copyFile(temp, near);
      const fh2 = await open(near, 'r');
      await fh2.sync().finally(() => fh2.close());
      await rename(near, target);
    } catch (copyErr) {
      // Nothing half-copied stays beside the stored files; the temp file is the caller's.
      await rm(near, { force: true });
      throw copyErr;
    }
    await rm(temp, { force: true });
  }
  // Make the rename durable.
  const dh = await open(path.dirname(target), 'r');
  await dh
    .sync()
    .catch(() => {})
    .finally(() => dh.close());
}
