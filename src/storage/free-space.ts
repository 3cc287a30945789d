/**
 * The disk guard (storage.min_free): below the minimum free space, the
 * streamer streams new files without saving them and the sweep stops
 * claiming, instead of failing with ENOSPC mid-file. Both ask a DiskGuard,
 * which looks at each directory's filesystem at most once per interval;
 * `status` and `top` call diskStatus() directly with the config's paths.
 */
import { statfs } from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../config.ts';
import { oneLine } from '../errors.ts';
import type { Logger } from '../log.ts';
import type { MinFree } from '../util/size.ts';

/** Free bytes (for unprivileged writers) and the size of the filesystem holding `dir`. */
export interface FreeSpace {
  free: number;
  size: number;
}

/** statfs of `dir`, or of its nearest existing parent (a storage dir not created yet). */
export async function freeSpace(dir: string): Promise<FreeSpace> {
  for (let d = path.resolve(dir); ; d = path.dirname(d)) {
    try {
      const s = await statfs(d);
      return { free: s.bavail * s.bsize, size: s.blocks * s.bsize };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || d === path.dirname(d)) throw err;
    }
  }
}

/** The minimum free bytes on a filesystem of `size` bytes. */
export function minFreeBytes(min: MinFree, size: number): number {
  const byPercent = min.percent === undefined ? Infinity : Math.floor((size * min.percent) / 100);
  return Math.min(min.bytes ?? Infinity, byPercent);
}

export interface DirSpace extends FreeSpace {
  dir: string;
  min_free: number;
}

export interface DiskStatus {
  /** Some directory has less than its min_free. */
  low: boolean;
  dirs: DirSpace[];
  /** A directory could not be measured (the guard then lets saves go on). */
  error?: string;
}

/** Measures every directory in `dirs` against `min`. */
export async function diskStatus(dirs: readonly string[], min: MinFree): Promise<DiskStatus> {
  if (min.off) return { low: false, dirs: [] };
  try {
    const measured = await Promise.all(
      dirs.map(async (dir) => {
        const s = await freeSpace(dir);
        return { dir, ...s, min_free: minFreeBytes(min, s.size) };
      }),
    );
    return { low: measured.some((d) => d.free < d.min_free), dirs: measured };
  } catch (err) {
    return { low: false, dirs: [], error: oneLine(err) };
  }
}

/** One line for `status` and `top` when the disk is low; undefined otherwise. */
export function diskWarning(st: DiskStatus): string | undefined {
  const low = st.dirs.filter((d) => d.free < d.min_free);
  if (!low.length) return undefined;
  const mib = (n: number) => `${(n / (1 << 20)).toFixed(1)} MiB`;
  const where = low.map((d) => `${d.dir} has ${mib(d.free)} free (min_free ${mib(d.min_free)})`).join('; ');
  return `low disk: ${where}; new files are streamed without saving and the sweep is paused`;
}

/** The directories the streamer and the tasks write to: storage and the working dir. */
export function guardedDirs(config: Config): string[] {
  return [config.paths.storage, config.paths.working];
}

export interface DiskGuardOptions {
  clock?: () => number;
  /** How long a measurement is reused (default 1 s). */
  intervalMs?: number;
  /** Told of each measurement (metrics). */
  onCheck?: (st: DiskStatus) => void;
  /** Gets one `disk_guard` warning or info line per change of state. */
  log?: Logger;
}

/** Cached answers to "may a new file be saved?" for a set of directories. */
export class DiskGuard {
  private last: { at: number; st: DiskStatus } | undefined;
  private pending: Promise<DiskStatus> | undefined;
  private readonly clock: () => number;
  private readonly intervalMs: number;

  constructor(
    private readonly dirs: readonly string[],
    private readonly min: MinFree,
    private readonly opts: DiskGuardOptions = {},
  ) {
    this.clock = opts.clock ?? Date.now;
    this.intervalMs = opts.intervalMs ?? 1000;
  }

  /** The state, measured at most once per interval. */
  check(): Promise<DiskStatus> {
    const last = this.last;
    if (last && this.clock() - last.at < this.intervalMs) return Promise.resolve(last.st);
    this.pending ??= diskStatus(this.dirs, this.min)
      .then((st) => {
        this.changed(last?.st, st);
        this.last = { at: this.clock(), st };
        this.opts.onCheck?.(st);
        return st;
      })
      .finally(() => {
        this.pending = undefined;
      });
    return this.pending;
  }

  /** False when a file of `expectedSize` bytes would leave some directory under its min_free. */
  async canSave(expectedSize = 0): Promise<boolean> {
    const st = await this.check();
    return !st.low && st.dirs.every((d) => d.free - expectedSize >= d.min_free);
  }

  private changed(before: DiskStatus | undefined, now: DiskStatus): void {
    const log = this.opts.log;
    if (!log || (before?.low ?? false) === now.low) return;
    const dirs = now.dirs.map((d) => ({ dir: d.dir, free: d.free, min_free: d.min_free }));
    if (now.low) log.warn({ event: 'disk_guard', low: true, dirs }, diskWarning(now) ?? 'low disk');
    else
      log.info({ event: 'disk_guard', low: false, dirs }, 'disk space back above min_free: saving resumes');
  }
}
