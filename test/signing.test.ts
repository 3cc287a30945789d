import assert from 'node:assert/strict';
import { generateKeyPairSync, type KeyObject, sign, verify } from 'node:crypto';
import { mkdtemp, readFile, rm, stat, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, test } from 'node:test';
import {
  generateKeys,
  loadPrivateKey,
  loadPublicKey,
  PRIVATE_KEY_FILE,
  PUBLIC_KEY_FILE,
  SignatureError,
  type SignatureErrorCode,
  signUrl,
  stripSignature,
  verifyUrl,
} from '../src/signing/index.ts';

const { privateKey, publicKey } = generateKeyPairSync('ed25519');
const other = generateKeyPairSync('ed25519');
const NOW = 1_800_000_000_000; // ms
const TTL = 90_000;
const IP = '192.0.2.10';
const FILE = '/streamer/var/lib/pulp-lazy/content/units/rpm/ab/cdef/foo-1.0-1.x86_64.rpm';

function signed(url = FILE, extensions: Record<string, string> = { remote_ip: IP }, now = NOW): string {
  return signUrl(url, { privateKey, ttlMs: TTL, now, extensions });
}

function check(target: string, opts: { now?: number; ip?: string | null; key?: KeyObject } = {}) {
  const extensions: Record<string, string> = opts.ip === null ? {} : { remote_ip: opts.ip ?? IP };
  return verifyUrl(target, { publicKey: opts.key ?? publicKey, now: opts.now ?? NOW, extensions });
}

function param(url: string, name: string): string {
  const m = new RegExp(`[?&;]${name}=([^&;#]*)`).exec(url);
  assert.ok(m, `${name} in ${url}`);
  return m[1]!;
}

function setParam(url: string, name: string, value: string): string {
  return url.replace(new RegExp(`([?&;]${name}=)[^&;#]*`), (_, p: string) => `${p}${value}`);
}

/** Asserts a SignatureError with `code`, status 403, one line, and no signature text in the message. */
function rejects(target: string, code: SignatureErrorCode, opts: Parameters<typeof check>[1] = {}) {
  assert.throws(
    () => check(target, opts),
    (err: unknown) => {
      assert.ok(err instanceof SignatureError, `SignatureError, got ${err}`);
      assert.equal(err.code, code, err.message);
      assert.equal(err.status, 403);
      assert.doesNotMatch(err.message, /\n/);
      const sig = /signature=([A-Za-z0-9_-]{8,})/.exec(target)?.[1];
      if (sig) assert.ok(!err.message.includes(sig), 'message must not echo the signature');
      return true;
    },
  );
}

function b64(text: string): string {
  return Buffer.from(text).toString('base64url');
}

/** A URL whose policy text is `policyJson`, correctly signed with the real key. */
function withPolicy(policyJson: string, pathPart = FILE): string {
  const p = b64(policyJson);
  return `${pathPart}?policy=${p}&signature=${sign(null, Buffer.from(p), privateKey).toString('base64url')}`;
}

