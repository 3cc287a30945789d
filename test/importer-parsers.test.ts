/**
 * The metadata readers on their own: repomd.xml, streamed primary.xml,
 * Release/InRelease, Packages stanzas, decompression by file name, and the
 * public URL prefixes.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { clearsignedBody, parseRelease, readStanzas, type Stanza } from '../src/importers/debian.ts';
import { compressionOf, readDecompressed } from '../src/importers/decompress.ts';
import { publicPath, publicPrefix } from '../src/importers/prefix.ts';
import { type PrimaryPackage, parseRepomd, readPrimary } from '../src/importers/rpmmd.ts';
import { compress } from './helpers/pkgrepos.ts';

const SHA = 'a'.repeat(64);

async function* chunked(text: string, size: number): AsyncGenerator<Buffer> {
  const b = Buffer.from(text);
  for (let i = 0; i < b.length; i += size) yield b.subarray(i, i + size);
}

const pkg = (i: number, extra = '') => `<package type="rpm"><name>p${i}</name><arch>noarch</arch>
<version epoch="${i}" ver="1.0" rel="2"/><checksum type="sha" pkgid="YES">${'b'.repeat(40)}</checksum>
<summary>caf\u00e9 \u4e2d &amp; &lt;x&gt;</summary><size package="${100 + i}" installed="1"/>
<location ${extra}href="Packages/p${i}.rpm"/><format><rpm:entry name="nope"/><name>not-this</name></format></package>`;

test('readPrimary streams packages across arbitrary chunk boundaries (multi-byte characters included)', async () => {
  const xml = `<?xml version="1.0"?><metadata xmlns="http://linux.duke.edu/metadata/common" xmlns:rpm="r" packages="3">${pkg(0)}${pkg(1, 'xml:base="http://mirror.example/base" ')}${pkg(2)}</metadata>`;
  for (const size of [1, 7, 4096]) {
    const got: PrimaryPackage[] = [];
    assert.equal(await readPrimary(chunked(xml, size), (p) => got.push(p)), 3);
    assert.deepEqual(
      got.map((p) => [
        p.name,
        p.epoch,
        p.version,
        p.release,
        p.arch,
        p.checksum.algorithm,
        p.size,
        p.location_href,
      ]),
      [0, 1, 2].map((i) => [`p${i}`, String(i), '1.0', '2', 'noarch', 'sha1', 100 + i, `Packages/p${i}.rpm`]),
    );
    assert.equal(got[1]!.location_base, 'http://mirror.example/base');
  }
});

test('readPrimary rejects malformed XML, wrong counts, bad fields and a foreign root', async () => {
  const cases: Array<[string, RegExp]> = [
    ['<metadata packages="1"><package><name>x</nam></package></metadata>', /not well-formed XML/],
    ['<metadata packages="1">', /not well-formed XML/],
    [`<metadata packages="2">${pkg(0)}</metadata>`, /packages="2"> but 1 packages listed/],
    [
      `<metadata>${pkg(0).replace(/<checksum[\s\S]*?<\/checksum>/, '')}</metadata>`,
      /package 1 \(p0\): missing checksum/,
    ],
    [
      `<metadata>${pkg(0).replace('type="sha"', 'type="crc32"')}</metadata>`,
      /unsupported checksum type "crc32"/,
    ],
    [`<metadata>${pkg(0).replace('b'.repeat(40), 'b'.repeat(39))}</metadata>`, /bad sha1 checksum/],
    [`<metadata>${pkg(0).replace('package="100"', 'package="-1"')}</metadata>`, /bad size "-1"/],
    ['<repomd></repomd>', /not a primary\.xml \(root element <repomd>\)/],
  ];
  for (const [xml, re] of cases) {
    await assert.rejects(
      readPrimary(chunked(xml, 5), () => {}, 'p.xml'),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'PL_BAD_METADATA', err.message);
        assert.match(err.message, /^p\.xml: /);
        assert.match(err.message, re);
        return true;
      },
    );
  }
});

test('parseRepomd reads every data entry and rejects broken ones', () => {
  const data = (type: string, more = '') =>
    `<data type="${type}"><checksum type="sha256">${SHA}</checksum><open-checksum type="sha256">${SHA}</open-checksum><location href="repodata/${type}.xml.gz"/><size>12</size>${more}</data>`;
  const md = parseRepomd(
    `<?xml version="1.0"?><repomd xmlns="x"><revision>7</revision>${data('primary')}${data('group')}</repomd>`,
  );
  assert.equal(md.revision, '7');
  assert.deepEqual(
    md.data.map((d) => [d.type, d.location_href, d.checksum.algorithm, d.size, d.open_checksum?.value]),
    [
      ['primary', 'repodata/primary.xml.gz', 'sha256', 12, SHA],
      ['group', 'repodata/group.xml.gz', 'sha256', 12, SHA],
    ],
  );
  assert.throws(() => parseRepomd(`<repomd>${data('primary')}${data('primary')}</repomd>`), /listed twice/);
  assert.throws(
    () => parseRepomd('<repomd><data type="x"><location href="a"/></data></repomd>'),
    /no <checksum>/,
  );
  assert.throws(() => parseRepomd('<metadata/>'), /not a repomd\.xml/);
  assert.throws(() => parseRepomd('<repomd><data'), /not well-formed XML/);
});

test('Release, InRelease and Packages stanzas', async () => {
  const release = `Origin: Test\nSuite: stable\nComponents: main contrib\nArchitectures: amd64 arm64\nAcquire-By-Hash: yes\nMD5Sum:\n ${'c'.repeat(32)} 10 main/binary-amd64/Packages\nSHA256:\n ${SHA} 10 main/binary-amd64/Packages\n ${'d'.repeat(64)} 5 main/binary-amd64/Packages.gz\n`;
  const r = parseRelease(release);
  assert.deepEqual(r.components, ['main', 'contrib']);
  assert.deepEqual(r.architectures, ['amd64', 'arm64']);
  assert.equal(r.acquireByHash, true);
  assert.deepEqual(r.files.get('main/binary-amd64/Packages.gz'), { size: 5, sha256: 'd'.repeat(64) });
  assert.throws(
    () => parseRelease(`Suite: x\nMD5Sum:\n ${'c'.repeat(32)} 10 Packages\n`),
    /no SHA256 file hashes/,
  );
  assert.throws(() => parseRelease(`SHA256:\n ${SHA} ten Packages\n`), /bad hash line/);

  const signed = `-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nSuite: stable\n- -dashed line\n-----BEGIN PGP SIGNATURE-----\n\nxyz\n-----END PGP SIGNATURE-----\n`;
  assert.equal(clearsignedBody(signed), 'Suite: stable\n-dashed line\n');

  const stanzas: Stanza[] = [];
  const text = 'Package: a\nDescription: one\n two\n\n\nPackage: b\r\nVersion: 1\r\n';
  assert.equal(await readStanzas(chunked(text, 3), (s) => stanzas.push(s)), 2);
  assert.equal(stanzas[0]!.get('description'), 'one\ntwo');
  assert.equal(stanzas[1]!.get('version'), '1');
  await assert.rejects(
    readStanzas(chunked(' orphan\n', 4), () => {}),
    /line 1: continuation line without a field/,
  );
});

test('decompression by file name: gz, bz2, xz, zst, plain; corrupt data is BadMetadata', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-decomp-'));
  after(() => rm(dir, { recursive: true, force: true }));
  const plain = Buffer.from('hello metadata\n'.repeat(5000));
  const files: Record<string, Buffer> = { 'x.xml': plain, 'x.xml.gz': gzipSync(plain) };
  for (const [ext, tool] of [
    ['bz2', 'bzip2'],
    ['xz', 'xz'],
    ['zst', 'zstd'],
  ] as const) {
    files[`x.xml.${ext}`] = await compress(tool, plain);
  }
  const read = async (name: string, body: Buffer) => {
    const f = path.join(dir, name);
    await writeFile(f, body);
    const chunks: Buffer[] = [];
    for await (const c of readDecompressed(f, name)) chunks.push(c);
    return Buffer.concat(chunks);
  };
  for (const [name, body] of Object.entries(files)) {
    assert.deepEqual(await read(name, body), plain, name);
    if (name === 'x.xml') continue;
    await assert.rejects(read(name, body.subarray(0, body.length - 8)), (err: Error & { code?: string }) => {
      assert.equal(err.code, 'PL_BAD_METADATA');
      assert.match(err.message, new RegExp(`^${name.replace(/\./g, '\\.')}: corrupt or truncated`));
      return true;
    });
  }
  assert.equal(compressionOf('primary.xml.zck'), undefined);
  await assert.rejects(read('p.xml.zck', plain), /unsupported compression/);
});

test('public prefixes: yum and file under /pulp/repos/, deb under /pulp/deb/', () => {
  assert.equal(publicPrefix('yum'), '/pulp/repos/');
  assert.equal(publicPrefix('file'), '/pulp/repos/');
  assert.equal(publicPrefix('deb'), '/pulp/deb/');
  assert.equal(publicPath('deb', 'debian/bookworm'), '/pulp/deb/debian/bookworm/');
});
