/**
 * Sends a file from disk: HEAD, conditional requests (ETag, Last-Modified)
 * and single byte ranges, with large read buffers.
 */
import type { Stats } from 'node:fs';
import { type FileHandle, open } from 'node:fs/promises';
import type { IncomingMessage, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import { contentRange, parseRange, unsatisfiedRange } from './range.ts';
import { endResponse, writeChunk } from './response.ts';

/** Read size for file bodies (perf anchors: 64 KiB halves large-file throughput). */
export const FILE_HIGH_WATER_MARK = 1 << 20;
/**
 * Read buffers per response, reused: a buffer is read into again once the
 * socket took its previous bytes, so a large file costs no allocation per
 * read (a read stream allocates 1 MiB per read, garbage for V8 to collect).
 */
export const FILE_BUFFERS = 3;

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
  const withBody = req.method !== 'HEAD' && st.size > 0;
  // Opened before the status goes out: a file removed since it was stat'ed (reclaim) throws
  // ENOENT while the caller can still answer otherwise (fileVanished).
  const fh = withBody ? await open(file, 'r') : undefined;
  try {
    res.writeHead(range ? 206 : 200, {
      ...base,
      'content-length': end - start + 1,
      ...(range ? { 'content-range': contentRange(range, st.size) } : {}),
    });
    if (!fh) {
      res.end();
      return 'complete';
    }
    return (await sendRange(res, fh, file, start, end, onBytes)) ? 'complete' : 'client_gone';
  } catch (err) {
    if (res.destroyed && !res.writableFinished) return 'client_gone';
    throw err;
  } finally {
    await fh?.close();
  }
}

/** sendFile failed because the file was removed before anything was sent: answer it as a miss. */
export function fileVanished(err: unknown, res: ServerResponse): boolean {
  return (err as NodeJS.ErrnoException).code === 'ENOENT' && !res.headersSent;
}

/**
 * Writes bytes start..end (inclusive) of `file` to `res` and ends it; `onBytes`
 * hears of each chunk written. Resolves false when the client went away first.
 */
async function sendRange(
  res: ServerResponse,
  fh: FileHandle,
  file: string,
  start: number,
  end: number,
  onBytes: (n: number) => void,
): Promise<boolean> {
  // Allocated when first needed, no larger than the range: a 1 KiB file takes one 1 KiB buffer.
  const size = Math.min(FILE_HIGH_WATER_MARK, end - start + 1);
  /** Per buffer: the buffer, and the write of its last bytes (the buffer is free once taken). */
  const slots: Array<{ buf: Buffer; taken: Promise<void> }> = [];
  for (let i = 0, pos = start; pos <= end; i = (i + 1) % FILE_BUFFERS) {
    const slot = slots[i];
    if (slot) await slot.taken;
    if (res.destroyed) return false;
    const buf = slot?.buf ?? Buffer.allocUnsafeSlow(size);
    const { bytesRead } = await fh.read(buf, 0, Math.min(size, end - pos + 1), pos);
    if (bytesRead === 0) throw new Error(`${file} is shorter than ${end + 1} bytes`);
    if (res.destroyed) return false;
    slots[i] = { buf, taken: writeChunk(res, buf.subarray(0, bytesRead)).taken };
    onBytes(bytesRead);
    pos += bytesRead;
  }
  await Promise.all(slots.map((s) => s.taken));
  return await endResponse(res);
}