describe('signUrl', () => {
  test('appends policy and signature; the policy is compact JSON, the signature covers its text', () => {
    const url = signed();
    assert.match(url, /^\/streamer\/[^?]+\?policy=[A-Za-z0-9_-]+&signature=[A-Za-z0-9_-]{86}$/);
    const policyText = param(url, 'policy');
    const json = Buffer.from(policyText, 'base64url').toString();
    assert.equal(
      json,
      JSON.stringify({ resource: FILE, expiration: NOW / 1000 + 90, extensions: { remote_ip: IP } }),
    );
    const sig = Buffer.from(param(url, 'signature'), 'base64url');
    assert.equal(sig.length, 64);
    assert.ok(verify(null, Buffer.from(policyText), publicKey, sig));
  });

  test('keeps an existing query (joined with &) and a fragment; host, port and scheme are not signed', () => {
    const url = signed('https://cdn.example.test:8443/streamer/a/b.rpm?x=1;y=2#top', {});
    assert.match(
      url,
      /^https:\/\/cdn\.example\.test:8443\/streamer\/a\/b\.rpm\?x=1;y=2&policy=.+&signature=.+#top$/,
    );
    const resource = JSON.parse(Buffer.from(param(url, 'policy'), 'base64url').toString()).resource;
    assert.equal(resource, '/streamer/a/b.rpm?x=1&y=2');
    const target = url.slice('https://cdn.example.test:8443'.length, url.indexOf('#'));
    assert.equal(check(target).resource, resource);
    assert.equal(check(`http://127.0.0.1:3128${target}`).resource, resource);
  });

  test('an empty query or empty path signs cleanly', () => {
    assert.equal(check(signed('/streamer/a?')).resource, '/streamer/a');
    assert.match(signed('/streamer/a?'), /^\/streamer\/a\?policy=/);
    const root = signed('http://h.test', {});
    assert.match(root, /^http:\/\/h\.test\?policy=/);
    assert.equal(check(`/?${root.split('?')[1]}`).resource, '/');
  });

  test('expiration is now + ttl rounded up to whole seconds', () => {
    const p = check(signed(FILE, {}, NOW + 1));
    assert.equal(p.expiration, NOW / 1000 + 91);
  });

  test('refuses URLs that would not verify once a client sends them', () => {
    for (const bad of [
      'streamer/a.rpm',
      'ftp://h/a',
      '/streamer/a b.rpm',
      '/streamer/é.rpm',
      '/streamer/a%zz',
      '/streamer/a/../b',
      '/streamer/./b',
      '/streamer/%2e%2E/b',
      "/streamer/a?q=it's",
      '/streamer/a{1}',
      '/streamer/a?policy=x',
      '/streamer/a?x=1;signature=y',
    ]) {
      assert.throws(
        () => signUrl(bad, { privateKey, ttlMs: TTL }),
        (e: unknown) => (e as { code?: string }).code === 'PL_BAD_URL',
        bad,
      );
    }
    for (const ttlMs of [0, -1, Number.NaN]) {
      assert.throws(() => signUrl(FILE, { privateKey, ttlMs }), { code: 'PL_BAD_TTL' });
    }
    assert.throws(() => signUrl(FILE, { privateKey: publicKey, ttlMs: TTL }), { code: 'PL_KEY_INVALID' });
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 });
    assert.throws(() => signUrl(FILE, { privateKey: rsa.privateKey, ttlMs: TTL }), {
      code: 'PL_KEY_INVALID',
    });
    assert.throws(() => check(signed(), { key: rsa.publicKey }), { code: 'PL_KEY_INVALID' });
  });
});

