/**
 * A generated yum repository of `n` packages (text only, no rpmbuild):
 * repomd.xml and a gzipped primary.xml shaped like a real one (several
 * lines of description, provides/requires, markup and unicode). Used by the
 * 60,000-package memory test and the catalog benchmark.
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');

export function* primaryXml(n: number): Generator<string> {
  yield `<?xml version="1.0" encoding="UTF-8"?>\n<metadata xmlns="http://linux.duke.edu/metadata/common" xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="${n}">\n`;
  for (let i = 0; i < n; i++) {
    const name = `pkg-${i.toString(36)}`;
    const sum = sha256(`package ${i}`);
    yield `<package type="rpm">
  <name>${name}</name>
  <arch>x86_64</arch>
  <version epoch="${i % 3}" ver="1.${i % 97}" rel="${i % 11}.el9"/>
  <checksum type="sha256" pkgid="YES">${sum}</checksum>
  <summary>Generated package number ${i} &amp; friends</summary>
  <description>A generated package used to check that primary.xml is streamed.
It has a description of several lines, &lt;markup&gt; and unicode: \u00e9\u00e8\u4e2d.</description>
  <packager>pulp-lazy tests</packager>
  <url>https://example.invalid/${name}</url>
  <time file="1700000000" build="1700000000"/>
  <size package="${1000 + i}" installed="${4000 + i}" archive="${4200 + i}"/>
  <location href="Packages/${name[4]}/${name}-1.${i % 97}-${i % 11}.el9.x86_64.rpm"/>
  <format>
    <rpm:license>MIT</rpm:license>
    <rpm:vendor/>
    <rpm:group>Unspecified</rpm:group>
    <rpm:buildhost>builder</rpm:buildhost>
    <rpm:sourcerpm>${name}-1.${i % 97}-${i % 11}.el9.src.rpm</rpm:sourcerpm>
    <rpm:header-range start="4504" end="${9000 + i}"/>
    <rpm:provides>
      <rpm:entry name="${name}" flags="EQ" epoch="${i % 3}" ver="1.${i % 97}" rel="${i % 11}.el9"/>
      <rpm:entry name="${name}(x86-64)" flags="EQ" epoch="${i % 3}" ver="1.${i % 97}" rel="${i % 11}.el9"/>
    </rpm:provides>
    <rpm:requires>
      <rpm:entry name="libc.so.6()(64bit)"/>
      <rpm:entry name="rtld(GNU_HASH)"/>
    </rpm:requires>
    <file>/usr/bin/${name}</file>
  </format>
</package>
`;
  }
  yield '</metadata>\n';
}

export interface GeneratedYumRepo {
  /** Repository-relative paths (`repodata/repomd.xml`, the primary) and their bodies. */
  files: Map<string, Buffer | string>;
  /** Sizes of primary.xml, uncompressed and gzipped. */
  openSize: number;
  gzSize: number;
}

/** Builds the repository's metadata for `n` packages; `work` holds the temporary .gz. */
export async function generateYumRepo(n: number, work: string): Promise<GeneratedYumRepo> {
  const gzFile = path.join(work, 'primary.xml.gz');
  const open = createHash('sha256');
  let openSize = 0;
  const counted = Readable.from(
    (function* () {
      for (const s of primaryXml(n)) {
        const b = Buffer.from(s);
        open.update(b);
        openSize += b.length;
        yield b;
      }
    })(),
  );
  await pipeline(counted, createGzip(), createWriteStream(gzFile));
  const gz = await readFile(gzFile);
  const href = `repodata/${sha256(gz)}-primary.xml.gz`;
  const repomd = `<?xml version="1.0" encoding="UTF-8"?>
<repomd xmlns="http://linux.duke.edu/metadata/repo" xmlns:rpm="http://linux.duke.edu/metadata/rpm">
  <revision>1</revision>
  <data type="primary">
    <checksum type="sha256">${sha256(gz)}</checksum>
    <open-checksum type="sha256">${open.digest('hex')}</open-checksum>
    <location href="${href}"/>
    <size>${gz.length}</size>
    <open-size>${openSize}</open-size>
  </data>
</repomd>
`;
  return {
    files: new Map<string, Buffer | string>([
      ['repodata/repomd.xml', repomd],
      [href, gz],
    ]),
    openSize,
    gzSize: gz.length,
  };
}
