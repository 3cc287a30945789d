/**
 * Where the download tasks get a file's bytes from. Both implementations go
 * through the streamer (single-flight upstream fetch, catalog failover,
 * verification, save) with `Pulp-Stream-Request: true`, so a task's fetch
 * never queues a deferred download:
 *   - proxySource (source-proxy.ts): GET the signed streamer URL, the same
 *     one a client's redirect uses (Apache → Squid → streamer, or `serve`);
 *   - localSource (source-local.ts): the streamer logic inside the task
 *     process (no proxy in between).
 */
import type { Readable } from 'node:stream';
import { type ErrorCode, isErrorCode } from '../error-codes.ts';
import { PulpLazyError } from '../errors.ts';

export interface SourceBody {
  /** The response body (the caller consumes or destroys it). */
  body: Readable;
  /** Content-Length, when the response has one. */
  size: number | undefined;
}

export interface FileSource {
  /** Opens the file stored at `storagePath`; rejects with a PulpLazyError unless the answer is 200. */
  open(storagePath: string, signal: AbortSignal): Promise<SourceBody>;
  /** Why the source's last fetch of `storagePath` failed, when it knows more than the cut connection. */
  explain?(storagePath: string): string | undefined;
  close(): Promise<void>;
}

/** Header that tells the streamer the request is a task's copy (no deferred entry). */
export const STREAM_REQUEST_HEADERS = {
  'pulp-stream-request': 'true',
  'accept-encoding': 'identity',
} as const;

/**
 * A non-200 answer: keeps the streamer's error code and message when the body
 * has them (PL_FETCH_HTTP otherwise; the message names the status).
 */
export function sourceError(what: string, status: number, body: string): PulpLazyError {
  let code: ErrorCode = 'PL_FETCH_HTTP';
  let message = body.trim().slice(0, 300);
  try {
    const parsed = JSON.parse(body) as { code?: unknown; message?: unknown };
    if (isErrorCode(parsed.code)) code = parsed.code;
    if (typeof parsed.message === 'string') message = parsed.message;
  } catch {
    // Not our JSON (Apache or Squid error page): keep the start of the text.
  }
  return new PulpLazyError(
    code,
    `${what}: HTTP ${status}${message ? ` ${message.replace(/\s+/g, ' ')}` : ''}`,
    {
      status: status >= 400 ? status : 502,
    },
  );
}

export function contentLength(value: string | string[] | undefined): number | undefined {
  return typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : undefined;
}
