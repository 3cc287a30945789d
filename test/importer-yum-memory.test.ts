/**
 * A 60,000-package primary.xml.gz (generated as text, no rpmbuild) syncs
 * with bounded memory: the CLI runs under /usr/bin/time (package `time`),
 * which reports the peak RSS of the sync process.
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { after, test } from 'node:test';
import { createGzip } from 'node:zlib';
import { execa } from 'execa';
import { connect } from '../src/db/index.ts';
import { BIN, ROOT, runCli } from './helpers/cli.ts';
import { mongoUrl } from './helpers/db.ts';
import { testEnv } from './helpers/env.ts';
import { sha256 } from './helpers/pkgrepos.ts';
import { startUpstream } from './helpers/upstream.ts';

const PACKAGES = 60_000;
/**
 * The sync runs with a V8 heap capped at HEAP_MIB: a sync that held the
 * 78 MiB (two-byte once decoded: ~155 MiB) primary.xml in memory, or a
 * DOM of it, dies of heap exhaustion. The plan itself (one small record per
 * package) needs ~130 MiB at 60,000 packages. RSS_LIMIT_MIB is generous;
 * the measured peak is reported in the test output.
 */
const HEAP_MIB = 192;
const RSS_LIMIT_MIB = 384;

function* primaryXml(n: number): Generator<string> {
  yield `<?xml version="1.0" encoding="UTF-8"?>\n<metadata xmlns="http://linux.duke.edu/metadata/common" xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="${n}">\n`;
  for (let i = 0; i < n; i++) {
    const name = `pkg-${i.toString(36)}`;
    const sum = createHash('sha256').update(`package ${i}`).digest('hex');
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

test(`a ${PACKAGES}-package primary.xml.gz syncs with bounded memory`, async (t) => {
  const env = await testEnv('yummem');
  const work = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-yummem-'));
  after(() => rm(work, { recursive: true, force: true }));
  const gzFile = path.join(work, 'primary.xml.gz');
  const open = createHash('sha256');
  let openSize = 0;
  const counted = Readable.from(
    (function* () {
      for (const s of primaryXml(PACKAGES)) {
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
  const up = await startUpstream(
    new Map<string, Buffer | string>([
      ['/big/repodata/repomd.xml', repomd],
      [`/big/${href}`, gz],
    ]),
  );
  assert.equal(
    (await runCli(['repo', 'create', 'big', '--type', 'yum', '--feed', `${up.url}big/`], { env: env.env }))
      .code,
    0,
  );

  const r = await execa(
    '/usr/bin/time',
    [
      '-f',
      'PEAK_RSS_KB=%M',
      process.execPath,
      `--max-old-space-size=${HEAP_MIB}`,
      BIN,
      'sync',
      'big',
      '--json',
    ],
    {
      env: env.env,
      cwd: ROOT,
      reject: false,
      timeout: 900_000,
    },
  );
  assert.equal(r.exitCode, 0, r.stderr);
  const summary = JSON.parse(r.stdout);
  assert.equal(summary.units, PACKAGES + 2, 'packages + primary.xml.gz + repomd.xml');
  assert.equal(summary.published, PACKAGES + 2);
  const kb = Number(/PEAK_RSS_KB=(\d+)/.exec(r.stderr)?.[1]);
  assert.ok(kb > 0, r.stderr);
  const mib = kb / 1024;
  t.diagnostic(
    `peak RSS of the sync process: ${mib.toFixed(1)} MiB for ${PACKAGES} packages (primary.xml ${(openSize / 2 ** 20).toFixed(1)} MiB, .gz ${(gz.length / 2 ** 20).toFixed(1)} MiB)`,
  );
  assert.ok(mib < RSS_LIMIT_MIB, `peak RSS ${mib.toFixed(1)} MiB >= ${RSS_LIMIT_MIB} MiB`);

  const db = await connect(mongoUrl(), env.dbName);
  t.after(() => db.close());
  assert.equal(await db.catalog.countDocuments({}), PACKAGES);
  assert.equal(up.hits.size, 5, 'repomd.xml, .asc, .treeinfo, treeinfo, primary: no package requested');
});
