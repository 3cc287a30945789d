/**
 * A generated deb repository of `n` packages (text only, no .deb builds):
 * dists/stable/Release and main/binary-amd64/Packages, plain and gzipped,
 * with stanzas shaped like Debian's (multi-line descriptions, dependency
 * lists, unicode; about 850 bytes each, so 60,000 packages make a ~50 MB
 * Packages). Used by the sync memory benchmark (bench/syncmem.ts) and the
 * streaming tests.
 */
import { createHash } from 'node:crypto';
import { gzipSync } from 'node:zlib';

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
const md5 = (b: Buffer | string) => createHash('md5').update(b).digest('hex');

/** The pool path of generated package `i`. */
export function debFilename(i: number): string {
  const name = `pkg-${i.toString(36)}`;
  return `pool/main/${name[4]}/${name}/${name}_1.${i % 97}-${i % 11}_amd64.deb`;
}

/** One Packages stanza (ends with its blank line). */
export function debStanza(i: number): string {
  const name = `pkg-${i.toString(36)}`;
  return `Package: ${name}
Source: ${name}-src (1.${i % 97})
Version: 1.${i % 97}-${i % 11}
Installed-Size: ${4000 + i}
Maintainer: pulp-lazy tests <tests@example.invalid>
Architecture: amd64
Depends: libc6 (>= 2.34), libgcc-s1 (>= 3.0), libstdc++6 (>= 12), zlib1g (>= 1:1.2.0), libssl3 (>= 3.0.0)
Recommends: ca-certificates
Description: generated package number ${i} for the sync benchmark
 A generated package used to check that Packages indexes are streamed. It
 has a description of several lines, as real packages do, with unicode:
 \u00e9\u00e8\u4e2d, and a list:
  * one item;
  * another item.
 .
 And a second paragraph, so that the stanza is about as long as Debian's.
Homepage: https://example.invalid/${name}
Description-md5: ${md5(`description ${i}`)}
Section: utils
Priority: optional
Filename: ${debFilename(i)}
Size: ${1000 + i}
MD5sum: ${md5(`package ${i}`)}
SHA256: ${sha256(`package ${i}`)}

`;
}

export interface GeneratedDebRepo {
  /** Repository-relative paths (`dists/stable/Release`, the indexes) and their bodies. */
  files: Map<string, Buffer>;
  /** Size of the plain Packages index. */
  packagesSize: number;
}

/** Builds dists/stable for `n` packages (component main, architecture amd64); `stanza` writes each. */
export function generateDebRepo(n: number, stanza: (i: number) => string = debStanza): GeneratedDebRepo {
  const parts: Buffer[] = [];
  for (let i = 0; i < n; i++) parts.push(Buffer.from(stanza(i)));
  const plain = Buffer.concat(parts);
  parts.length = 0;
  const gz = gzipSync(plain, { level: 6 });
  const dir = 'main/binary-amd64';
  const indexes: Array<[string, Buffer]> = [
    [`${dir}/Packages`, plain],
    [`${dir}/Packages.gz`, gz],
  ];
  const release = `Origin: pulp-lazy
Label: pulp-lazy
Suite: stable
Codename: stable
Date: Mon, 07 Dec 2026 00:00:00 UTC
Architectures: amd64
Components: main
SHA256:
${indexes.map(([p, b]) => ` ${sha256(b)} ${String(b.length).padStart(16)} ${p}`).join('\n')}
`;
  return {
    files: new Map<string, Buffer>([
      ['dists/stable/Release', Buffer.from(release)],
      ...indexes.map(([p, b]) => [`dists/stable/${p}`, b] as [string, Buffer]),
    ]),
    packagesSize: plain.length,
  };
}