describe('verifyUrl', () => {
  test('accepts a valid URL and returns its policy', () => {
    const p = check(signed());
    assert.deepEqual(p, { resource: FILE, expiration: NOW / 1000 + 90, extensions: { remote_ip: IP } });
  });

  test('a forged signature (another key) is refused', () => {
    const url = signed();
    const forged = sign(null, Buffer.from(param(url, 'policy')), other.privateKey).toString('base64url');
    rejects(setParam(url, 'signature', forged), 'PL_SIG_BAD_SIGNATURE');
    rejects(signUrl(FILE, { privateKey: other.privateKey, ttlMs: TTL, now: NOW }), 'PL_SIG_BAD_SIGNATURE');
  });

  test('a tampered policy is refused', () => {
    const url = signed();
    const policy = JSON.parse(Buffer.from(param(url, 'policy'), 'base64url').toString());
    for (const change of [
      { expiration: policy.expiration + 3600 },
      { extensions: {} },
      { resource: '/streamer/other.rpm' },
    ]) {
      rejects(setParam(url, 'policy', b64(JSON.stringify({ ...policy, ...change }))), 'PL_SIG_BAD_SIGNATURE');
    }
    // Same JSON, different text (a space): the signature covers the text.
    rejects(setParam(url, 'policy', b64(JSON.stringify(policy, null, 1))), 'PL_SIG_BAD_SIGNATURE');
  });

  test('expires at the expiration second', () => {
    const url = signed();
    const exp = NOW + TTL;
    assert.ok(check(url, { now: exp - 1 }));
    rejects(url, 'PL_SIG_EXPIRED', { now: exp });
    rejects(url, 'PL_SIG_EXPIRED', { now: exp + 3_600_000 });
  });

  test('another resource is refused: path changed by one character, or the query changed', () => {
    const url = signed(`${FILE}?x=1&y=2`);
    const q = url.slice(url.indexOf('?'));
    rejects(url.replace('foo-1.0', 'foo-1.1'), 'PL_SIG_RESOURCE_MISMATCH');
    rejects(url.replace('/streamer/', '/streamer//'), 'PL_SIG_RESOURCE_MISMATCH');
    rejects(`/streamer/other.rpm${q}`, 'PL_SIG_RESOURCE_MISMATCH');
    rejects(url.replace('x=1', 'x=2'), 'PL_SIG_RESOURCE_MISMATCH');
    rejects(url.replace('x=1&', ''), 'PL_SIG_RESOURCE_MISMATCH');
    rejects(url.replace('x=1&y=2', 'y=2&x=1'), 'PL_SIG_RESOURCE_MISMATCH');
    rejects(`${url}&z=3`, 'PL_SIG_RESOURCE_MISMATCH');
    rejects(url.replace('?x=1&y=2&', '?'), 'PL_SIG_RESOURCE_MISMATCH');
    rejects(url.replace('?', '?&'), 'PL_SIG_RESOURCE_MISMATCH');
  });

  test('a re-encoded path is another resource (%61 vs a, %2F vs %2f)', () => {
    rejects(signed('/streamer/abc.rpm').replace('/abc', '/%61bc'), 'PL_SIG_RESOURCE_MISMATCH');
    rejects(signed('/streamer/%61bc.rpm').replace('/%61bc', '/abc'), 'PL_SIG_RESOURCE_MISMATCH');
    rejects(signed('/streamer/a%2Fb').replace('%2F', '%2f'), 'PL_SIG_RESOURCE_MISMATCH');
    assert.ok(check(signed('/streamer/a%20b.rpm')));
  });

  test('the remote_ip extension binds the URL to one client address', () => {
    const url = signed();
    rejects(url, 'PL_SIG_EXTENSION_MISMATCH', { ip: '192.0.2.11' });
    rejects(url, 'PL_SIG_EXTENSION_MISMATCH', { ip: '::ffff:192.0.2.10' });
    rejects(url, 'PL_SIG_EXTENSION_MISMATCH', { ip: null });
    // A URL without extensions is valid from anywhere.
    assert.ok(check(signed(FILE, {}), { ip: '203.0.113.5' }));
    assert.ok(check(signed(FILE, {}), { ip: null }));
    // Every extension must match, not just remote_ip.
    const two = signed(FILE, { remote_ip: IP, tenant: 'a' });
    rejects(two, 'PL_SIG_EXTENSION_MISMATCH');
    assert.ok(verifyUrl(two, { publicKey, now: NOW, extensions: { remote_ip: IP, tenant: 'a' } }));
  });

  test('missing parameters: not signed', () => {
    const url = signed();
    rejects(FILE, 'PL_SIG_NOT_SIGNED');
    rejects(url.replace(/&signature=.*$/, ''), 'PL_SIG_NOT_SIGNED');
    rejects(url.replace(/policy=[^&]*&/, ''), 'PL_SIG_NOT_SIGNED');
    rejects(url.replace('policy=', 'Policy='), 'PL_SIG_NOT_SIGNED');
    rejects(url.replace('policy=', 'p%6Flicy='), 'PL_SIG_NOT_SIGNED');
  });

  test('truncated, empty, padded or re-encoded values are malformed', () => {
    const url = signed();
    const sig = param(url, 'signature');
    const pol = param(url, 'policy');
    rejects(setParam(url, 'signature', sig.slice(0, -1)), 'PL_SIG_MALFORMED');
    rejects(setParam(url, 'signature', sig.slice(0, -4)), 'PL_SIG_MALFORMED');
    rejects(setParam(url, 'signature', ''), 'PL_SIG_MALFORMED');
    rejects(url.replace(/signature=.*$/, 'signature'), 'PL_SIG_MALFORMED');
    rejects(setParam(url, 'signature', `${sig}==`), 'PL_SIG_MALFORMED');
    rejects(setParam(url, 'signature', `${sig.slice(0, 10)}%2D${sig.slice(11)}`), 'PL_SIG_MALFORMED');
    rejects(setParam(url, 'signature', Buffer.from(sig, 'base64url').toString('base64')), 'PL_SIG_MALFORMED');
    // The last character carries 2 bits; its 4 low bits must be zero (no second spelling of one signature).
    const last = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'.indexOf(sig.at(-1)!);
    const twin = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_'[last ^ 1]!;
    assert.deepEqual(Buffer.from(sig.slice(0, -1) + twin, 'base64url'), Buffer.from(sig, 'base64url'));
    rejects(setParam(url, 'signature', sig.slice(0, -1) + twin), 'PL_SIG_MALFORMED');
    for (let n = 1; n < pol.length; n += 7)
      rejects(setParam(url, 'policy', pol.slice(0, -n)), 'PL_SIG_MALFORMED');
    rejects(setParam(url, 'policy', ''), 'PL_SIG_MALFORMED');
    rejects(setParam(url, 'policy', `${pol}=`), 'PL_SIG_MALFORMED');
  });

  test('policies that are signed but malformed are refused before the signature check', () => {
    for (const json of [
      'not json',
      '[]',
      'null',
      '"text"',
      '{}',
      '{"resource":1,"expiration":1800000090,"extensions":{}}',
      `{"resource":"${FILE}","expiration":"1800000090","extensions":{}}`,
      `{"resource":"${FILE}","expiration":1800000090.5,"extensions":{}}`,
      `{"resource":"${FILE}","expiration":1800000090}`,
      `{"resource":"${FILE}","expiration":1800000090,"extensions":[]}`,
      `{"resource":"${FILE}","expiration":1800000090,"extensions":{"remote_ip":1}}`,
    ]) {
      rejects(withPolicy(json), 'PL_SIG_MALFORMED');
      // Malformed wins over a bad signature.
      rejects(setParam(withPolicy(json), 'signature', 'A'.repeat(86)), 'PL_SIG_MALFORMED');
    }
    assert.ok(check(withPolicy(`{"resource":"${FILE}","expiration":1800000090,"extensions":{},"v":2}`)));
  });

  test('duplicate policy or signature parameters are malformed, even with equal values', () => {
    const url = signed();
    rejects(`${url}&signature=${param(url, 'signature')}`, 'PL_SIG_MALFORMED');
    rejects(`${url}&policy=${param(url, 'policy')}`, 'PL_SIG_MALFORMED');
    rejects(`${url};signature=${'A'.repeat(86)}`, 'PL_SIG_MALFORMED');
  });

  test('; separators and reordered policy/signature are accepted', () => {
    const url = signed(`${FILE}?x=1&y=2`);
    const pol = `policy=${param(url, 'policy')}`;
    const sig = `signature=${param(url, 'signature')}`;
    for (const q of [
      `x=1;y=2;${pol};${sig}`,
      `${sig}&${pol}&x=1&y=2`,
      `x=1;${sig}&y=2;${pol}`,
      `${pol}&x=1&${sig}&y=2`,
    ]) {
      assert.equal(check(`${FILE}?${q}`).resource, `${FILE}?x=1&y=2`, q);
    }
    // Signing x=1;y=2 and sending x=1&y=2 is the same resource.
    const semi = signed(`${FILE}?x=1;y=2`);
    assert.ok(check(semi.replace('x=1;y=2', 'x=1&y=2')));
  });

  test('check order: signature, then expiry, then resource, then extensions', () => {
    const url = signed();
    const exp = NOW + TTL;
    rejects(setParam(url, 'signature', 'A'.repeat(86)), 'PL_SIG_BAD_SIGNATURE', { now: exp, ip: '10.0.0.1' });
    rejects(url.replace('foo', 'bar'), 'PL_SIG_EXPIRED', { now: exp, ip: '10.0.0.1' });
    rejects(url.replace('foo', 'bar'), 'PL_SIG_RESOURCE_MISMATCH', { ip: '10.0.0.1' });
  });

  test('garbage input is malformed, not a crash', () => {
    for (const t of [
      '',
      '*',
      'streamer/a?policy=a&signature=b',
      'ftp://h/a?policy=a&signature=b',
      '\u0000',
    ]) {
      rejects(t, 'PL_SIG_MALFORMED');
    }
  });
});

