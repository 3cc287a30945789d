/**
 * Every error code pulp-lazy uses, in one table: the HTTP status a daemon
 * answers with, the exit code of the CLI (1 = operation failed, 2 = usage or
 * configuration error, 130 = interrupted) and a one-line summary.
 * `docs/errors.md` is generated from it (`npm run docs:errors`); a golden
 * test keeps the two the same, and another fails on a code used in src/ that
 * is not here, or an entry nothing uses.
 */
export const ERROR_CODES = {
  // Usage, configuration, keys
  PL_USAGE: { status: 400, exitCode: 2, summary: 'Bad command-line usage.' },
  PL_CONFIG: { status: 500, exitCode: 2, summary: 'The config file is missing, unreadable or invalid.' },
  PL_CONFIG_CHECK: {
    status: 500,
    exitCode: 1,
    summary: 'A rendered Apache or Squid config failed its syntax check.',
  },
  PL_RENDER: {
    status: 500,
    exitCode: 2,
    summary: 'The config asks for a proxy set-up the templates cannot render.',
  },
  PL_TEMPLATE: { status: 500, exitCode: 1, summary: 'A template names a value that was not supplied.' },
  PL_KEY_MISSING: {
    status: 500,
    exitCode: 2,
    summary: 'A signing key file does not exist (run "pulp-lazy keys generate").',
  },
  PL_KEY_INVALID: {
    status: 500,
    exitCode: 2,
    summary: 'A signing key file is not the Ed25519 key it should be.',
  },
  PL_KEY_UNREADABLE: { status: 500, exitCode: 2, summary: 'A signing key file cannot be read.' },
  PL_KEY_WRITE: { status: 500, exitCode: 1, summary: 'The signing keys cannot be written.' },
  PL_BAD_TTL: {
    status: 500,
    exitCode: 2,
    summary: 'The signing TTL is not a positive number of milliseconds.',
  },
  PL_BAD_EXTENSION: { status: 500, exitCode: 1, summary: 'A signed-URL extension value is not a string.' },
  PL_BAD_URL: {
    status: 400,
    exitCode: 2,
    summary: 'A URL given to sign is not an http(s) URL or an absolute path.',
  },
  PL_DEVDB_MISSING: { status: 500, exitCode: 2, summary: 'The dev database launcher is not built.' },
  PL_DEVDB_FAILED: { status: 500, exitCode: 1, summary: 'The dev database exited before it was ready.' },

  // Database, repositories, sync
  PL_DATABASE: {
    status: 503,
    exitCode: 1,
    summary: 'The database cannot be reached or answered with an unexpected error.',
  },
  PL_REPO_NOT_FOUND: { status: 404, exitCode: 1, summary: 'The named repository does not exist.' },
  PL_REPO_EXISTS: { status: 409, exitCode: 1, summary: 'A repository of that name already exists.' },
  PL_SYNC_IN_PROGRESS: {
    status: 409,
    exitCode: 1,
    summary: 'Another sync of the repository holds its lease.',
  },
  PL_BAD_METADATA: {
    status: 502,
    exitCode: 1,
    summary: 'Upstream metadata (repomd.xml, Release, a manifest) is invalid.',
  },
  PL_BAD_SIGNATURE: {
    status: 502,
    exitCode: 1,
    summary:
      "Upstream metadata's signature is missing or does not verify with the repository's --gpg-key (nothing published).",
  },
  PL_FEED_UNREACHABLE: {
    status: 502,
    exitCode: 1,
    summary: 'The feed could not be fetched (connection, DNS, TLS or HTTP error).',
  },

  // Signed URLs (content daemon, authorizer, streamer)
  PL_SIG_NOT_SIGNED: { status: 403, exitCode: 1, summary: 'The URL has no policy or signature parameter.' },
  PL_SIG_MALFORMED: {
    status: 403,
    exitCode: 1,
    summary: 'The policy or signature parameter cannot be parsed.',
  },
  PL_SIG_BAD_SIGNATURE: { status: 403, exitCode: 1, summary: 'The signature does not match the policy.' },
  PL_SIG_EXPIRED: { status: 403, exitCode: 1, summary: 'The signed URL has expired.' },
  PL_SIG_RESOURCE_MISMATCH: {
    status: 403,
    exitCode: 1,
    summary: 'The signed URL was issued for another path.',
  },
  PL_SIG_EXTENSION_MISMATCH: {
    status: 403,
    exitCode: 1,
    summary: 'The signed URL is bound to another client (remote IP).',
  },

  // Serving (content daemon, streamer)
  PL_BAD_PATH: {
    status: 400,
    exitCode: 1,
    summary: 'The request path is not a valid, normalized absolute path.',
  },
  PL_METHOD_NOT_ALLOWED: { status: 405, exitCode: 1, summary: 'The HTTP method is not GET or HEAD.' },
  PL_NOT_IN_CATALOG: { status: 404, exitCode: 1, summary: 'No catalog entry names the requested file.' },
  PL_UPSTREAM: {
    status: 502,
    exitCode: 1,
    summary: 'The upstream failed or answered with an unexpected status.',
  },
  PL_UPSTREAM_NOT_FOUND: {
    status: 404,
    exitCode: 1,
    summary:
      'No catalog entry is usable, or some answered 404/410 upstream and the others failed otherwise (all 404/410: PL_UPSTREAM_GONE).',
  },
  PL_UPSTREAM_GONE: {
    status: 404,
    exitCode: 1,
    summary:
      'Every catalog entry of the file answered 404 or 410 upstream: the unit is marked gone upstream and a re-sync of its repository is requested.',
  },
  PL_UPSTREAM_TIMEOUT: {
    status: 504,
    exitCode: 1,
    summary: 'The upstream did not send headers or body in time.',
  },
  PL_UPSTREAM_BLOCKED: {
    status: 503,
    exitCode: 1,
    summary:
      'Every catalog entry of the file is on an upstream origin blocked after connection failures (remotes.block_after); Retry-After says when it is probed next.',
  },
  PL_UPSTREAM_REDIRECT: {
    status: 502,
    exitCode: 1,
    summary: 'An upstream redirect was refused (https to http, a loop, too many).',
  },
  PL_CHECKSUM_MISMATCH: {
    status: 502,
    exitCode: 1,
    summary: 'Downloaded bytes do not match the expected size or checksum.',
  },
  PL_STREAMER_IO: {
    status: 500,
    exitCode: 1,
    summary: 'The streamer could not write or save its temp file.',
  },
  PL_CLIENT_GONE: {
    status: 500,
    exitCode: 1,
    summary: 'Every client left and the download was not being saved.',
  },
  PL_SHUTTING_DOWN: { status: 503, exitCode: 1, summary: 'The streamer is shutting down.' },
  PL_INTERNAL: {
    status: 500,
    exitCode: 1,
    summary: 'An unexpected error in the streamer (see the log at debug level).',
  },

  // FastCGI authorizer
  PL_FCGI_PROTOCOL: { status: 502, exitCode: 1, summary: 'A FastCGI peer broke the protocol.' },
  PL_FCGI_UNHEALTHY: {
    status: 503,
    exitCode: 1,
    summary: 'The FastCGI authorizer did not answer its health check.',
  },
  PL_AUTHORIZER_INTERNAL: {
    status: 500,
    exitCode: 1,
    summary: 'The authorizer failed while checking a request.',
  },

  // Download tasks and the sweep
  PL_FETCH_HTTP: {
    status: 502,
    exitCode: 1,
    summary: 'A download task got a non-200 answer without one of our error codes.',
  },
  PL_PROXY_UNREACHABLE: {
    status: 502,
    exitCode: 1,
    summary: 'A download task could not reach the proxy or streamer.',
  },
  PL_LOCAL_STREAMER: {
    status: 502,
    exitCode: 1,
    summary: 'The in-process streamer of a download task failed.',
  },
  PL_DOWNLOAD_IO: { status: 500, exitCode: 1, summary: 'A download task could not write a file to storage.' },
  PL_DOWNLOAD_FAILED: {
    status: 500,
    exitCode: 1,
    summary: 'A unit could not be stored (see the file errors).',
  },
  PL_DOWNLOAD_REPO_FAILED: {
    status: 500,
    exitCode: 1,
    summary: 'Some units of download-repo could not be stored (queued for the sweep).',
  },
  PL_LOW_DISK: {
    status: 507,
    exitCode: 1,
    summary:
      'Free space is below storage.min_free: download-repo or an immediate sync stopped claiming units.',
  },
  PL_SWEEP_FAILED: { status: 500, exitCode: 1, summary: 'Some units of the sweep could not be stored.' },
  PL_SYNC_DOWNLOAD_FAILED: {
    status: 500,
    exitCode: 1,
    summary:
      'A sync with the immediate policy could not store every unit; the previous tree stays published.',
  },
  PL_LEASE_LOST: {
    status: 500,
    exitCode: 1,
    summary: 'Another worker took over the download lease on a unit.',
  },
  PL_NOTHING_TO_RETRY: { status: 404, exitCode: 1, summary: 'The unit has no failed download to retry.' },
  PL_INTERRUPTED: {
    status: 500,
    exitCode: 130,
    summary: 'Interrupted by a signal; claimed work was given back.',
  },

  // Set-up and lifecycle
  PL_INIT_CHANGED: {
    status: 500,
    exitCode: 1,
    summary: 'init: the existing set-up differs from the answers (use --force).',
  },
  PL_INIT_DB: { status: 500, exitCode: 1, summary: 'init: the database cannot be reached.' },
  PL_INIT_WRITE: { status: 500, exitCode: 1, summary: 'init: a directory or file cannot be written.' },
  PL_INIT_PORT: { status: 500, exitCode: 1, summary: 'init: a chosen port is already in use.' },
  PL_START_FAILED: {
    status: 500,
    exitCode: 1,
    summary: 'A daemon could not be started or did not become ready.',
  },
  PL_STOP_FAILED: { status: 500, exitCode: 1, summary: 'A daemon could not be stopped.' },

  // Apache and Squid
  PL_PROXY_BINARY: { status: 503, exitCode: 1, summary: 'The apache2 or squid binary is not installed.' },
  PL_PROXY_USER: { status: 503, exitCode: 1, summary: 'The configured system user does not exist.' },
  PL_PROXY_FASTPATH: {
    status: 503,
    exitCode: 1,
    summary: 'apache.fast_path: a root is missing or owned by root.',
  },
  PL_PROXY_PORT_IN_USE: {
    status: 503,
    exitCode: 1,
    summary: 'A proxy port is already in use by another process.',
  },
  PL_PROXY_START: { status: 503, exitCode: 1, summary: 'Apache or Squid did not start or become ready.' },
  PL_PROXY_STOP: {
    status: 503,
    exitCode: 1,
    summary: 'Apache or Squid is still running after the stop request.',
  },
} as const satisfies Record<string, { status: number; exitCode: number; summary: string }>;

export type ErrorCode = keyof typeof ERROR_CODES;

/** Whether `code` is one of ours (for codes read back from a response body or the database). */
export function isErrorCode(code: unknown): code is ErrorCode {
  return typeof code === 'string' && Object.hasOwn(ERROR_CODES, code);
}
