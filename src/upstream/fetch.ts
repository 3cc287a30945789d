/** Small whole-body fetches from a feed (metadata, manifests), with clear errors. */
import { request } from 'undici';
import type { UpstreamSettings } from '../db/models.ts';
import { FeedUnreachable, oneLine } from '../errors.ts';
import { type DispatcherPool, upstreamHeaders } from './dispatcher.ts';

/** GETs `url` and returns the body; throws FeedUnreachable on any transport error or non-2xx status. */
export async function fetchBuffer(
  url: string,
  settings: UpstreamSettings,
  pool: DispatcherPool,
  opts: { maxBytes?: number } = {},
): Promise<Buffer> {
  const max = opts.maxBytes ?? 512 * 1024 * 1024;
  let res: Awaited<ReturnType<typeof request>>;
  try {
    res = await request(url, { dispatcher: pool.get(settings), headers: upstreamHeaders(settings) });
  } catch (err) {
    throw new FeedUnreachable(`cannot fetch ${redact(url)}: ${describe(err)}`, err);
  }
  if (res.statusCode < 200 || res.statusCode >= 300) {
    await res.body.dump().catch(() => {});
    throw new FeedUnreachable(`cannot fetch ${redact(url)}: HTTP ${res.statusCode}`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of res.body) {
      size += (chunk as Buffer).length;
      if (size > max) {
        res.body.destroy();
        throw new FeedUnreachable(`${redact(url)} is larger than ${max} bytes`);
      }
      chunks.push(chunk as Buffer);
    }
  } catch (err) {
    if (err instanceof FeedUnreachable) throw err;
    throw new FeedUnreachable(`cannot fetch ${redact(url)}: ${describe(err)}`, err);
  }
  return Buffer.concat(chunks);
}

function describe(err: unknown): string {
  const e = err as { code?: string; cause?: { code?: string; message?: string } };
  const code = e.cause?.code ?? e.code;
  const msg = oneLine(e.cause?.message ? e.cause : err);
  return code && !msg.includes(code) ? `${code} ${msg}` : msg;
}

function redact(url: string): string {
  return url.replace(/\/\/([^:@/]+):([^@/]+)@/, '//$1:***@');
}
