/**
 * Cost of verifyUrl against a bare Ed25519 verify, in the same run:
 *   node --import tsx bench/signing.ts
 */
import { generateKeyPairSync, verify } from 'node:crypto';
import { signUrl, verifyUrl } from '../src/signing/index.ts';

const { privateKey, publicKey } = generateKeyPairSync('ed25519');
const extensions = { remote_ip: '192.0.2.10' };
const url = signUrl('/streamer/var/lib/pulp-lazy/content/units/rpm/ab/cdef0123456789/foo-1.0-1.x86_64.rpm', {
  privateKey,
  ttlMs: 3_600_000,
  extensions,
});
const policy = Buffer.from(/policy=([\w-]+)/.exec(url)![1]!);
const sig = Buffer.from(/signature=([\w-]+)/.exec(url)![1]!, 'base64url');
const N = Number(process.argv[2] ?? 20_000);

function perOp(fn: () => unknown): number {
  for (let i = 0; i < 1000; i++) fn();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) fn();
  return Number(process.hrtime.bigint() - t0) / 1000 / N;
}

for (let round = 1; round <= 3; round++) {
  const raw = perOp(() => verify(null, policy, publicKey, sig));
  const full = perOp(() => verifyUrl(url, { publicKey, extensions }));
  console.log(
    `round ${round}: verifyUrl ${full.toFixed(1)} µs, bare Ed25519 verify ${raw.toFixed(1)} µs (${N} ops)`,
  );
}
console.log(`URL length ${url.length} characters`);
