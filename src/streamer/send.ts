/**
 * Writing a file to an HTTP response with backpressure: a flight's growing
 * temp file (each client at its own pace) or a file already in storage.
 */
import type { Stats } from 'node:fs';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { contentRange, parseRange, unsatisfiedRange } from '../http/range.ts';
import { sendFile } from '../http/send-file.ts';
import type { Flight } from './flight.ts';
import { cacheControl, contentTypeFor } from './headers.ts';

/** Bytes read from disk per step: memory per client stays around this size. */
export const READ_CHUNK = 256 * 1024;

export type SendResult = 'complete' | 'client_gone' | 'broken';

/**
 * Sends the flight's headers, then its bytes as they become releasable, then
 * ends the response once the flight is done. If the flight fails, the
 * response is destroyed (never ended cleanly). Call once `flight.ready` resolved.
 */
export async function sendFromFlight(
  flight: Flight,
  res: ServerResponse,
  onBytes: (n: number) => void,
  rangeHeader?: string,
): Promise<SendResult> {
  let wake: (() => void) | undefined;
  const onClose = () => wake?.();
  res.once('close', onClose);
  try {
    // A range is served once the size is known; the response still ends only
    // after the whole file was verified, so a bad object never ends cleanly.
    const size = flight.size;
    const range = size === undefined ? undefined : parseRange(rangeHeader, size);
    if (range === 'unsatisfiable') {
      res.writeHead(416, { 'content-range': unsatisfiedRange(size!), 'content-length': 0 });
      return (await endResponse(res)) ? 'complete' : 'client_gone';
    }
    let pos = 0;
    let stop = Number.POSITIVE_INFINITY;
    if (range) {
      res.writeHead(206, {
        ...flight.headers,
        'content-length': String(range.end - range.start + 1),
        'content-range': contentRange(range, size!),
      });
      pos = range.start;
      stop = range.end + 1;
    } else {
      res.writeHead(200, flight.headers);
    }
    for (;;) {
      if (res.destroyed) return 'client_gone';
      const limit = Math.min(flight.releasable(), stop);
      if (pos < limit) {
        const n = Math.min(limit - pos, READ_CHUNK);
        const buf = Buffer.allocUnsafe(n);
        const got = await flight.read(buf, n, pos);
        if (got === 0) {
          res.destroy();
          return 'broken';
        }
        pos += got;
        if (res.destroyed) return 'client_gone';
        onBytes(got);
        if (!res.write(got === n ? buf : buf.subarray(0, got))) await drainOrClose(res);
        continue;
      }
      if (flight.state === 'done') {
        return (await endResponse(res)) ? 'complete' : 'client_gone';
      }
      if (flight.state === 'failed') {
        res.destroy();
        return 'broken';
      }
      await new Promise<void>((resolve) => {
        wake = resolve;
        flight.changed().then(resolve);
      });
      wake = undefined;
    }
  } finally {
    res.off('close', onClose);
  }
}

/** Headers for a file in storage. */
export function storedHeaders(file: string, st: Stats, cacheTimeoutMs: number): Record<string, string> {
  return {
    'content-type': contentTypeFor(file),
    'content-length': String(st.size),
    'last-modified': st.mtime.toUTCString(),
    'cache-control': cacheControl(cacheTimeoutMs),
  };
}

/** Streams a stored file (GET, with Range) or only its headers (HEAD). */
export async function sendStored(
  req: IncomingMessage,
  res: ServerResponse,
  file: string,
  st: Stats,
  cacheTimeoutMs: number,
  onBytes: (n: number) => void,
): Promise<SendResult> {
  const { 'content-length': _, ...headers } = storedHeaders(file, st, cacheTimeoutMs);
  const r = await sendFile(req, res, file, st, headers, onBytes);
  return r === 'not_modified' ? 'complete' : r;
}

function drainOrClose(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = () => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.on('drain', done);
    res.on('close', done);
  });
}

/** Ends the response; resolves true once it finished, false if the connection closed first. */
function endResponse(res: ServerResponse): Promise<boolean> {
  return new Promise((resolve) => {
    if (res.destroyed) {
      resolve(res.writableFinished);
      return;
    }
    const done = () => {
      res.off('finish', done);
      res.off('close', done);
      resolve(res.writableFinished);
    };
    res.on('finish', done);
    res.on('close', done);
    res.end();
  });
}
