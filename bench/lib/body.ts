/**
 * Deterministic bench bodies, made on the fly (no disk): a 1 MiB pseudo-random
 * block repeated, the first 8 bytes replaced by the seed so every object has
 * its own digest. The origin (bench/origin.ts) sends them; the bench computes
 * their sha256 for the file-repo manifests.
 */
import { createHash } from 'node:crypto';

export const BLOCK = 1 << 20;

const base = (() => {
  const b = Buffer.alloc(BLOCK);
  let x = 0x9e3779b9;
  for (let i = 0; i < BLOCK; i += 4) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    b.writeUInt32LE(x >>> 0, i);
  }
  return b;
})();

/** Block `i` of the object with `seed` (the shared block for i > 0: do not modify). */
export function block(seed: number, i: number): Buffer {
  if (i > 0) return base;
  const first = Buffer.from(base);
  first.writeBigUInt64BE(BigInt(seed), 0);
  return first;
}

/** The blocks of a `size`-byte object, last one cut to size. */
export function* blocks(seed: number, size: number): Generator<Buffer> {
  for (let i = 0, off = 0; off < size; i++, off += BLOCK) {
    const b = block(seed, i);
    yield off + BLOCK <= size ? b : b.subarray(0, size - off);
  }
}

/** Whole body (for small objects). */
export function body(seed: number, size: number): Buffer {
  return Buffer.concat([...blocks(seed, size)]);
}

export function sha256Of(seed: number, size: number): string {
  const h = createHash('sha256');
  for (const b of blocks(seed, size)) h.update(b);
  return h.digest('hex');
}
