/**
 * Signed, expiring URLs (the redirect from the content daemon to the
 * streamer proxy). A signed URL is the URL plus two query parameters:
 *
 *   policy    = base64url(JSON {resource, expiration, extensions}), no padding
 *   signature = base64url(Ed25519 signature over the policy text as it
 *               appears in the URL)
 *
 * `resource` is the raw path (still percent-encoded) plus `?` and the other
 * query parameters in their order, joined by '&'. Scheme, host and port are
 * not signed (proxies change them). '&' and ';' separate parameters alike,
 * and `policy`/`signature` may appear anywhere in the query.
 *
 * Error messages never contain the signature.
 */
import { type KeyObject, sign, verify } from 'node:crypto';
import { PulpLazyError } from '../errors.ts';
import { REQUEST_ID_PARAM } from '../http/request-id.ts';
import { SignatureError } from './errors.ts';
import { paramName, parseTarget, resourceOf } from './target.ts';

export interface Policy {
  resource: string;
  /** Epoch seconds; the URL is valid while now < expiration. */
  expiration: number;
  extensions: Record<string, string>;
}

const POLICY = 'policy';
const SIGNATURE = 'signature';
const SIGNATURE_BYTES = 64;
const BASE64URL = /^[A-Za-z0-9_-]+$/;
/** RFC 3986 path and query characters (the query also allows '?'). */
const PATH_CHARS = /^(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/]|%[0-9A-Fa-f]{2})*$/;
const QUERY_CHARS = /^(?:[A-Za-z0-9\-._~!$&'()*+,;=:@/?]|%[0-9A-Fa-f]{2})*$/;

/** Signs `url` (an http(s) URL or a request target such as `/streamer/a/b.rpm?x=1`). */
export function signUrl(
  url: string,
  opts: { privateKey: KeyObject; ttlMs: number; now?: number; extensions?: Record<string, string> },
): string {
  const t = checkSignable(url);
  assertEd25519(opts.privateKey, 'private');
  if (!Number.isFinite(opts.ttlMs) || opts.ttlMs <= 0) {
    throw new PulpLazyError(
      'PL_BAD_TTL',
      `signing TTL must be a positive number of milliseconds, got ${opts.ttlMs}`,
    );
  }
  const now = opts.now ?? Date.now();
  const extensions: Record<string, string> = {};
  for (const [k, v] of Object.entries(opts.extensions ?? {})) {
    if (typeof v !== 'string') throw new PulpLazyError('PL_BAD_EXTENSION', `extension ${k} must be a string`);
    extensions[k] = v;
  }
  const policy: Policy = {
    resource: resourceOf(t.path, t.params),
    expiration: Math.ceil((now + opts.ttlMs) / 1000),
    extensions,
  };
  const policyText = Buffer.from(JSON.stringify(policy)).toString('base64url');
  const signature = sign(null, Buffer.from(policyText), opts.privateKey).toString('base64url');
  const hash = url.indexOf('#');
  const base = hash < 0 ? url : url.slice(0, hash);
  const fragment = hash < 0 ? '' : url.slice(hash);
  const sep = t.query === undefined ? '?' : t.query === '' ? '' : '&';
  return `${base}${sep}${POLICY}=${policyText}&${SIGNATURE}=${signature}${fragment}`;
}

/**
 * Checks a signed URL or raw request target (Apache's REQUEST_URI) and
 * returns its policy, or throws a SignatureError. Checks in order: signed,
 * well-formed, signature, expiry, resource, extensions.
 */
export function verifyUrl(
  requestTarget: string,
  opts: { publicKey: KeyObject; now?: number; extensions?: Record<string, string> },
): Policy {
  assertEd25519(opts.publicKey, 'public');
  const t = parseTarget(requestTarget);
  if (!t) throw new SignatureError('PL_SIG_MALFORMED', 'not an http(s) URL or a request target');
  let policyText: string | undefined;
  let signatureText: string | undefined;
  let policyCount = 0;
  let signatureCount = 0;
  const rest: string[] = [];
  for (const p of t.params) {
    const name = paramName(p);
    if (name === POLICY) {
      policyCount++;
      policyText = p.slice(name.length + 1);
    } else if (name === SIGNATURE) {
      signatureCount++;
      signatureText = p.slice(name.length + 1);
    } else if (name !== REQUEST_ID_PARAM) rest.push(p); // the request id is not signed
  }
  if (policyCount === 0 || signatureCount === 0) {
    const missing = [policyCount ? '' : POLICY, signatureCount ? '' : SIGNATURE]
      .filter(Boolean)
      .join(' and ');
    throw new SignatureError('PL_SIG_NOT_SIGNED', `URL is not signed (no ${missing} parameter)`);
  }
  if (policyCount > 1 || signatureCount > 1) {
    throw new SignatureError('PL_SIG_MALFORMED', 'duplicate policy or signature parameter');
  }
  const policy = decodePolicy(policyText!);
  const sig = decodeBase64url(signatureText!);
  if (!sig || sig.length !== SIGNATURE_BYTES) {
    throw new SignatureError('PL_SIG_MALFORMED', 'signature parameter is not a base64url Ed25519 signature');
  }
  if (!checkSignature(policyText!, sig, opts.publicKey))
    throw new SignatureError('PL_SIG_BAD_SIGNATURE', 'signature does not match the policy');

  const nowSec = Math.floor((opts.now ?? Date.now()) / 1000);
  if (policy.expiration <= nowSec) {
    throw new SignatureError(
      'PL_SIG_EXPIRED',
      `URL expired ${nowSec - policy.expiration}s ago (at ${new Date(policy.expiration * 1000).toISOString()})`,
    );
  }
  const resource = resourceOf(t.path, rest);
  if (policy.resource !== resource) {
    throw new SignatureError(
      'PL_SIG_RESOURCE_MISMATCH',
      `URL was signed for ${quote(policy.resource)}, not ${quote(resource)}`,
    );
  }
  const supplied = opts.extensions ?? {};
  for (const [k, v] of Object.entries(policy.extensions)) {
    if (!Object.hasOwn(supplied, k)) {
      throw new SignatureError('PL_SIG_EXTENSION_MISMATCH', `URL is bound to ${k}, but no ${k} was supplied`);
    }
    if (supplied[k] !== v) {
      throw new SignatureError('PL_SIG_EXTENSION_MISMATCH', `URL is bound to another ${k}`);
    }
  }
  return policy;
}

/**
 * Removes the policy, signature and request id (`rid`) parameters and returns `path[?rest]`
 * with the remaining parameters joined by '&': exactly the signed resource,
 * so every client of one file gives the cache one key.
 */
export function stripSignature(requestTarget: string): string {
  const t = parseTarget(requestTarget);
  if (!t) throw new SignatureError('PL_SIG_MALFORMED', 'not an http(s) URL or a request target');
  return resourceOf(
    t.path,
    t.params.filter((p) => ![POLICY, SIGNATURE, REQUEST_ID_PARAM].includes(paramName(p))),
  );
}

function checkSignature(policyText: string, sig: Buffer, key: KeyObject): boolean {
  try {
    return verify(null, Buffer.from(policyText), key, sig);
  } catch {
    return false;
  }
}

function decodePolicy(text: string): Policy {
  const bytes = decodeBase64url(text);
  if (!bytes) throw new SignatureError('PL_SIG_MALFORMED', 'policy parameter is not base64url');
  let value: unknown;
  try {
    value = JSON.parse(bytes.toString('utf8'));
  } catch {
    throw new SignatureError('PL_SIG_MALFORMED', 'policy is not JSON');
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new SignatureError('PL_SIG_MALFORMED', 'policy is not a JSON object');
  }
  const { resource, expiration, extensions } = value as Record<string, unknown>;
  if (typeof resource !== 'string')
    throw new SignatureError('PL_SIG_MALFORMED', 'policy resource is not a string');
  if (typeof expiration !== 'number' || !Number.isSafeInteger(expiration)) {
    throw new SignatureError('PL_SIG_MALFORMED', 'policy expiration is not an integer');
  }
  if (typeof extensions !== 'object' || extensions === null || Array.isArray(extensions)) {
    throw new SignatureError('PL_SIG_MALFORMED', 'policy extensions is not an object');
  }
  for (const v of Object.values(extensions)) {
    if (typeof v !== 'string')
      throw new SignatureError('PL_SIG_MALFORMED', 'policy extension value is not a string');
  }
  return { resource, expiration, extensions: extensions as Record<string, string> };
}

/** Strict base64url: alphabet only, no padding, canonical (no ignored trailing bits). */
function decodeBase64url(text: string): Buffer | undefined {
  if (!BASE64URL.test(text) || text.length % 4 === 1) return undefined;
  const bytes = Buffer.from(text, 'base64url');
  return bytes.toString('base64url') === text ? bytes : undefined;
}

/**
 * Parses a URL to sign and refuses one that would not verify once a client
 * sends it: characters outside RFC 3986, dot segments, or anything a WHATWG
 * URL parser (browsers, undici, Node's fetch) would rewrite.
 */
function checkSignable(url: string) {
  const bad = (why: string) => new PulpLazyError('PL_BAD_URL', `cannot sign ${quote(url)}: ${why}`);
  const t = parseTarget(url);
  if (!t) throw bad('not an http(s) URL or a path starting with "/"');
  const hash = url.indexOf('#');
  const base = hash < 0 ? url : url.slice(0, hash);
  if (t.origin && !/^https?:\/\/[A-Za-z0-9\-._~%!$&'()*+,;=:@[\]]+$/i.test(t.origin)) throw bad('bad host');
  if (!PATH_CHARS.test(t.path) || !QUERY_CHARS.test(t.query ?? '')) {
    throw bad('characters outside RFC 3986 or a bare "%" (percent-encode them)');
  }
  if (t.path.split('/').some((s) => /^(?:\.|%2e){1,2}$/i.test(s))) throw bad('"." or ".." path segment');
  const parsed = URL.canParse(base, 'http://x') ? new URL(base, 'http://x') : undefined;
  if (!parsed || parsed.pathname + parsed.search !== t.path + (t.query ? `?${t.query}` : '')) {
    throw bad('URL clients would re-encode it (percent-encode it first)');
  }
  if (t.params.some((p) => paramName(p) === POLICY || paramName(p) === SIGNATURE)) {
    throw bad('it already has a policy or signature parameter');
  }
  return t;
}

function assertEd25519(key: KeyObject, type: 'private' | 'public'): void {
  if (key?.type !== type || key.asymmetricKeyType !== 'ed25519') {
    throw new PulpLazyError('PL_KEY_INVALID', `expected an Ed25519 ${type} key`);
  }
}

/** For messages: JSON-quoted (no control characters) and shortened. */
function quote(s: string): string {
  return JSON.stringify(s.length > 200 ? `${s.slice(0, 200)}…` : s);
}
