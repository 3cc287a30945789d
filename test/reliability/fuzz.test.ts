/**
 * Bad input, generated from a seeded PRNG (the seed is printed; replay a
 * failure with PULP_LAZY_FUZZ_SEED=<seed>):
 *   - signed URLs, valid ones mutated in many ways, against the real verifier,
 *     the real FastCGI authorizer and the real all-in-one server: a URL may pass
 *     only when it carries a policy and signature we issued, unexpired, for
 *     exactly the resource it asks for (0 accepted that should not be);
 *   - random request paths against `pulp-lazy serve` and the streamer: secret
 *     files planted outside the storage and published roots never appear;
 *   - mutated PULP_MANIFESTs, yum (repomd.xml, primary.xml) and deb (Release,
 *     Packages) metadata through the real CLI `sync`: exit 0 or a one-line
 *     error with exit 1, never a stack trace;
 *   - mutated config files through the real CLI: exit 0 or a one-line error
 *     naming the file with exit 2.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { createAuthorizer } from '../../src/daemons/authorizer.ts';
import { createStreamer } from '../../src/daemons/streamer.ts';
import { silentLogger } from '../../src/log.ts';
import { buildRepo, createRepo } from '../../src/repos/index.ts';
import {
  loadPrivateKey,
  loadPublicKey,
  SignatureError,
  signUrl,
  verifyUrl,
} from '../../src/signing/index.ts';
import { authorize } from '../helpers/fcgi.ts';
import { freePorts } from '../helpers/proxies.ts';
import {
  assertNoStackTrace,
  fuzzSeed,
  LONG,
  mapLimit,
  type Rng,
  rawRequest,
  rng,
  runPulp,
  sha256,
  spawnPulp,
  startFaultyUpstream,
  syncFileRepo,
  waitHealthy,
} from '../helpers/reliability.ts';
import { bytes, taskEnv } from '../helpers/tasks.ts';

const SCALE = LONG ? 4 : 1;
const seed = fuzzSeed('fuzz');
const R = rng(seed);

const [port] = await freePorts(1);
const te = await taskEnv('rel-fuzz', { serve: { listen: `127.0.0.1:${port}` }, log: { level: 'warn' } });
const up = await startFaultyUpstream();
const FILES = new Map<string, Buffer>();
for (let i = 0; i < 12; i++) FILES.set(`d${i % 3}/f${i}.bin`, bytes(2000 + i * 37, `fuzz${i}`));
const repo = await syncFileRepo(te.db, te.config.paths, up, 'fz', FILES);
const bodies = new Map([...repo.values()].map((f) => [f.storagePath, f.body]));

// Secrets outside the roots: next to the roots, above them, in the working dir, in a sibling temp dir.
const TOKEN = `pl${seed.toString(36)}x${Date.now().toString(36)}`;
const SECRET_NAME = `secret-${TOKEN}.txt`;
/** What a leak would show: the secret's bytes (its name may be echoed in an error message, its content never). */
const CONTENT_TOKEN = `c0ntent${seed.toString(36)}y${Date.now().toString(36)}`;
const SECRET = `SECRET CONTENT ${CONTENT_TOKEN}`;
const sibling = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-fuzz-sibling-'));
after(() => rm(sibling, { recursive: true, force: true }));
const varLib = path.dirname(te.config.paths.storage);
const secretDirs = [te.root, varLib, te.config.paths.working, sibling, path.join(te.root, 'var')];
for (const d of secretDirs) {
  await mkdir(d, { recursive: true });
  await writeFile(path.join(d, SECRET_NAME), SECRET);
}
const leaks = (body: Buffer) => {
  const s = body.toString('latin1');
  return s.includes(CONTENT_TOKEN) || /root:[^:\n]*:0:0:/.test(s);
};

const server = spawnPulp(['serve'], te.env);
const base = `http://127.0.0.1:${port}`;
await waitHealthy(`${base}/healthz`, server);
after(() => server.stop());

