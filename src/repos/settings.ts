/**
 * A repository's settings as an operator gives them (`repo create`, `repo
 * update`): each one validated into the fields of the repository document,
 * with a one-line UsageError naming the option. Certificate and key files
 * are read and checked here; the database is not touched.
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { DOWNLOAD_POLICIES, type DownloadPolicy, type RepoDoc, type UpstreamSettings } from '../db/index.ts';
import { UsageError } from '../errors.ts';
import { keyPackets } from '../signing/gpg-key.ts';
import { parseDuration } from '../util/duration.ts';

/**
 * Settings shared by create and update. Undefined: not given (create: the
 * default; update: unchanged). An empty string clears an optional setting on
 * update (`--ca-cert ''`).
 */
export interface RepoSettingsInput {
  feed?: string | undefined;
  caCertFile?: string | undefined;
  clientCertFile?: string | undefined;
  clientKeyFile?: string | undefined;
  tlsVerify?: boolean | undefined;
  proxy?: string | undefined;
  basicAuth?: string | undefined;
  protectCaFile?: string | undefined;
  /** deb filters (dists, components, architectures); an empty list clears one. */
  options?: Record<string, unknown> | undefined;
  policy?: string | undefined;
  /** `Name: value` adds or replaces a header; `Name:` removes it. */
  headers?: string[] | undefined;
  /** A positive integer; 0 puts back the default. */
  maxConnections?: string | number | undefined;
  /** Requests per second, > 0; 0 or "off": no limit. */
  rateLimit?: string | number | undefined;
  /** A duration (`6h`), or "off". */
  syncInterval?: string | undefined;
  /** OpenPGP public key file (armored or binary) that signs the upstream metadata. */
  gpgKeyFile?: string | undefined;
}

/** The shortest scheduled-sync interval accepted. */
export const MIN_SYNC_INTERVAL_MS = 60_000;

