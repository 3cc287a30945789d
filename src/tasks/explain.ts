/**
 * Why a fetch through the streamer failed, when the streamer knows better
 * than the task: a verification failure makes it cut the response (so no
 * client gets bad bytes complete) and record the reason on the catalog
 * entry it cooled down.
 */
import type { Database, UnitFile } from '../db/index.ts';

/** How a task's error quotes the streamer. */
export function fromStreamer(why: string): string {
  return `streamer: ${why}`;
}

export function catalogExplainer(db: Database, clock: () => number = Date.now) {
  return async (file: UnitFile): Promise<string | undefined> => {
    const now = new Date(clock());
    const entries = await db.catalog
      .find({ path: file.storage_path, failed_until: { $gt: now } }, { projection: { last_error: 1 } })
      .toArray();
    const errors = [...new Set(entries.map((e) => e.last_error).filter((e): e is string => !!e))];
    return errors.length ? fromStreamer(errors.join('; ')) : undefined;
  };
}
