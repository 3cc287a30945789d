/**
 * How a streamer request ended: the outcome it is counted and logged as
 * (metrics.ts's RequestOutcome), and for a failure, the response that ends
 * it: a JSON error body `{"code", "message", "status"}` with
 * `Cache-Control: no-store` before the first byte; after it, the connection
 * is destroyed so no client or cache sees a clean, truncated response.
 */
import type { ServerResponse } from 'node:http';
import { databaseUnavailable } from '../db/index.ts';
import { oneLine, PulpLazyError, UpstreamBlocked } from '../errors.ts';
import type { Logger } from '../log.ts';
import { NO_STORE } from './headers.ts';
import type { RequestOutcome } from './metrics.ts';
import type { SendResult } from './send.ts';

/** The refusal of new work while the streamer shuts down (503). */
export function shuttingDown(): PulpLazyError {
  return new PulpLazyError('PL_SHUTTING_DOWN', 'the streamer is shutting down');
}

/** The outcome of a response that was sent (or cut) by send.ts. */
export function sendOutcome(r: SendResult): RequestOutcome {
  return r === 'complete' ? 'streamed' : r;
}

/** The outcome of an error response of `status` for an error with `code`. */
export function outcomeOf(status: number, code: string): RequestOutcome {
  if (status === 404) return 'not_found';
  if (status === 504) return 'upstream_timeout';
  if (status === 502) return 'upstream_error';
  if (status === 503 && code === 'PL_SHUTTING_DOWN') return 'unavailable';
  if (code === 'PL_UPSTREAM_BLOCKED') return 'upstream_blocked';
  if (status >= 400 && status < 500) return 'bad_request';
  return 'error';
}

/** What sendError needs of the response. */
export type ErrorResponse = Pick<
  ServerResponse,
  'headersSent' | 'destroyed' | 'destroy' | 'writeHead' | 'end'
>;

/** Answers with a JSON error, or destroys the connection when the response has started. */
export function sendError(res: ErrorResponse, err: unknown, log: Logger): RequestOutcome {
  const down = err instanceof PulpLazyError ? undefined : databaseUnavailable(err);
  const e =
    err instanceof PulpLazyError
      ? err
      : (down ?? new PulpLazyError('PL_INTERNAL', oneLine(err), { cause: err }));
  if (down) log.warn({ err: down }, 'request failed: database unavailable');
  else if (!(err instanceof PulpLazyError)) log.error({ err }, 'unexpected error');
  if (res.headersSent || res.destroyed) {
    res.destroy();
    return 'broken';
  }
  const body = `${JSON.stringify({ code: e.code, message: e.message, status: e.status })}\n`;
  res.writeHead(e.status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
    'cache-control': NO_STORE,
    // A blocked origin: when to ask again (its next probe).
    ...(e instanceof UpstreamBlocked ? { 'retry-after': String(e.retryAfterS) } : {}),
  });
  res.end(body);
  return outcomeOf(e.status, e.code);
}