async function readPem(file: string, what: string, check: (pem: string) => void): Promise<string> {
  let pem: string;
  try {
    pem = await readFile(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read ${what} ${file}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
  try {
    check(pem);
  } catch {
    throw new UsageError(`${what} ${file} is not a valid PEM file`);
  }
  return pem;
}

const checkCert = (pem: string) => void new X509Certificate(pem);
const checkKey = (pem: string) => void createPrivateKey(pem);

/** A PEM file's text, undefined for '' (cleared). */
const pemOrClear = (file: string, what: string, check: (pem: string) => void) =>
  file === '' ? Promise.resolve(undefined) : readPem(file, what, check);

/** A key file's OpenPGP packets as stored (base64), undefined for '' (cleared). */
async function readGpgKey(file: string): Promise<string | undefined> {
  if (file === '') return undefined;
  let bytes: Buffer;
  try {
    bytes = await readFile(file);
  } catch (err) {
    throw new UsageError(`cannot read --gpg-key ${file}: ${(err as NodeJS.ErrnoException).code ?? err}`);
  }
  return keyPackets(bytes, file).toString('base64');
}

export function parseFeed(value: string): string {
  let feed: URL;
  try {
    feed = new URL(value);
  } catch {
    throw new UsageError(`bad feed URL "${value}"`);
  }
  if (feed.protocol !== 'http:' && feed.protocol !== 'https:') {
    throw new UsageError(`bad feed URL "${value}": only http and https are supported`);
  }
  if (!feed.pathname.endsWith('/')) feed.pathname += '/';
  return feed.toString();
}

function parseProxy(value: string): string | undefined {
  if (value === '') return undefined;
  try {
    const p = new URL(value);
    if (p.protocol !== 'http:' && p.protocol !== 'https:') throw new Error();
  } catch {
    throw new UsageError(`bad proxy URL "${value}"`);
  }
  return value;
}

function parseBasicAuth(value: string): UpstreamSettings['basic_auth'] {
  if (value === '') return undefined;
  const i = value.indexOf(':');
  if (i <= 0) throw new UsageError('--basic-auth must be USER:PASS');
  return { username: value.slice(0, i), password: value.slice(i + 1) };
}

export function parsePolicy(value: string): DownloadPolicy {
  if (!DOWNLOAD_POLICIES.includes(value as DownloadPolicy)) {
    throw new UsageError(`bad --policy "${value}": expected one of ${DOWNLOAD_POLICIES.join(', ')}`);
  }
  return value as DownloadPolicy;
}

/** An HTTP token (RFC 9110 field name). */
const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
/** Headers the upstream client sets itself. */
const RESERVED = new Set(['host', 'connection', 'content-length', 'transfer-encoding', 'range', 'upgrade']);

/** Applies `--header` arguments to the current list: `Name: value` sets, `Name:` removes. */
export function applyHeaders(
  current: UpstreamSettings['headers'],
  args: string[],
): NonNullable<UpstreamSettings['headers']> {
  const out = [...(current ?? [])];
  for (const arg of args) {
    const i = arg.indexOf(':');
    const name = (i < 0 ? arg : arg.slice(0, i)).trim();
    if (i < 0 || !TOKEN.test(name))
      throw new UsageError(`bad --header "${arg}": use 'Name: value' or 'Name:'`);
    if (RESERVED.has(name.toLowerCase())) throw new UsageError(`--header cannot set ${name}`);
    const value = arg.slice(i + 1).trim();
    if (/[\r\n\0]/.test(value)) throw new UsageError(`bad --header "${name}": the value holds a line break`);
    const at = out.findIndex((h) => h.name.toLowerCase() === name.toLowerCase());
    if (at >= 0) out.splice(at, 1);
    if (value !== '') out.push({ name, value });
  }
  return out;
}

function parsePositive(option: string, value: string | number, integer: boolean): number | undefined {
  if (value === 'off') return undefined;
  const n = typeof value === 'number' ? value : Number(value);
  if (!Number.isFinite(n) || n < 0 || (integer && !Number.isInteger(n)) || String(value).trim() === '') {
    throw new UsageError(`bad ${option} "${value}": expected ${integer ? 'an integer' : 'a number'} ≥ 0`);
  }
  return n === 0 ? undefined : n;
}

export function parseSyncInterval(value: string): number | null {
  if (value === 'off') return null;
  const ms = parseDuration(value);
  if (ms === undefined)
    throw new UsageError(`bad --sync-interval "${value}": use e.g. "30m", "6h", "1d" or "off"`);
  if (ms < MIN_SYNC_INTERVAL_MS) throw new UsageError(`--sync-interval must be at least 1m (got "${value}")`);
  return ms;
}

/**
 * The fields of `current` that `input` changes, validated: a partial
 * repository document to $set (an undefined value clears the field).
 */
export async function settingsPatch(
  current: Pick<RepoDoc, 'upstream' | 'options'>,
  input: RepoSettingsInput,
): Promise<Partial<RepoDoc>> {
  const patch: Partial<RepoDoc> = {};
  const up: UpstreamSettings = { ...current.upstream };
  let upChanged = false;
  const set = <K extends keyof UpstreamSettings>(k: K, v: UpstreamSettings[K]) => {
    up[k] = v;
    upChanged = true;
  };
  if (input.feed !== undefined) patch.feed = parseFeed(input.feed);
  if (input.caCertFile !== undefined)
    set('ca_cert', await pemOrClear(input.caCertFile, 'CA certificate', checkCert));
  if ((input.clientCertFile === undefined) !== (input.clientKeyFile === undefined)) {
    throw new UsageError('--client-cert and --client-key go together');
  }
  if (input.clientCertFile !== undefined && input.clientKeyFile !== undefined) {
    if ((input.clientCertFile === '') !== (input.clientKeyFile === '')) {
      throw new UsageError('--client-cert and --client-key go together');
    }
    set('client_cert', await pemOrClear(input.clientCertFile, 'client certificate', checkCert));
    set('client_key', await pemOrClear(input.clientKeyFile, 'client key', checkKey));
  }
  if (input.tlsVerify !== undefined) set('tls_verify', input.tlsVerify);
  if (input.proxy !== undefined) set('proxy_url', parseProxy(input.proxy));
  if (input.basicAuth !== undefined) set('basic_auth', parseBasicAuth(input.basicAuth));
  if (input.headers !== undefined) {
    const headers = applyHeaders(current.upstream.headers, input.headers);
    set('headers', headers.length ? headers : undefined);
  }
  if (input.maxConnections !== undefined)
    set('max_connections', parsePositive('--max-connections', input.maxConnections, true));
  if (input.rateLimit !== undefined) set('rate_limit', parsePositive('--rate-limit', input.rateLimit, false));
  if (upChanged) patch.upstream = up;
  if (input.protectCaFile !== undefined) {
    const pem = await pemOrClear(input.protectCaFile, 'protection CA certificate', checkCert);
    patch.protection = pem ? { ca_cert: pem } : undefined;
  }
  if (input.options !== undefined) {
    const options: Record<string, unknown> = { ...(current.options ?? {}) };
    for (const [k, v] of Object.entries(input.options)) {
      if (Array.isArray(v) && v.length === 0) delete options[k];
      else options[k] = v;
    }
    patch.options = Object.keys(options).length ? options : undefined;
  }
  if (input.policy !== undefined) patch.policy = parsePolicy(input.policy);
  if (input.syncInterval !== undefined) patch.sync_interval_ms = parseSyncInterval(input.syncInterval);
  if (input.gpgKeyFile !== undefined) patch.gpg_key = await readGpgKey(input.gpgKeyFile);
  return patch;
}

const SECRET_HEADER = /authorization|cookie|token|secret|key|pass|auth/i;

/** A header as shown to operators: the value of one that may hold a credential is redacted. */
export function shownHeader(h: { name: string; value: string }): string {
  return `${h.name}: ${SECRET_HEADER.test(h.name) ? '***' : h.value}`;
}
