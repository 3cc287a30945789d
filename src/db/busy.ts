/**
 * FerretDB's SQLite backend answers a write with "database is locked
 * (SQLITE_BUSY)" when other writers hold the database for too long (seen
 * under load with several task processes). Nothing was written then, so
 * writes are retried a few times before the error counts: every module that
 * writes a collection wraps its writes in retryBusy.
 */
import { setTimeout as sleep } from 'node:timers/promises';

const BUSY = /SQLITE_BUSY|database is locked/i;
const DELAYS_MS = [50, 150, 400, 1000, 2500];

export function isBusy(err: unknown): boolean {
  return err instanceof Error && BUSY.test(err.message);
}

export async function retryBusy<T>(fn: () => Promise<T>): Promise<T> {
  for (let i = 0; ; i++) {
    try {
      return await fn();
    } catch (err) {
      if (!isBusy(err) || i >= DELAYS_MS.length) throw err;
      await sleep(DELAYS_MS[i]! * (0.5 + Math.random()));
    }
  }
}