describe('stripSignature', () => {
  test('removes policy and signature and returns the signed resource', () => {
    const url = signed(`${FILE}?x=1;y=2`);
    assert.equal(stripSignature(url), `${FILE}?x=1&y=2`);
    assert.equal(stripSignature(url), check(url).resource);
    assert.equal(stripSignature(`http://h.test:81${signed()}`), FILE);
    assert.equal(stripSignature(`${FILE}?policy=a;x=%20;signature=b#f`), `${FILE}?x=%20`);
    assert.equal(stripSignature(FILE), FILE);
    assert.throws(() => stripSignature('nope'), { code: 'PL_SIG_MALFORMED' });
  });
});

describe('fuzz: random mutations of a valid signed URL', () => {
  test('2,000 mutations: only those that keep every signed byte are accepted', () => {
    const base = signed('/streamer/units/rpm/ab/cdef/foo-1.0.rpm?x=1&y=a%20b');
    const qIndex = base.indexOf('?');
    const segments = base.slice(qIndex + 1).split('&');
    const isSig = (s: string) => s.startsWith('policy=') || s.startsWith('signature=');
    const others = segments.filter((s) => !isSig(s)).join('&');
    const alphabet = [
      ...Array.from({ length: 95 }, (_, i) => String.fromCharCode(32 + i)),
      '\n',
      '\u0000',
      'é',
    ];
    // mulberry32: deterministic, so a failure can be replayed.
    let seed = 0x5eed1234;
    const rnd = () => {
      seed = (seed + 0x6d2b79f5) | 0;
      let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
      return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
    };
    const int = (n: number) => Math.floor(rnd() * n);
    const pick = <T>(a: readonly T[]) => a[int(a.length)]!;
    const withQuery = (segs: string[]) => `${base.slice(0, qIndex)}?${segs.join('&')}`;

    // Each mutation says whether it must still verify, from this reasoning:
    // - the signed bytes are the path, the other parameters in their order, and
    //   the policy and signature texts (one spelling each: strict base64url);
    // - '&' and ';' are interchangeable separators, policy/signature may move,
    //   and a fragment ('#...') is not part of a request.
    // Anything else changes a signed byte and must be refused.
    type Mutation = { kind: string; url: string; accept: boolean };
    const mutate = (): Mutation => {
      const kinds = [
        'flip',
        'flip',
        'flip',
        'insert',
        'truncate',
        'drop',
        'dup',
        'reorder',
        'separators',
      ] as const;
      switch (pick([...kinds, 'b64tail', 'emptyparam', 'fragment'] as const)) {
        case 'flip': {
          const i = int(base.length);
          let c = pick(alphabet);
          while (c === base[i]) c = pick(alphabet);
          const sepSwap = i > qIndex && '&;'.includes(base[i]!) && '&;'.includes(c);
          return { kind: 'flip', url: base.slice(0, i) + c + base.slice(i + 1), accept: sepSwap };
        }
        case 'insert': {
          const i = int(base.length + 1);
          const c = pick([...alphabet, '#', '#', '&', ';']);
          return {
            kind: 'insert',
            url: base.slice(0, i) + c + base.slice(i),
            accept: c === '#' && i === base.length,
          };
        }
        case 'truncate':
          return { kind: 'truncate', url: base.slice(0, int(base.length)), accept: false };
        case 'drop': {
          const segs = [...segments];
          segs.splice(int(segs.length), 1);
          return { kind: 'drop', url: withQuery(segs), accept: false };
        }
        case 'dup': {
          const segs = [...segments];
          segs.splice(int(segs.length + 1), 0, pick(segments));
          return { kind: 'dup', url: withQuery(segs), accept: false };
        }
        case 'reorder': {
          const segs = [...segments];
          for (let i = segs.length - 1; i > 0; i--) {
            const j = int(i + 1);
            [segs[i], segs[j]] = [segs[j]!, segs[i]!];
          }
          const keepsOrder = segs.filter((s) => !isSig(s)).join('&') === others;
          return { kind: 'reorder', url: withQuery(segs), accept: keepsOrder };
        }
        case 'b64tail': {
          // Another last character for the policy or signature value: even one that decodes to
          // the same bytes (ignored low bits) is refused, so each value has one spelling.
          const end = pick([base.indexOf('&signature='), base.length]);
          const b64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
          let c = pick([...b64]);
          while (c === base[end - 1]) c = pick([...b64]);
          return { kind: 'b64tail', url: base.slice(0, end - 1) + c + base.slice(end), accept: false };
        }
        case 'emptyparam': {
          // An extra separator next to '?', another separator or the end adds an empty parameter.
          const spots = [...base].flatMap((ch, i) => (i >= qIndex && '?&'.includes(ch) ? [i + 1] : []));
          const i = pick([...spots, base.length]);
          return {
            kind: 'emptyparam',
            url: base.slice(0, i) + pick(['&', ';']) + base.slice(i),
            accept: false,
          };
        }
        case 'fragment':
          return { kind: 'fragment', url: `${base}#${pick(['', 'x', 'signature=A', '?a=1'])}`, accept: true };
        default: {
          const q = segments.map((s, i) => (i === 0 ? s : `${pick(['&', ';'])}${s}`)).join('');
          return { kind: 'separators', url: `${base.slice(0, qIndex)}?${q}`, accept: true };
        }
      }
    };

    const mutations: Mutation[] = [{ kind: 'none', url: base, accept: true }];
    while (mutations.length < 2000) mutations.push(mutate());
    const wrong: string[] = [];
    const accepted: Record<string, number> = {};
    let expected = 0;
    for (const m of mutations) {
      let ok: boolean;
      try {
        check(m.url);
        ok = true;
      } catch (err) {
        if (!(err instanceof SignatureError)) throw err;
        ok = false;
      }
      if (ok) accepted[m.kind] = (accepted[m.kind] ?? 0) + 1;
      if (m.accept) expected++;
      if (ok !== m.accept) wrong.push(`${m.kind}: ${ok ? 'accepted' : 'refused'} ${JSON.stringify(m.url)}`);
    }
    assert.deepEqual(wrong, []);
    // Every kind that must be refused was refused; the accepted ones are exactly the predicted ones.
    for (const kind of ['truncate', 'drop', 'dup', 'b64tail', 'emptyparam'])
      assert.equal(accepted[kind], undefined);
    assert.equal(
      Object.values(accepted).reduce((a, b) => a + b, 0),
      expected,
    );
    assert.ok(expected > 1 && expected < 2000 / 3, `expected ${expected} accepted mutations`);
  });
});

