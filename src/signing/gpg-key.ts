/**
 * OpenPGP public keys as `repo create/update --gpg-key` takes them (armored
 * or binary), turned into the binary packets gpgv reads. No process is run
 * here (the streamer loads repository settings, and with them this module).
 */
import { UsageError } from '../errors.ts';

const ARMOR = /-----BEGIN PGP PUBLIC KEY BLOCK-----\r?\n([\s\S]*?)-----END PGP PUBLIC KEY BLOCK-----/;

/** The binary OpenPGP packets of a key file's bytes (armored or binary); throws a UsageError otherwise. */
export function keyPackets(bytes: Buffer, source: string): Buffer {
  const text = bytes.toString('latin1');
  let packets = bytes;
  const m = ARMOR.exec(text);
  if (m) {
    // Armor headers ("Comment: ...") end at the first empty line; the "=XXXX" line is a CRC.
    const body = m[1]!.replace(/\r/g, '');
    const blank = body.indexOf('\n\n');
    const lines = (blank >= 0 && /^[A-Za-z-]+: /.test(body) ? body.slice(blank + 2) : body)
      .split('\n')
      .filter((l) => l !== '' && !l.startsWith('='));
    packets = Buffer.from(lines.join(''), 'base64');
  }
  if (!isPublicKeyPacket(packets)) {
    throw new UsageError(`--gpg-key ${source} is not an OpenPGP public key (armored or binary)`);
  }
  return packets;
}

/** Whether `b` starts with an OpenPGP public-key packet (tag 6, old or new format). */
function isPublicKeyPacket(b: Buffer): boolean {
  if (b.length < 2 || (b[0]! & 0x80) === 0) return false;
  const tag = b[0]! & 0x40 ? b[0]! & 0x3f : (b[0]! >> 2) & 0x0f;
  return tag === 6;
}
