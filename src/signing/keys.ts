/**
 * The Ed25519 key pair for signed URLs: `signing.key` (PKCS#8 PEM, mode 0600;
 * content daemon and tasks) and `signing.pub` (SPKI PEM; the authorizer).
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import {
  closeSync,
  existsSync,
  fchmodSync,
  fsyncSync,
  mkdirSync,
  openSync,
  readFileSync,
  renameSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import path from 'node:path';
import { PulpLazyError } from '../errors.ts';

export const PRIVATE_KEY_FILE = 'signing.key';
export const PUBLIC_KEY_FILE = 'signing.pub';

/**
 * Creates the key pair in `dir` (created with mode 0700 if missing). Existing
 * keys are left alone (`created: false`) unless `force`; a missing public key
 * next to an existing private key is derived from it.
 */
export async function generateKeys(
  dir: string,
  opts: { force?: boolean } = {},
): Promise<{ privatePath: string; publicPath: string; created: boolean }> {
  const privatePath = path.join(dir, PRIVATE_KEY_FILE);
  const publicPath = path.join(dir, PUBLIC_KEY_FILE);
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const hasPrivate = existsSync(privatePath);
    const hasPublic = existsSync(publicPath);
    if (!opts.force && (hasPrivate || hasPublic)) {
      if (hasPrivate && !hasPublic) {
        const pub = createPublicKey(loadPrivateKey(dir)).export({ type: 'spki', format: 'pem' }).toString();
        writeAtomic(publicPath, pub, 0o644);
      }
      return { privatePath, publicPath, created: false };
    }
    const { privateKey, publicKey } = generateKeyPairSync('ed25519', {
      privateKeyEncoding: { type: 'pkcs8', format: 'pem' },
      publicKeyEncoding: { type: 'spki', format: 'pem' },
    });
    writeAtomic(privatePath, privateKey, 0o600);
    writeAtomic(publicPath, publicKey, 0o644);
    return { privatePath, publicPath, created: true };
  } catch (err) {
    if (err instanceof PulpLazyError) throw err;
    const code = (err as NodeJS.ErrnoException).code ?? String(err);
    throw new PulpLazyError('PL_KEY_WRITE', `cannot write signing keys in ${dir}: ${code}`, { cause: err });
  }
}

/** Loads `signing.key` from `dir`; throws PL_KEY_MISSING / PL_KEY_INVALID (exit 2). */
export function loadPrivateKey(dir: string): KeyObject {
  const file = path.join(dir, PRIVATE_KEY_FILE);
  return checkKey(createPrivateKey, readKey(file), file, 'private');
}

/** Loads `signing.pub` from `dir`; throws PL_KEY_MISSING / PL_KEY_INVALID (exit 2). */
export function loadPublicKey(dir: string): KeyObject {
  const file = path.join(dir, PUBLIC_KEY_FILE);
  const pem = readKey(file);
  // createPublicKey() would happily derive a public key from a private one.
  if (pem.includes('PRIVATE KEY')) {
    throw new PulpLazyError('PL_KEY_INVALID', `${file} holds a private key; it must hold the public key`);
  }
  return checkKey(createPublicKey, pem, file, 'public');
}

function readKey(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') {
      throw new PulpLazyError(
        'PL_KEY_MISSING',
        `signing key ${file} does not exist (run "pulp-lazy keys generate")`,
      );
    }
    throw new PulpLazyError('PL_KEY_UNREADABLE', `cannot read signing key ${file}: ${code ?? err}`, {
      cause: err,
    });
  }
}

function checkKey(
  create: (pem: string) => KeyObject,
  pem: string,
  file: string,
  type: 'private' | 'public',
): KeyObject {
  let key: KeyObject | undefined;
  try {
    key = create(pem);
  } catch {
    key = undefined;
  }
  if (!key || key.type !== type || key.asymmetricKeyType !== 'ed25519') {
    throw new PulpLazyError('PL_KEY_INVALID', `${file} is not an Ed25519 ${type} key in PEM format`);
  }
  return key;
}

/** Writes via a temp file (created with `mode`) and a rename, so readers never see half a key. */
function writeAtomic(file: string, data: string, mode: number): void {
  const tmp = `${file}.tmp-${process.pid}`;
  rmSync(tmp, { force: true });
  const fd = openSync(tmp, 'wx', mode);
  try {
    writeFileSync(fd, data);
    fchmodSync(fd, mode);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, file);
}