describe('keys', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });
  const tempDir = async () => {
    const d = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-keys-'));
    dirs.push(d);
    return d;
  };

  test('generateKeys writes an Ed25519 PEM pair; private key 0600, new directory 0700', async () => {
    const dir = path.join(await tempDir(), 'etc', 'keys');
    const r = await generateKeys(dir);
    assert.deepEqual(r, {
      privatePath: path.join(dir, PRIVATE_KEY_FILE),
      publicPath: path.join(dir, PUBLIC_KEY_FILE),
      created: true,
    });
    assert.equal((await stat(dir)).mode & 0o777, 0o700);
    assert.equal((await stat(r.privatePath)).mode & 0o777, 0o600);
    assert.match(await readFile(r.privatePath, 'utf8'), /^-----BEGIN PRIVATE KEY-----\n/);
    assert.match(await readFile(r.publicPath, 'utf8'), /^-----BEGIN PUBLIC KEY-----\n/);
    const url = signUrl(FILE, { privateKey: loadPrivateKey(dir), ttlMs: TTL, now: NOW });
    assert.equal(verifyUrl(url, { publicKey: loadPublicKey(dir), now: NOW }).resource, FILE);
  });

  test('existing keys are kept unless force', async () => {
    const dir = await tempDir();
    const first = await generateKeys(dir);
    const pem = await readFile(first.privatePath, 'utf8');
    const again = await generateKeys(dir);
    assert.equal(again.created, false);
    assert.equal(await readFile(first.privatePath, 'utf8'), pem);
    const forced = await generateKeys(dir, { force: true });
    assert.equal(forced.created, true);
    assert.notEqual(await readFile(first.privatePath, 'utf8'), pem);
    assert.equal((await stat(first.privatePath)).mode & 0o777, 0o600);
  });

  test('a lone public key is not replaced; a missing public key is derived from the private key', async () => {
    const dir = await tempDir();
    const r = await generateKeys(dir);
    const pub = await readFile(r.publicPath, 'utf8');
    await unlink(r.privatePath);
    assert.equal((await generateKeys(dir)).created, false);
    assert.equal(await readFile(r.publicPath, 'utf8'), pub);

    const dir2 = await tempDir();
    const r2 = await generateKeys(dir2);
    const pub2 = await readFile(r2.publicPath, 'utf8');
    await unlink(r2.publicPath);
    assert.equal((await generateKeys(dir2)).created, false);
    assert.equal(await readFile(r2.publicPath, 'utf8'), pub2);
  });

  test('missing, invalid or swapped key files give one-line errors naming the file (exit 2)', async () => {
    const dir = await tempDir();
    for (const [load, file] of [
      [loadPrivateKey, PRIVATE_KEY_FILE],
      [loadPublicKey, PUBLIC_KEY_FILE],
    ] as const) {
      assert.throws(
        () => load(dir),
        (e: unknown) => {
          const err = e as { code: string; exitCode: number; message: string };
          assert.equal(err.code, 'PL_KEY_MISSING');
          assert.equal(err.exitCode, 2);
          assert.ok(err.message.includes(path.join(dir, file)), err.message);
          assert.doesNotMatch(err.message, /\n/);
          return true;
        },
      );
    }
    await writeFile(path.join(dir, PRIVATE_KEY_FILE), 'garbage\n');
    await writeFile(path.join(dir, PUBLIC_KEY_FILE), privateKey.export({ type: 'pkcs8', format: 'pem' }));
    assert.throws(() => loadPrivateKey(dir), { code: 'PL_KEY_INVALID', exitCode: 2 });
    assert.throws(() => loadPublicKey(dir), { code: 'PL_KEY_INVALID', exitCode: 2 });
    const rsa = generateKeyPairSync('rsa', { modulusLength: 1024 });
    await writeFile(
      path.join(dir, PRIVATE_KEY_FILE),
      rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }),
    );
    assert.throws(() => loadPrivateKey(dir), { code: 'PL_KEY_INVALID' });
  });
});
