/**
 * Progress of download_repo for people: on a terminal one line redrawn in
 * place (files, bytes, rate, ETA); otherwise a plain line every few seconds.
 */
import type { RepoProgress } from './download-repo.ts';

export function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let v = n;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${i === 0 ? v : v.toFixed(1)} ${units[i]}`;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '?';
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m`;
}

/** `files 12/40, 3.1 MiB/10.0 MiB, 1.2 MiB/s, ETA 6s, 1 failed` */
export function formatProgress(p: RepoProgress, elapsedMs: number): string {
  const secs = elapsedMs / 1000;
  const rate = secs > 0 ? p.bytes_done / secs : 0;
  const left = p.bytes_total - p.bytes_done;
  const eta = left <= 0 ? 0 : rate > 0 ? left / rate : Number.POSITIVE_INFINITY;
  const parts = [
    `files ${p.files_done}/${p.files_total}`,
    `${formatBytes(p.bytes_done)}/${formatBytes(p.bytes_total)}`,
    `${formatBytes(rate)}/s`,
    `ETA ${formatDuration(eta)}`,
  ];
  if (p.failed) parts.push(`${p.failed} failed`);
  return parts.join(', ');
}

export interface ProgressReporter {
  update(p: RepoProgress): void;
  /** Final redraw (TTY: ends the line). */
  done(): void;
}

export function createProgressReporter(opts: {
  stream: NodeJS.WritableStream;
  tty: boolean;
  /** Plain mode: one line at most this often (default 5 s). */
  intervalMs?: number;
  clock?: () => number;
}): ProgressReporter {
  const clock = opts.clock ?? Date.now;
  const started = clock();
  const every = opts.tty ? 200 : (opts.intervalMs ?? 5000);
  let last: RepoProgress | undefined;
  let shown: RepoProgress | undefined;
  let lastDraw = Number.NEGATIVE_INFINITY;
  const draw = () => {
    if (!last) return;
    const text = formatProgress(last, clock() - started);
    opts.stream.write(opts.tty ? `\r\x1b[K${text}` : `${text}\n`);
    shown = last;
    lastDraw = clock();
  };
  return {
    update(p) {
      last = p;
      if (clock() - lastDraw >= every) draw();
    },
    done() {
      if (last !== shown) draw();
      if (opts.tty && shown) opts.stream.write('\n');
    },
  };
}
