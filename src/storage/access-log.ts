/**
 * The fast path's access log (src/render/fastpath.ts): Apache writes one
 * line per fast-path hit, `<status> <method> <file>` (FAST_HIT_LOG_FORMAT),
 * to `pulp-lazy access-log`; GETs answered 200, 206 or 304 of files whose
 * real location is a unit file are recorded like the daemons' hits.
 */
import { realpath } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import type { AccessRecorder } from './access.ts';
import { isUnitFile } from './access.ts';

const LINE = /^(\d{3}) (\S+) (.+)$/;
const SERVED = new Set(['200', '206', '304']);

/** Reads `input` to its end, feeding each served unit file to `recorder`; how many lines counted. */
export async function readAccessLog(
  input: Readable,
  storageRoot: string,
  recorder: AccessRecorder,
): Promise<number> {
  let counted = 0;
  for await (const line of createInterface({ input, crlfDelay: Number.POSITIVE_INFINITY })) {
    const m = LINE.exec(line);
    if (!m || !SERVED.has(m[1]!) || m[2] !== 'GET') continue;
    // %f is the published link; the unit is its target.
    const real = await realpath(m[3]!).catch(() => undefined);
    if (real === undefined || !isUnitFile(storageRoot, real)) continue;
    recorder.served(real);
    counted++;
  }
  return counted;
}
