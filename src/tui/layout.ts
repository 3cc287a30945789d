/** How the lists of `pulp-lazy top` share the terminal's rows (pure; no I/O). */
import type { TopSnapshot } from './types.ts';

/** Most rows each list takes below its heading, however tall the terminal. */
export const MAX_ROWS = { repos: 6, failures: 5, runs: 4, gone: 3 } as const;

/**
 * Hands out `room` rows one at a time, in turn, to the lists that still want
 * one: with little room every list keeps a few lines instead of the first
 * taking them all.
 */
export function shareRows(room: number, wants: number[]): number[] {
  const got = wants.map(() => 0);
  let left = Math.max(0, Math.floor(room));
  for (let gave = true; gave && left > 0; ) {
    gave = false;
    for (let i = 0; i < wants.length && left > 0; i++) {
      if (got[i]! < wants[i]!) {
        got[i]!++;
        left--;
        gave = true;
      }
    }
  }
  return got;
}

/**
 * Rows for the repositories, failures, last runs and units gone upstream
 * on a screen `height` lines tall (undefined: no limit), given the `fixed`
 * lines the other panels, the list headings and the footer take.
 */
export function listRows(
  s: TopSnapshot,
  height: number | undefined,
  fixed: number,
): { repos: number; failures: number; runs: number; gone: number } {
  const wants = [
    Math.min(s.repos.length, MAX_ROWS.repos),
    Math.min(s.queue?.failing.length ?? 0, MAX_ROWS.failures),
    Math.min(s.runs?.length ?? 0, MAX_ROWS.runs),
    Math.min(s.gone?.units.length ?? 0, MAX_ROWS.gone),
  ];
  const [repos, failures, runs, gone] = height === undefined ? wants : shareRows(height - fixed, wants);
  return { repos: repos!, failures: failures!, runs: runs!, gone: gone! };
}
