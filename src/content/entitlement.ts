/**
 * Entitlement for protected repositories (repos doc `protection.ca_cert`):
 * the client certificate Apache passes in a request header must chain to
 * the repository's CA (directly, or through one intermediate sent along with
 * it) and every certificate of the chain must be valid now.
 *
 * The published_path → CA map lives in memory and is refreshed from the
 * database periodically, so checking a request never queries the database.
 */
import { X509Certificate } from 'node:crypto';
import type { Database } from '../db/index.ts';
import type { Logger } from '../log.ts';

const PEM_CERT = /-----BEGIN CERTIFICATE-----([\s\S]*?)-----END CERTIFICATE-----/g;
const BASE64 = /^[A-Za-z0-9+/]+={0,2}$/;
/** Verdicts remembered per repository before the cache is emptied. */
const CACHE_MAX = 1024;

/**
 * Certificates in PEM text. Tolerates what Apache and friends do to a PEM in
 * a header: newlines replaced by spaces, or the whole text percent-encoded.
 * Unparseable blocks are skipped.
 */
export function parseCertificates(text: string | undefined): X509Certificate[] {
  if (!text) return [];
  let pem = text;
  if (pem.includes('%')) {
    try {
      pem = decodeURIComponent(pem);
    } catch {
      return [];
    }
  }
  const certs: X509Certificate[] = [];
  for (const m of pem.matchAll(PEM_CERT)) {
    const body = m[1]!.replace(/\s+/g, '');
    if (!BASE64.test(body)) continue;
    try {
      certs.push(new X509Certificate(Buffer.from(body, 'base64')));
    } catch {
      // Not a certificate: ignore the block.
    }
  }
  return certs;
}

/** A time window [from, to] (epoch ms) during which a verified chain is valid. */
export type Window = readonly [number, number];

function windowOf(certs: X509Certificate[]): Window {
  let from = Number.NEGATIVE_INFINITY;
  let to = Number.POSITIVE_INFINITY;
  for (const c of certs) {
    from = Math.max(from, Date.parse(c.validFrom));
    to = Math.min(to, Date.parse(c.validTo));
  }
  return [
    Number.isNaN(from) ? Number.POSITIVE_INFINITY : from,
    Number.isNaN(to) ? Number.NEGATIVE_INFINITY : to,
  ];
}

const issuedBy = (child: X509Certificate, parent: X509Certificate) => {
  try {
    return child.checkIssued(parent) && child.verify(parent.publicKey);
  } catch {
    return false;
  }
};

/**
 * Validity windows of every chain from `presented[0]` (the client
 * certificate) to one of `anchors`, directly or through one CA certificate
 * among the other presented ones. Time is not checked here; [] = no chain.
 */
export function chainWindows(presented: X509Certificate[], anchors: X509Certificate[]): Window[] {
  const [leaf, ...extra] = presented;
  if (!leaf) return [];
  const windows: Window[] = [];
  for (const anchor of anchors) {
    if (issuedBy(leaf, anchor)) windows.push(windowOf([leaf, anchor]));
    for (const mid of extra) {
      if (mid.ca && issuedBy(leaf, mid) && issuedBy(mid, anchor)) windows.push(windowOf([leaf, mid, anchor]));
    }
  }
  return windows;
}

/** True when `certHeader` holds a client certificate that chains to `anchors` and is valid at `now`. */
export function verifyClientCertificate(
  certHeader: string | undefined,
  anchors: X509Certificate[],
  now: number,
): boolean {
  const windows = chainWindows(parseCertificates(certHeader), anchors);
  return windows.some(([from, to]) => from <= now && now <= to);
}

interface Protection {
  path: string;
  caPem: string;
  anchors: X509Certificate[];
  /** Header value → validity windows of its verified chains ([] = refused). */
  verdicts: Map<string, Window[]>;
}

export type EntitlementResult = { ok: true } | { ok: false; repo: string; reason: string };

export interface Entitlement {
  /** Reloads the published_path → CA map (rejects on a database error; the old map stays). */
  refresh(): Promise<void>;
  /** Refreshes every `intervalMs` in the background (errors are logged). */
  start(intervalMs: number): void;
  stop(): void;
  /** True once the map has been loaded at least once. */
  readonly loaded: boolean;
  /** Number of protected repositories. */
  readonly size: number;
  /** Checks a request for `segments` (decoded path below the mount point); `certHeader` as received. */
  check(segments: readonly string[], certHeader: string | undefined, now: number): EntitlementResult;
}

export function createEntitlement(deps: { db: Database; logger: Logger }): Entitlement {
  const log = deps.logger.child({ module: 'entitlement' });
  let map = new Map<string, Protection>();
  let loaded = false;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<void> | undefined;

  const load = async () => {
    const docs = await deps.db.repos
      .find({ 'protection.ca_cert': { $exists: true } }, { projection: { published_path: 1, protection: 1 } })
      .toArray();
    const next = new Map<string, Protection>();
    for (const doc of docs) {
      const caPem = doc.protection?.ca_cert;
      if (typeof caPem !== 'string' || caPem.trim() === '') continue;
      const key = normalizePublishedPath(doc.published_path);
      const old = map.get(key);
      if (old && old.caPem === caPem) {
        next.set(key, old);
        continue;
      }
      const anchors = parseCertificates(caPem);
      // Fails closed: a protected repository with an unusable CA refuses everyone.
      if (anchors.length === 0)
        log.error({ repo: doc._id }, 'protection.ca_cert holds no usable certificate');
      next.set(key, { path: key, caPem, anchors, verdicts: new Map() });
    }
    map = next;
    loaded = true;
  };

  const refresh = () => {
    running ??= load().finally(() => {
      running = undefined;
    });
    return running;
  };

  const allowed = (p: Protection, certHeader: string | undefined, now: number) => {
    if (!certHeader) return false;
    let windows = p.verdicts.get(certHeader);
    if (windows === undefined) {
      windows = chainWindows(parseCertificates(certHeader), p.anchors);
      if (p.verdicts.size >= CACHE_MAX) p.verdicts.clear();
      p.verdicts.set(certHeader, windows);
    }
    return windows.some(([from, to]) => from <= now && now <= to);
  };

  return {
    refresh,
    start(intervalMs) {
      timer = setInterval(() => {
        refresh().catch((err) => log.warn({ err }, 'protection refresh failed; keeping the old map'));
      }, intervalMs);
      timer.unref();
    },
    stop() {
      if (timer) clearInterval(timer);
      timer = undefined;
    },
    get loaded() {
      return loaded;
    },
    get size() {
      return map.size;
    },
    check(segments, certHeader, now) {
      if (map.size === 0) return { ok: true };
      let prefix = '';
      for (const seg of segments) {
        prefix = prefix ? `${prefix}/${seg}` : seg;
        const p = map.get(prefix);
        if (p && !allowed(p, certHeader, now)) {
          return {
            ok: false,
            repo: p.path,
            reason: certHeader ? 'certificate refused' : 'no client certificate',
          };
        }
      }
      return { ok: true };
    },
  };
}

/** `/a/b/` → `a/b` (published paths are compared without surrounding slashes). */
export function normalizePublishedPath(p: string): string {
  return p.split('/').filter(Boolean).join('/');
}
