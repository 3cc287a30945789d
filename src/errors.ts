import { ERROR_CODES, type ErrorCode } from './error-codes.ts';

export type { ErrorCode };

/**
 * Typed errors. Match on `err.code`, not on `instanceof` (as undici does).
 * `status` is the HTTP status a daemon answers with; `exitCode` is what the
 * CLI exits with. Both come from the code's row in src/error-codes.ts unless
 * a caller overrides them.
 */
export class PulpLazyError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly exitCode: number;

  constructor(
    code: ErrorCode,
    message: string,
    opts: { status?: number; exitCode?: number; cause?: unknown } = {},
  ) {
    super(message, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = new.target.name;
    this.code = code;
    this.status = opts.status ?? ERROR_CODES[code].status;
    this.exitCode = opts.exitCode ?? ERROR_CODES[code].exitCode;
  }
}

/** Bad command-line usage (exit 2). */
export class UsageError extends PulpLazyError {
  constructor(message: string) {
    super('PL_USAGE', message);
  }
}

/** The config file is missing, unreadable or invalid (exit 2). */
export class ConfigError extends PulpLazyError {
  constructor(message: string, cause?: unknown) {
    super('PL_CONFIG', message, { cause });
  }
}

/** The database cannot be reached or answered with an unexpected error. */
export class DatabaseError extends PulpLazyError {
  constructor(message: string, cause?: unknown) {
    super('PL_DATABASE', message, { cause });
  }
}

export class RepoNotFound extends PulpLazyError {
  constructor(name: string) {
    super('PL_REPO_NOT_FOUND', `repository "${name}" does not exist`);
  }
}

export class RepoExists extends PulpLazyError {
  constructor(name: string) {
    super('PL_REPO_EXISTS', `repository "${name}" already exists`);
  }
}

/** A sync of the same repository is already running (its lease has not expired). */
export class SyncInProgress extends PulpLazyError {
  constructor(name: string, owner: string) {
    super('PL_SYNC_IN_PROGRESS', `repository "${name}" is already being synced (by ${owner})`);
  }
}

/** Upstream metadata (a manifest, repomd.xml, Release, ...) is invalid. */
export class BadMetadata extends PulpLazyError {
  constructor(message: string) {
    super('PL_BAD_METADATA', message);
  }
}

/** Signed upstream metadata is unsigned, or its signature does not verify with the repository's key. */
export class BadSignature extends PulpLazyError {
  constructor(message: string) {
    super('PL_BAD_SIGNATURE', message);
  }
}

/** The feed could not be fetched (connection refused, DNS, TLS, HTTP error). */
export class FeedUnreachable extends PulpLazyError {
  constructor(message: string, cause?: unknown) {
    super('PL_FEED_UNREACHABLE', message, { cause });
  }
}

export class NotInCatalog extends PulpLazyError {
  constructor(path: string) {
    super('PL_NOT_IN_CATALOG', `no catalog entry for ${path}`);
  }
}

export class UpstreamError extends PulpLazyError {
  constructor(message: string, cause?: unknown) {
    super('PL_UPSTREAM', message, { cause });
  }
}

export class UpstreamNotFound extends PulpLazyError {
  constructor(message: string) {
    super('PL_UPSTREAM_NOT_FOUND', message);
  }
}

export class UpstreamTimeout extends PulpLazyError {
  constructor(message: string, cause?: unknown) {
    super('PL_UPSTREAM_TIMEOUT', message, { cause });
  }
}

/**
 * An upstream redirect that is not followed (https to http, a loop, more than
 * the allowed number, a Location that is not an http(s) URL): src/upstream/redirect.ts.
 */
export class UpstreamRedirect extends PulpLazyError {
  constructor(message: string) {
    super('PL_UPSTREAM_REDIRECT', message);
  }
}

/**
 * Every entry of a file is on an upstream origin blocked after connection
 * failures (src/upstream/health.ts): answered at once, 503 with Retry-After.
 */
export class UpstreamBlocked extends PulpLazyError {
  constructor(
    message: string,
    /** Seconds until the origin's next probe (at least 1): the Retry-After header. */
    readonly retryAfterS: number,
  ) {
    super('PL_UPSTREAM_BLOCKED', message);
  }
}

/** Downloaded bytes do not match the size or checksum the catalog expects. */
export class ChecksumMismatch extends PulpLazyError {
  constructor(message: string) {
    super('PL_CHECKSUM_MISMATCH', message);
  }
}

/** Returns a one-line message for any thrown value. */
export function oneLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.replace(/\s*\n\s*/g, ' ').trim();
}

/** MongoDB duplicate-key error (E11000), treated as success for idempotent inserts. */
export function isDuplicateKey(err: unknown): boolean {
  return typeof err === 'object' && err !== null && (err as { code?: unknown }).code === 11000;
}
