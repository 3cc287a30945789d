/**
 * Copying one unit into storage. For each file not already in storage with
 * the right checksum: GET it through the streamer (FileSource), write it to
 * a unique temp file in the tasks' working dir while hashing, verify size
 * and checksum against the unit, then fsync and rename it atomically onto
 * its storage path. A file already in storage but with wrong bytes is
 * removed first (the streamer would otherwise serve it back). The caller
 * sets `downloaded` only when this resolves, i.e. every file is present and
 * verified; one failed file fails the unit (the others stay stored).
 */
import { createHash } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { rm, stat } from 'node:fs/promises';
import { Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import type { UnitDoc, UnitFile } from '../db/index.ts';
import { ChecksumMismatch, oneLine, PulpLazyError, UpstreamError } from '../errors.ts';
import type { Logger } from '../log.ts';
import { checkDigest, commitFile, fileMatches, tempPath } from '../storage/index.ts';
import type { Limiter } from './limit.ts';
import type { FileSource } from './source.ts';

export interface DownloadContext {
  source: FileSource;
  /** Working dir of the tasks (temp files go to `<dir>/tmp`). */
  workingDir: string;
  /** Shared by every file of every unit in the run: the file concurrency limit. */
  limiter: Limiter;
  logger: Logger;
  /** Body bytes received (progress). */
  onBytes?: (n: number) => void;
  /** A file is done (present, fetched or failed). */
  onFile?: (outcome: FileOutcome) => void;
  /**
   * More about a failed fetch (e.g. the streamer's verification error, which
   * a client only sees as a cut connection); appended to the error message.
   */
  explain?: (file: UnitFile) => Promise<string | undefined>;
}

export interface FileOutcome {
  file: UnitFile;
  /** present: already stored and verified; fetched: downloaded now; failed. */
  result: 'present' | 'fetched' | 'failed';
  /** A corrupt or wrong-sized stored file was removed before the fetch. */
  repaired: boolean;
  /** Whether this task renamed the file into storage (false: the streamer had saved it already). */
  committed: boolean;
  /** Body bytes received. */
  bytes: number;
  error?: PulpLazyError;
}

export interface UnitResult {
  files: FileOutcome[];
  bytes: number;
}

/** A unit failed: some of its files could not be stored. */
export class UnitDownloadFailed extends PulpLazyError {
  constructor(
    readonly unitId: string,
    readonly failures: FileOutcome[],
  ) {
    const first = failures[0]?.error?.message ?? 'unknown error';
    const more = failures.length > 1 ? ` (and ${failures.length - 1} more files)` : '';
    // The first file's code, but the unit's own status and exit code.
    super(failures[0]?.error?.code ?? 'PL_DOWNLOAD_FAILED', `${first}${more}`, { status: 500, exitCode: 1 });
  }
}

/**
 * Whether `err` says the unit is gone upstream: some file of it answered
 * PL_UPSTREAM_GONE (every catalog entry 404 or 410; the streamer flagged the
 * unit and requested its repository's re-sync), so retrying cannot help.
 */
export function goneUpstream(err: unknown): boolean {
  return err instanceof UnitDownloadFailed && err.failures.some((f) => f.error?.code === 'PL_UPSTREAM_GONE');
}

/**
 * Whether `err` says the unit waits for a blocked upstream origin: some file
 * of it answered PL_UPSTREAM_BLOCKED (every entry of it on a blocked origin,
 * src/upstream/health.ts), so the failure is not the unit's.
 */
export function upstreamBlocked(err: unknown): boolean {
  return (
    err instanceof UnitDownloadFailed && err.failures.some((f) => f.error?.code === 'PL_UPSTREAM_BLOCKED')
  );
}

/** Stores every missing file of `unit`; throws UnitDownloadFailed if any file could not be stored. */
export async function downloadUnit(
  unit: UnitDoc,
  ctx: DownloadContext,
  signal: AbortSignal,
): Promise<UnitResult> {
  const outcomes = await Promise.all(unit.files.map((f) => ctx.limiter.run(() => storeFile(f, ctx, signal))));
  if (signal.aborted) throw signal.reason;
  const failures = outcomes.filter((o) => o.result === 'failed');
  if (failures.length > 0) throw new UnitDownloadFailed(unit._id, failures);
  return { files: outcomes, bytes: outcomes.reduce((n, o) => n + o.bytes, 0) };
}

/** Makes sure one file is in storage with the right bytes; never throws (failures are outcomes). */
export async function storeFile(
  file: UnitFile,
  ctx: DownloadContext,
  signal: AbortSignal,
): Promise<FileOutcome> {
  const outcome: FileOutcome = { file, result: 'failed', repaired: false, committed: false, bytes: 0 };
  try {
    if (signal.aborted) throw signal.reason;
    if (await fileMatches(file.storage_path, file)) {
      outcome.result = 'present';
    } else {
      if (await exists(file.storage_path)) {
        ctx.logger.warn({ path: file.storage_path }, 'stored file has wrong size or checksum; removing it');
        await rm(file.storage_path, { force: true });
        outcome.repaired = true;
      }
      await fetchInto(file, ctx, signal, outcome);
      outcome.result = 'fetched';
    }
  } catch (err) {
    outcome.result = 'failed';
    let e =
      err instanceof PulpLazyError
        ? err
        : new PulpLazyError('PL_DOWNLOAD_IO', `${file.storage_path}: ${oneLine(err)}`, { cause: err });
    const more = signal.aborted ? undefined : await explainFailure(ctx, file);
    if (more && !e.message.includes(more)) {
      e = new PulpLazyError(e.code, `${e.message}; ${more}`, { status: e.status, cause: err });
    }
    outcome.error = e;
  }
  ctx.onFile?.(outcome);
  return outcome;
}

/** What the source and the catalog know about a failed fetch of `file`, if anything. */
async function explainFailure(ctx: DownloadContext, file: UnitFile): Promise<string | undefined> {
  const parts = [
    ctx.source.explain?.(file.storage_path),
    await ctx.explain?.(file).catch(() => undefined),
  ].filter((p): p is string => !!p);
  return parts.length ? [...new Set(parts)].join('; ') : undefined;
}

async function fetchInto(file: UnitFile, ctx: DownloadContext, signal: AbortSignal, outcome: FileOutcome) {
  const temp = await tempPath(ctx.workingDir, file.storage_path);
  try {
    const { body, size } = await ctx.source.open(file.storage_path, signal);
    if (size !== undefined && size !== file.size) {
      body.destroy();
      throw new ChecksumMismatch(`${file.storage_path}: Content-Length ${size}, expected ${file.size}`);
    }
    const meter = new Meter(file, (n) => {
      outcome.bytes += n;
      ctx.onBytes?.(n);
    });
    try {
      await pipeline(body, meter, createWriteStream(temp, { flags: 'wx', mode: 0o644 }), { signal });
    } catch (err) {
      if (signal.aborted) throw signal.reason;
      if (err instanceof PulpLazyError) throw err;
      throw new UpstreamError(
        `GET ${file.storage_path}: transfer cut after ${meter.size} of ${file.size} bytes (${oneLine(err)})`,
        err,
      );
    }
    checkDigest(file.storage_path, { digest: meter.digest(), size: meter.size }, file);
    // On a miss the streamer saves the verified file itself before releasing the last byte:
    // then there is nothing to rename (files enter storage only verified, so the size check suffices).
    const st = await stat(file.storage_path).catch(() => undefined);
    if (st?.isFile() && st.size === file.size) return;
    await commitFile(temp, file.storage_path);
    outcome.committed = true;
  } finally {
    await rm(temp, { force: true }).catch(() => {});
  }
}

/** Hashes and counts the bytes passing through; fails early when more than expected arrive. */
class Meter extends Transform {
  size = 0;
  private readonly hash;

  constructor(
    private readonly file: UnitFile,
    private readonly onBytes: (n: number) => void,
  ) {
    super();
    this.hash = createHash(file.checksum_algorithm);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, cb: TransformCallback): void {
    this.size += chunk.length;
    if (this.size > this.file.size) {
      cb(new ChecksumMismatch(`${this.file.storage_path}: more than the expected ${this.file.size} bytes`));
      return;
    }
    this.hash.update(chunk);
    this.onBytes(chunk.length);
    cb(null, chunk);
  }

  digest(): string {
    return this.hash.digest('hex');
  }
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}
