/**
 * Sends a file from disk: HEAD, conditional requests (ETag, Last-Modified)
 * and single byte ranges, with large read buffers.
 */
import { createReadStream, type Stats } from 'node:fs';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { pipeline } from 'node:stream/promises';
import { contentRange, parseRange, unsatisfiedRange } from './range.ts';

/** Read size for file bodies (perf anchors: 64 KiB halves large-file throughput). */
export const FILE_HIGH_WATER_MARK = 1 << 20;

export type SendFileResult = 'complete' | 'client_gone' | 'not_modified';

function notModified(req: IncomingMessage, st: Stats, etag: string | undefined): boolean {
  const inm = req.headers['if-none-match'];
  if (inm !== undefined) {
    if (!etag) return false;
    return inm.split(',').some((t) => {
      const v = t.trim();
      return v === '*' || v === etag || v === `W/${etag}`;
    });
  }
  const ims = req.headers['if-modified-since'];
  if (ims) {
    const t = Date.parse(ims);
    return !Number.isNaN(t) && Math.floor(st.mtimeMs / 1000) * 1000 <= t;
  }
  return false;
}

export async function sendFile(
  req: IncomingMessage,
  res: ServerResponse,
  file: string,
  st: Stats,
  headers: OutgoingHttpHeaders & { etag?: string },
  onBytes: (n: number) => void = () => {},
): Promise<SendFileResult> {
  const base: OutgoingHttpHeaders = {
    ...headers,
    'last-modified': st.mtime.toUTCString(),
    'accept-ranges': 'bytes',
  };
  if (notModified(req, st, headers.etag)) {
    delete base['content-type'];
    res.writeHead(304, base);
    res.end();
    return 'not_modified';
  }
  // If-Range: only honour Range when the validator still matches.
  const ifRange = req.headers['if-range'];
  const rangeAllowed = !ifRange || ifRange === headers.etag || ifRange === base['last-modified'];
  const range = rangeAllowed ? parseRange(req.headers.range, st.size) : undefined;
  if (range === 'unsatisfiable') {
    res.writeHead(416, { ...base, 'content-range': unsatisfiedRange(st.size), 'content-length': 0 });
    res.end();
    return 'complete';
  }
  const start = range?.start ?? 0;
  const end = range?.end ?? st.size - 1;
  res.writeHead(range ? 206 : 200, {
    ...base,
    'content-length': end - start + 1,
    ...(range ? { 'content-range': contentRange(range, st.size) } : {}),
  });
  if (req.method === 'HEAD' || st.size === 0) {
    res.end();
    return 'complete';
  }
  const stream = createReadStream(file, { start, end, highWaterMark: FILE_HIGH_WATER_MARK });
  try {
    await pipeline(stream, res);
    return 'complete';
  } catch (err) {
    if (res.destroyed && !res.writableFinished) return 'client_gone';
    throw err;
  } finally {
    onBytes(stream.bytesRead);
  }
}
