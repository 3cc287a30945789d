/**
 * Streaming decompression of metadata files, chosen by file name: gzip
 * with node's zlib; bzip2, xz and zstd through the `bzip2`, `xz` and
 * `zstd` programs (Node 20's zlib has none of them). Memory stays bounded:
 * chunks are yielded as they come.
 */
import { createReadStream } from 'node:fs';
import { pipeline } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { execa } from 'execa';
import { BadMetadata, oneLine } from '../errors.ts';

export type Compression = 'none' | 'gz' | 'bz2' | 'xz' | 'zst';

const TOOLS: Record<'bz2' | 'xz' | 'zst', string> = { bz2: 'bzip2', xz: 'xz', zst: 'zstd' };

/** The compression of a metadata file from its name; undefined for an unknown suffix. */
export function compressionOf(name: string): Compression | undefined {
  const m = /\.([A-Za-z0-9]+)$/.exec(name);
  const ext = m?.[1]?.toLowerCase();
  if (ext === 'gz') return 'gz';
  if (ext === 'bz2') return 'bz2';
  if (ext === 'xz') return 'xz';
  if (ext === 'zst' || ext === 'zstd') return 'zst';
  if (ext === 'lzma' || ext === 'zck' || ext === 'z' || ext === 'lz4') return undefined;
  return 'none';
}

/**
 * Yields the decompressed bytes of `file`; `name` (the file's metadata
 * name) picks the method and names the file in errors. Corrupt or
 * truncated data throws BadMetadata.
 */
export async function* readDecompressed(file: string, name: string): AsyncGenerator<Buffer> {
  const kind = compressionOf(name);
  if (kind === undefined) throw new BadMetadata(`${name}: unsupported compression`);
  if (kind === 'none') {
    yield* createReadStream(file, { highWaterMark: 1 << 16 }) as AsyncIterable<Buffer>;
    return;
  }
  if (kind === 'gz') {
    const out = pipeline(createReadStream(file), createGunzip(), () => {});
    try {
      for await (const chunk of out) yield chunk as Buffer;
    } catch (err) {
      throw new BadMetadata(`${name}: corrupt or truncated gzip data (${oneLine(err)})`);
    } finally {
      out.destroy();
    }
    return;
  }
  const tool = TOOLS[kind];
  // The program opens the file itself: no bytes pass through a pipe we feed.
  const sub = execa(tool, ['-dc', '--', file], {
    stdin: 'ignore',
    stdout: 'pipe',
    stderr: 'pipe',
    buffer: { stdout: false, stderr: true },
    reject: false,
    stripFinalNewline: true,
  });
  let done = false;
  try {
    for await (const chunk of sub.stdout) yield chunk as Buffer;
    done = true;
  } catch {
    // The exit status below explains it.
  } finally {
    if (!done) sub.kill();
  }
  const r = await sub;
  if (r.failed || r.exitCode !== 0) {
    if ((r as { code?: string }).code === 'ENOENT') {
      throw new BadMetadata(`${name}: cannot decompress: the "${tool}" program is not installed`);
    }
    const said = String(r.stderr ?? '')
      .split('\n')
      .find((l) => l.trim());
    const why = (said ?? r.shortMessage ?? '').replaceAll(file, name);
    throw new BadMetadata(`${name}: corrupt or truncated ${kind} data (${oneLine(why)})`);
  }
}
