/**
 * Signed upstream metadata (`repo create/update --gpg-key FILE`): the key is
 * checked when it is given, and a sync verifies the signature with `gpgv`
 * (Debian's package, the verifier apt itself uses) before anything the
 * metadata lists is read, so a bad or missing signature fails the sync with
 * the previous tree still published.
 *
 * gpgv reads binary keyrings: the key is stored as its binary packets
 * (gpg-key.ts reads armored and binary key files). gpgv runs with a private,
 * empty home directory, so no trust database or agent of the host is involved.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import { BadSignature } from '../errors.ts';
import { keyPackets } from './gpg-key.ts';

export interface VerifyInput {
  /** The repository's key as stored (armored or binary, base64 of the file's bytes). */
  key: string;
  /** What the signature covers, or the clearsigned file itself (no `signature`). */
  signed: string;
  /** A detached signature file. */
  signature?: string | undefined;
  /** Clearsigned: where gpgv writes the text it verified (what the caller should read). */
  output?: string | undefined;
  /** Names for the error message (repository-relative paths). */
  what: string;
  workingDir: string;
}

/** Runs gpgv; resolves when the signature is good, throws BadSignature otherwise. */
export async function verifySignature(v: VerifyInput): Promise<void> {
  const home = await mkdtemp(path.join(v.workingDir, 'gpgv-'));
  try {
    const keyring = path.join(home, 'key.gpg');
    await writeFile(keyring, keyPackets(Buffer.from(v.key, 'base64'), 'stored key'), { mode: 0o600 });
    const args = ['--homedir', home, '--keyring', keyring];
    if (v.output) args.push('--output', v.output);
    args.push('--', ...(v.signature ? [v.signature, v.signed] : [v.signed]));
    const r = await execa('gpgv', args, { reject: false, env: { LC_ALL: 'C' }, stdin: 'ignore' });
    if (r.exitCode === 0) return;
    if (r.failed && r.exitCode === undefined) {
      throw new BadSignature(
        `${v.what}: cannot run gpgv (${r.code ?? r.shortMessage}); install Debian's gpgv`,
      );
    }
    throw new BadSignature(`${v.what}: signature check failed: ${gpgvReason(r.stderr)}`);
  } finally {
    await rm(home, { recursive: true, force: true });
  }
}

/** gpgv's verdict line ("BAD signature from ...", "Can't check signature: No public key", ...). */
function gpgvReason(stderr: string): string {
  const lines = stderr
    .split('\n')
    .map((l) => l.replace(/^gpgv: /, '').trim())
    .filter(Boolean);
  const verdict = lines.find((l) =>
    /BAD signature|Can't check signature|no valid OpenPGP|not a detached|no signature/i.test(l),
  );
  return verdict ?? lines.at(-1) ?? 'gpgv refused it';
}