const privateKey = loadPrivateKey(te.config.paths.keys);
const publicKey = loadPublicKey(te.config.paths.keys);
const otherKey = generateKeyPairSync('ed25519').privateKey;
const EXT = { remote_ip: '127.0.0.1' };

// --- the oracle for signed URLs --------------------------------------------------

interface Issued {
  policy: string;
  signature: string;
  resource: string;
  expired: boolean;
  /** The client address the policy is bound to. */
  boundTo: string | undefined;
}
/** Every policy we signed with the real key, by its text. */
const issued = new Map<string, Issued>();

function issue(target: string, opts: { now?: number; ttlMs?: number; ext?: Record<string, string> } = {}) {
  const signed = signUrl(target, {
    privateKey,
    ttlMs: opts.ttlMs ?? 600_000,
    now: opts.now ?? Date.now(),
    extensions: opts.ext ?? EXT,
  });
  const policy = /[?&]policy=([^&;#]*)/.exec(signed)![1]!;
  const signature = /[?&]signature=([^&;#]*)/.exec(signed)![1]!;
  const decoded = JSON.parse(Buffer.from(policy, 'base64url').toString()) as {
    resource: string;
    expiration: number;
    extensions: Record<string, string>;
  };
  issued.set(policy, {
    policy,
    signature,
    resource: decoded.resource,
    expired: decoded.expiration * 1000 <= Date.now() + 60_000,
    boundTo: decoded.extensions.remote_ip,
  });
  return signed;
}

/**
 * Whether a request target may pass, computed from the spec, not the code:
 * exactly one `policy` and one `signature` parameter (split on & and ;),
 * forming a pair we issued with this key, unexpired, bound to 127.0.0.1,
 * and the target's path plus its other parameters (joined by &) equal to
 * the signed resource.
 */
function mayPass(target: string): boolean {
  const noFrag = target.split('#')[0]!;
  const q = noFrag.indexOf('?');
  const p = q < 0 ? noFrag : noFrag.slice(0, q);
  const query = q < 0 ? '' : noFrag.slice(q + 1);
  const params = query ? query.split(/[&;]/) : [];
  const nameOf = (x: string) => (x.includes('=') ? x.slice(0, x.indexOf('=')) : x);
  const pol = params.filter((x) => nameOf(x) === 'policy');
  const sig = params.filter((x) => nameOf(x) === 'signature');
  if (pol.length !== 1 || sig.length !== 1) return false;
  const i = issued.get(pol[0]!.slice('policy='.length));
  if (!i || i.expired || i.boundTo !== EXT.remote_ip) return false;
  if (i.signature !== sig[0]!.slice('signature='.length)) return false;
  const rest = params.filter((x) => nameOf(x) !== 'policy' && nameOf(x) !== 'signature');
  return i.resource === (rest.length ? `${p}?${rest.join('&')}` : p);
}

const NASTY = [
  '%',
  '%2',
  '%2e',
  '%2E%2e',
  '..',
  '.',
  '/',
  '//',
  '\\',
  '%00',
  '%2f',
  '?',
  '&',
  ';',
  '=',
  '#',
  ' ',
  '+',
  '~',
  'A',
  'z',
  '0',
  '-',
  '_',
  '%25',
  'é',
  '\u202e',
];

function mutate(r: Rng, signed: string, all: string[]): string {
  const q = signed.indexOf('?');
  const path0 = signed.slice(0, q);
  const params = signed.slice(q + 1).split('&');
  const pol = params.find((x) => x.startsWith('policy='))!;
  const sig = params.find((x) => x.startsWith('signature='))!;
  const other = params.filter((x) => x !== pol && x !== sig);
  const flip = (s: string, from: number) => {
    const at = from + r.int(Math.max(1, s.length - from));
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    return `${s.slice(0, at)}${r.pick([...alphabet])}${s.slice(at + 1)}`;
  };
  const join = (p: string, ps: string[]) => `${p}?${ps.join(r.next() < 0.8 ? '&' : ';')}`;
  switch (r.int(16)) {
    case 0:
      return join(path0, [...other, flip(pol, 7), sig]);
    case 1:
      return join(path0, [...other, pol, flip(sig, 10)]);
    case 2: {
      // Another issued URL's policy and/or signature on this path.
      const donor = r.pick(all);
      const dp = /policy=[^&]*/.exec(donor)![0];
      const ds = /signature=[^&]*/.exec(donor)![0];
      return join(path0, [...other, r.next() < 0.5 ? dp : pol, r.next() < 0.5 ? ds : sig]);
    }
    case 3: {
      // The path changed by one nasty token somewhere.
      const at = 1 + r.int(path0.length);
      return join(`${path0.slice(0, at)}${r.pick(NASTY)}${path0.slice(at)}`, [...other, pol, sig]);
    }
    case 4: {
      // A path segment dropped or duplicated, or a dot segment added.
      const segs = path0.split('/');
      const i = 1 + r.int(segs.length - 1);
      const choice = r.int(3);
      if (choice === 0) segs.splice(i, 1);
      else if (choice === 1) segs.splice(i, 0, segs[i]!);
      else segs.splice(i, 0, r.pick(['..', '.', '%2e%2e', '%2E']));
      return join(segs.join('/'), [...other, pol, sig]);
    }
    case 5:
      return join(path0, [...other, 'x=1', pol, sig]);
    case 6:
      return join(path0, [...other, pol, pol, sig]);
    case 7:
      return join(path0, [...other, pol, sig, sig]);
    case 8:
      return join(path0, r.next() < 0.5 ? [...other, pol] : [...other, sig]);
    case 9:
      // Parameter names in another case or percent-encoded.
      return join(path0, [
        ...other,
        r.next() < 0.5 ? pol.replace('policy', 'Policy') : pol.replace('policy', '%70olicy'),
        sig,
      ]);
    case 10: {
      // Forged with another key: same policy text, foreign signature; or a whole foreign URL.
      const forged = signUrl(path0, { privateKey: otherKey, ttlMs: 600_000, extensions: EXT });
      return r.next() < 0.5 ? forged : join(path0, [...other, pol, /signature=[^&]*/.exec(forged)![0]]);
    }
    case 11:
      // Padding and whitespace around the values.
      return join(path0, [...other, `${pol}${r.pick(['=', '==', '%3D', ' ', '.'])}`, sig]);
    case 12:
      // Truncated anywhere.
      return signed.slice(0, 1 + r.int(signed.length - 1));
    case 13:
      // Parameters reordered (allowed), possibly with an empty parameter (not allowed).
      return join(path0, r.next() < 0.5 ? [sig, ...other, pol] : [sig, '', ...other, pol]);
    case 14: {
      // A hand-made policy (never signed by us), with a signature of ours over something else.
      const fake = Buffer.from(
        JSON.stringify({ resource: path0, expiration: Math.ceil(Date.now() / 1000) + 3600, extensions: EXT }),
      ).toString('base64url');
      return join(path0, [...other, `policy=${fake}`, sig]);
    }
    default: {
      // Random junk inserted anywhere in the whole URL.
      const at = r.int(signed.length);
      return `${signed.slice(0, at)}${r.pick(NASTY)}${r.pick(NASTY)}${signed.slice(at)}`;
    }
  }
}

/** Valid signed URLs over the repository's files (some with a query), plus expired ones. */
function corpus(r: Rng): string[] {
  const out: string[] = [];
  for (const f of repo.values()) {
    const target = `/streamer${f.storagePath}`;
    out.push(issue(target));
    out.push(issue(`${target}?arch=x86_64&v=${r.int(100)}`));
    out.push(issue(target, { now: Date.now() - 3_600_000, ttlMs: 60_000 })); // expired
    out.push(issue(target, { ext: { remote_ip: '10.1.2.3' } })); // bound to another client
  }
  return out;
}

test('signed-URL fuzz: the verifier, the FastCGI authorizer and serve accept only what was signed', async () => {
  const valid = corpus(R);
  const cases: string[] = [...valid];
  for (let i = 0; i < 3000 * SCALE; i++) cases.push(mutate(R, R.pick(valid), valid));

  // 1. The verifier.
  let accepted = 0;
  for (const target of cases) {
    let ok = false;
    try {
      verifyUrl(target, { publicKey, extensions: EXT });
      ok = true;
    } catch (err) {
      assert.ok(
        err instanceof SignatureError,
        `verifyUrl threw a non-signature error for ${JSON.stringify(target)}: ${err}`,
      );
      assert.doesNotMatch(err.message, /signature=/, 'error messages never quote the signature');
    }
    if (ok) {
      accepted++;
      assert.ok(mayPass(target), `verifyUrl accepted ${JSON.stringify(target)} (seed ${seed})`);
    }
  }
  assert.ok(accepted >= repo.size * 2, `the valid URLs were accepted (${accepted})`);

  // 2. The authorizer Apache calls, over FastCGI.
  const authorizer = createAuthorizer(
    { ...te.config, apache: { ...te.config.apache, authorizer_listen: '127.0.0.1:0' } },
    { logger: silentLogger },
  );
  const { port: aport } = await authorizer.listen();
  after(() => authorizer.close());
  let authOk = 0;
  const sample = [...valid, ...Array.from({ length: 600 * SCALE }, () => R.pick(cases))];
  for (const [i, target] of sample.entries()) {
    const a = await authorize(aport, { REQUEST_URI: target, REMOTE_ADDR: '127.0.0.1' }, 1 + (i % 60000));
    assert.ok(a.status === 200 || a.status === 403, `authorizer answered ${a.status}`);
    if (a.status === 200) {
      authOk++;
      assert.ok(mayPass(target), `the authorizer accepted ${JSON.stringify(target)} (seed ${seed})`);
    }
  }
  assert.ok(authOk >= repo.size * 2, `the authorizer accepted the valid URLs (${authOk})`);

  // 3. The all-in-one server's signed route, over raw HTTP (the target goes out byte for byte).
  let served = 0;
  const httpSample = [...valid, ...Array.from({ length: 400 * SCALE }, () => R.pick(cases))].filter(
    (t) => !/[\s#\u0080-\uffff]/.test(t),
  );
  await mapLimit(httpSample, 8, async (target) => {
    const res = await rawRequest(base, { target });
    assert.ok(!leaks(res.body), `a secret leaked for ${target}`);
    const refusedBySignature = res.status === 403 && res.body.toString().startsWith('forbidden: PL_SIG_');
    const refusedByParser = res.status === 400 && res.headers['content-type'] === undefined;
    if (refusedBySignature || refusedByParser || res.status === 0) return;
    if (!target.startsWith('/streamer/')) {
      // Not the signed route (a mutation moved it): the content routes answer; never with a file's bytes.
      assert.notEqual(res.status, 200, `${target}: 200 outside the signed route`);
      return;
    }
    assert.ok(
      mayPass(target),
      `serve let ${JSON.stringify(target)} through (HTTP ${res.status}, seed ${seed})`,
    );
    if (res.status === 200) {
      served++;
      const policy = issued.get(/[?&;]policy=([^&;#]*)/.exec(target)![1]!)!;
      const storagePath = decodeURIComponent(policy.resource.split('?')[0]!.slice('/streamer'.length));
      assert.ok(
        res.body.equals(bodies.get(storagePath)!),
        `serve answered ${target} with the signed file's bytes`,
      );
    }
  });
  assert.ok(served >= repo.size, `serve streamed the validly signed files (${served})`);
});

// --- random request paths ---------------------------------------------------------------

const SEGMENTS = [
  '..',
  '.',
  '%2e%2e',
  '%2E%2E',
  '.%2e',
  '%2e.',
  '%2e',
  '',
  '%2f',
  '%2F..',
  '%5c',
  '\\',
  '..\\..',
  '%00',
  '%c0%ae%c0%ae',
  '%252e%252e',
  '..%2f..',
  '..;',
  ';',
  '~',
  'fz',
  'd0',
  'd1',
  'f0.bin',
  'f4.bin',
  'var',
  'lib',
  'pulp-lazy',
  'work',
  'tmp',
  'etc',
  'passwd',
  'content',
  'published',
  'units',
  'file',
  SECRET_NAME,
  encodeURIComponent(SECRET_NAME),
  '.versions',
  'repodata',
  '%',
];
const PREFIXES = [
  '/pulp/content/',
  '/pulp/content/fz/',
  '/streamer/',
  '/streamer',
  '/',
  '//',
  '/pulp/',
  '/pulp/repos/',
  '',
];

function randomPath(r: Rng): string {
  const n = 1 + r.int(9);
  const segs = Array.from({ length: n }, () =>
    r.next() < 0.85 ? r.pick(SEGMENTS) : encodeURIComponent(r.bytes(1 + r.int(6)).toString('latin1')),
  );
  let p = r.pick(PREFIXES) + segs.join('/');
  if (r.next() < 0.15) p = `/streamer${path.join(varLib, ...segs.slice(0, 2))}`;
  if (r.next() < 0.1) p = `${te.root}/${segs.join('/')}`;
  if (r.next() < 0.1) p += r.pick(['?', '?x=../..', '/', '?policy=a&signature=b']);
  return p.startsWith('/') ? p : `/${p}`;
}

test('random request paths: nothing outside the storage and published roots is ever served', async () => {
  const streamer = createStreamer(
    { ...te.config, streamer: { ...te.config.streamer, listen: '127.0.0.1:0' } },
    { db: te.db, logger: silentLogger },
  );
  const saddr = (await streamer.listen()) as AddressInfo;
  after(() => streamer.close({ deadlineMs: 1000 }));
  const sbase = `http://127.0.0.1:${saddr.port}`;
  const targets = Array.from({ length: 1500 * SCALE }, () => randomPath(R));
  // Positive controls: the fuzzer's alphabet does reach real files.
  targets.push('/pulp/content/fz/d0/f0.bin', `/${[...repo.values()][1]!.storagePath.slice(1)}`);
  let ok = 0;
  await mapLimit(targets, 8, async (target) => {
    for (const b of [base, sbase]) {
      const res = await rawRequest(b, { target });
      assert.ok(!leaks(res.body), `${b}${target} leaked a secret (HTTP ${res.status}, seed ${seed})`);
      assert.ok(
        !String(res.headers.location ?? '').includes(SECRET_NAME),
        `${b}${target} redirected to a secret (seed ${seed})`,
      );
      if (
        res.status === 200 &&
        res.body.length > 0 &&
        !String(res.headers['content-type']).startsWith('text/html')
      ) {
        ok++;
        assert.ok(
          [...bodies.values()].some((x) => x.equals(res.body)),
          `${b}${target} answered 200 with bytes that are no repository file (seed ${seed})`,
        );
      }
      assert.ok(res.status < 500 || res.status === 502, `${b}${target}: HTTP ${res.status} (seed ${seed})`);
    }
  });
  assert.ok(ok >= 2, `the positive controls were served (${ok})`);
});

// --- malformed metadata through the real CLI -------------------------------------------------

const JUNK = [
  '../',
  '../../etc/passwd',
  '\0',
  '<',
  '>',
  '&',
  '"',
  ']]>',
  '<!DOCTYPE x [<!ENTITY a "aaaaaaaa">]>',
  '&a;',
  ',',
  '\n',
  '\r\n',
  ' ',
  '\t',
  '-1',
  '99999999999999999999999',
  'NaN',
  'sha1',
  '\uFEFF',
  '\u{1D518}',
  '%00',
  ':',
  'Size: 12',
  '<package>',
  '</metadata>',
  '<metadata packages="9">',
];

function mutateText(r: Rng, text: string): string {
  let t = text;
  for (let k = 1 + r.int(3); k > 0; k--) {
    const at = r.int(t.length + 1);
    switch (r.int(10)) {
      case 0:
        t = `${t.slice(0, at)}${String.fromCharCode(r.int(256))}${t.slice(at + 1)}`;
        break;
      case 1:
        t = t.slice(0, at) + t.slice(at + 1 + r.int(40));
        break;
      case 2:
        t = `${t.slice(0, at)}${r.pick(JUNK)}${t.slice(at)}`;
        break;
      case 3:
        t = t.slice(0, at);
        break;
      case 4: {
        const lines = t.split('\n');
        const i = r.int(lines.length);
        lines.splice(i, 0, lines[r.int(lines.length)]!);
        t = lines.join('\n');
        break;
      }
      case 5:
        t = t.replace(/\d+/, r.pick(['-5', '1.5', '0x10', '1e3', '99999999999999999999', '']));
        break;
      case 6:
        t = t.replace(/[0-9a-f]{64}/, r.pick(['', 'zz', '0'.repeat(63), 'A'.repeat(64), '0'.repeat(65)]));
        break;
      case 7:
        t = `${t.slice(0, at)}${'x'.repeat(100_000)}${t.slice(at)}`;
        break;
      case 8:
        t = r.next() < 0.3 ? '' : r.bytes(1 + r.int(300)).toString('latin1');
        break;
      default:
        t = t.replace(/\n/g, r.pick(['\r\n', '\r', '\n\n', '']));
    }
  }
  return t;
}

const pkgSha = (i: number) => sha256(Buffer.from(`pkg${i}`));

function yumRepo(mutatePrimary?: (s: string) => string, mutateRepomd?: (s: string) => string) {
  let primary = `<?xml version="1.0" encoding="UTF-8"?>
<metadata xmlns="http://linux.duke.edu/metadata/common" xmlns:rpm="http://linux.duke.edu/metadata/rpm" packages="2">
${[0, 1]
  .map(
    (i) => `<package type="rpm"><name>p${i}</name><arch>noarch</arch><version epoch="0" ver="1.${i}" rel="1"/>
<checksum type="sha256" pkgid="YES">${pkgSha(i)}</checksum><summary>p${i}</summary>
<size package="${100 + i}" installed="0" archive="0"/><location href="Packages/p${i}-1.${i}-1.noarch.rpm"/><format/></package>`,
  )
  .join('\n')}
</metadata>
`;
  if (mutatePrimary) primary = mutatePrimary(primary);
  const gz = gzipSync(Buffer.from(primary, 'latin1'));
  let repomd = `<?xml version="1.0" encoding="UTF-8"?>
<repomd xmlns="http://linux.duke.edu/metadata/repo"><revision>1</revision>
<data type="primary"><checksum type="sha256">${sha256(gz)}</checksum><open-checksum type="sha256">${sha256(Buffer.from(primary, 'latin1'))}</open-checksum>
<location href="repodata/primary.xml.gz"/><size>${gz.length}</size></data>
</repomd>
`;
  if (mutateRepomd) repomd = mutateRepomd(repomd);
  return new Map<string, Buffer>([
    ['repodata/repomd.xml', Buffer.from(repomd, 'latin1')],
    ['repodata/primary.xml.gz', gz],
  ]);
}

function debRepo(mutatePackages?: (s: string) => string, mutateRelease?: (s: string) => string) {
  let packages = [0, 1]
    .map(
      (i) =>
        `Package: p${i}\nVersion: 1.${i}\nArchitecture: amd64\nFilename: pool/main/p/p${i}_1.${i}_amd64.deb\nSize: ${100 + i}\nSHA256: ${pkgSha(i)}\nDescription: p${i}\n continued\n`,
    )
    .join('\n');
  if (mutatePackages) packages = mutatePackages(packages);
  const pk = Buffer.from(packages, 'latin1');
  let release = `Origin: fuzz\nSuite: stable\nCodename: stable\nArchitectures: amd64\nComponents: main\nSHA256:\n ${sha256(pk)} ${pk.length} main/binary-amd64/Packages\n`;
  if (mutateRelease) release = mutateRelease(release);
  return new Map<string, Buffer>([
    ['dists/stable/Release', Buffer.from(release, 'latin1')],
    ['dists/stable/main/binary-amd64/Packages', pk],
  ]);
}

function manifestRepo(mutate?: (s: string) => string) {
  let text = [0, 1, 2].map((i) => `dir/f${i}.bin,${pkgSha(i)},${100 + i}\n`).join('');
  if (mutate) text = mutate(text);
  return new Map<string, Buffer>([['PULP_MANIFEST', Buffer.from(text, 'latin1')]]);
}

let repoN = 0;

/** Serves `files` under a fresh feed, creates a repository of `type` on it, runs `pulp-lazy sync`. */
async function syncCase(type: 'file' | 'yum' | 'deb', files: Map<string, Buffer>) {
  const name = `c${repoN++}${type}`;
  for (const [rel, b] of files) up.files.set(`/${name}/${rel}`, b);
  await createRepo(te.db, await buildRepo({ name, type, feed: `${up.base}/${name}/` }));
  const r = await runPulp(['sync', name], te.env);
  return { name, ...r };
}

function checkCliFailure(
  r: { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string },
  what: string,
  codes: number[],
): string | undefined {
  assert.equal(r.signal, null, `${what}: killed by ${r.signal}`);
  assert.ok(codes.includes(r.code ?? -1), `${what}: exit ${r.code}: ${r.stderr.slice(0, 2000)}`);
  assertNoStackTrace(r.stderr + r.stdout, what);
  if (r.code === 0) return undefined;
  // Log lines are JSON; the error is the one other line.
  const lines = r.stderr.split('\n').filter((l) => l.trim() !== '');
  for (const l of lines.filter((x) => x.startsWith('{'))) JSON.parse(l);
  const plain = lines.filter((l) => !l.startsWith('{'));
  assert.equal(
    plain.length,
    1,
    `${what}: expected one error line, got ${JSON.stringify(plain).slice(0, 2000)}`,
  );
  assert.match(plain[0]!, /^pulp-lazy: \S/, `${what}: the error line`);
  return plain[0];
}

test('malformed manifests, yum and deb metadata: exit 0 or a one-line error through the real CLI', async () => {
  // Positive controls: the unmutated repositories sync.
  for (const [type, files] of [
    ['file', manifestRepo()],
    ['yum', yumRepo()],
    ['deb', debRepo()],
  ] as const) {
    const r = await syncCase(type, files);
    assert.equal(r.code, 0, `valid ${type} repository: ${r.stderr}`);
  }
  const per = 8 * SCALE;
  const cases: Array<{ type: 'file' | 'yum' | 'deb'; files: Map<string, Buffer>; how: string }> = [];
  for (let i = 0; i < per; i++) {
    cases.push({ type: 'file', files: manifestRepo((s) => mutateText(R, s)), how: 'manifest' });
    const y = R.int(3);
    cases.push(
      y === 0
        ? { type: 'yum', files: yumRepo(undefined, (s) => mutateText(R, s)), how: 'repomd.xml' }
        : y === 1
          ? { type: 'yum', files: yumRepo((s) => mutateText(R, s)), how: 'primary.xml (checksums redone)' }
          : {
              type: 'yum',
              files: (() => {
                const f = yumRepo();
                f.set(
                  'repodata/primary.xml.gz',
                  Buffer.from(mutateText(R, f.get('repodata/primary.xml.gz')!.toString('latin1')), 'latin1'),
                );
                return f;
              })(),
              how: 'primary.xml.gz bytes',
            },
    );
    cases.push(
      R.next() < 0.5
        ? { type: 'deb', files: debRepo(undefined, (s) => mutateText(R, s)), how: 'Release' }
        : { type: 'deb', files: debRepo((s) => mutateText(R, s)), how: 'Packages (hash redone)' },
    );
  }
  const failed = { file: 0, yum: 0, deb: 0 };
  await mapLimit(cases, 2, async (c) => {
    const r = await syncCase(c.type, c.files);
    const line = checkCliFailure(r, `sync of a mutated ${c.how} (repo ${r.name}, seed ${seed})`, [0, 1]);
    if (line) {
      failed[c.type]++;
      assert.ok(line.length < 2000, `${r.name}: a ${line.length}-character message: ${line.slice(0, 300)}…`);
    }
  });
  console.log(`# metadata fuzz: ${cases.length} mutated repositories, refused ${JSON.stringify(failed)}`);
  assert.ok(failed.file + failed.yum + failed.deb > 0, 'some mutations were refused');
});

test('malformed config files: exit 0 or a one-line error naming the file', async () => {
  const dir = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-fuzz-config-'));
  after(() => rm(dir, { recursive: true, force: true }));
  const valid = `[database]\nname = "x"\n\n[paths]\nstorage = "/srv/s"\n\n[streamer]\nlisten = "127.0.0.1:8751"\nconnect_timeout = "30s"\nsave_to_storage = true\n\n[tasks]\nconcurrency = 5\nbackoff_base = "30s"\n\n[apache]\nprotected_paths = ["a/b"]\n`;
  const semantic = [
    (s: string) => s.replace('"30s"', R.pick(['"30 parsecs"', '-1', '"1e9h"', 'true', '[]'])),
    (s: string) =>
      s.replace(
        'concurrency = 5',
        R.pick(['concurrency = 0', 'concurrency = "5"', 'concurrency = 5.5', 'concurrency = 99999']),
      ),
    (s: string) =>
      s.replace('"127.0.0.1:8751"', R.pick(['"8751"', '"unix:relative"', '"127.0.0.1:"', '""', '1'])),
    (s: string) =>
      `${s}\n[${R.pick(['nope', 'streamer.extra', 'paths'])}]\n${R.pick(['x = 1', 'storage = "relative"', 'storage = 5'])}\n`,
    (s: string) => s.replace('"a/b"', R.pick(['"../x"', '"/abs"', '""', '5'])),
    (s: string) => s.replace('storage = "/srv/s"', R.pick(['storage = "s"', 'storage = ""', 'unknown = 1'])),
  ];
  const texts = [valid];
  for (let i = 0; i < 10 * SCALE; i++) texts.push(mutateText(R, valid));
  for (let i = 0; i < 8 * SCALE; i++) texts.push(R.pick(semantic)(valid));
  let refused = 0;
  await mapLimit(texts, 2, async (text, i) => {
    const file = path.join(dir, `c${i}.toml`);
    await writeFile(file, text, 'latin1');
    const r = await runPulp(['--config', file, 'config', 'show'], { ...te.env, PULP_LAZY_CONFIG: '' });
    const line = checkCliFailure(
      r,
      `config case ${i} (seed ${seed}): ${JSON.stringify(text.slice(0, 300))}`,
      [0, 2],
    );
    if (i === 0) assert.equal(r.code, 0, `the valid config is accepted: ${r.stderr}`);
    if (line) {
      refused++;
      assert.ok(line.includes(file), `config case ${i}: the error names the file: ${line}`);
    }
  });
  assert.ok(refused > 0, 'some configs were refused');
});
