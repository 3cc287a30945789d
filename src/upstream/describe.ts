/**
 * Messages about upstream requests: one describer of undici and network
 * failures, and the mapping of a failure to our typed errors. URLs in them
 * go through the one redactor (src/util/redact.ts; re-exported for the
 * upstream modules' callers).
 */
import { oneLine, PulpLazyError, UpstreamError, UpstreamTimeout } from '../errors.ts';
import { redactUrl } from '../util/redact.ts';

export { redactUrl };

const TIMEOUT_CODES = new Set(['UND_ERR_CONNECT_TIMEOUT', 'UND_ERR_HEADERS_TIMEOUT', 'UND_ERR_BODY_TIMEOUT']);

/** The error's code, or its cause's (undici wraps socket errors). */
function errorCode(err: unknown): string | undefined {
  const e = err as { code?: unknown; cause?: { code?: unknown } } | null;
  if (typeof e?.code === 'string') return e.code;
  return typeof e?.cause?.code === 'string' ? e.cause.code : undefined;
}

/**
 * Codes of failures where the origin gave no answer: refused, reset or closed
 * before a response, DNS, unreachable, connect and headers timeouts (TLS
 * handshake failures are matched by prefix in isConnectionFailure).
 */
const CONNECTION_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EPIPE',
  'ETIMEDOUT',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EAI_FAIL',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'EPROTO',
  'UND_ERR_SOCKET',
  'UND_ERR_CONNECT_TIMEOUT',
  'UND_ERR_HEADERS_TIMEOUT',
]);
const TLS_CODE =
  /^(ERR_TLS_|ERR_SSL_|CERT_|UNABLE_TO_|DEPTH_ZERO_SELF_SIGNED_CERT|SELF_SIGNED_CERT_IN_CHAIN)/;

/**
 * Whether a request failed without any answer from the origin (what counts
 * towards blocking it, src/upstream/health.ts): a connection-level failure
 * or a connect/headers timeout, found on the error or along its causes. An
 * HTTP status, a refused redirect or an abort is not one.
 */
export function isConnectionFailure(err: unknown): boolean {
  for (let e = err, depth = 0; e && depth < 5; e = (e as { cause?: unknown }).cause, depth++) {
    const code = (e as { code?: unknown }).code;
    if (typeof code === 'string' && (CONNECTION_CODES.has(code) || TLS_CODE.test(code))) return true;
  }
  return false;
}

/** One line: the message, its cause's message, and the code: "connect ECONNREFUSED 127.0.0.1:9 (ECONNREFUSED)". */
export function describeError(err: unknown): string {
  let text = oneLine(err);
  const cause = (err as { cause?: unknown } | null)?.cause;
  const detail = cause instanceof Error ? oneLine(cause) : '';
  if (detail && !text.includes(detail)) text = `${text}: ${detail}`;
  const code = errorCode(err);
  if (code && !text.includes(code)) text = `${text} (${code})`;
  return redactUrl(text);
}

/**
 * Maps a failure of a request to `url` to UpstreamTimeout (504: connect,
 * headers or body-idle timeout) or UpstreamError (502); our own typed errors
 * (a refused redirect) are returned as they are.
 */
export function toUpstreamError(err: unknown, url: string): PulpLazyError {
  if (err instanceof PulpLazyError) return err;
  const what = `${redactUrl(url)}: ${describeError(err)}`;
  const code = errorCode(err);
  return code && TIMEOUT_CODES.has(code) ? new UpstreamTimeout(what, err) : new UpstreamError(what, err);
}
