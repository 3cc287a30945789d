/**
 * The `downloaded` flag of units. A unit is downloaded when every one of its
 * files is in storage: files only enter storage through commitFile() after
 * verification, so presence with the right size is the check here.
 */
import { stat } from 'node:fs/promises';
import type { Database, UnitDoc } from '../db/index.ts';

/** Files of `unit` that are not (yet) in storage with the expected size. */
export async function missingFiles(unit: Pick<UnitDoc, 'files'>): Promise<UnitDoc['files']> {
  const missing: UnitDoc['files'] = [];
  for (const f of unit.files) {
    try {
      const st = await stat(f.storage_path);
      if (!st.isFile() || st.size !== f.size) missing.push(f);
    } catch {
      missing.push(f);
    }
  }
  return missing;
}

/**
 * Sets `downloaded: true` when every file of the unit is present; returns
 * whether the unit is now downloaded. Safe to call from several processes.
 */
export async function markDownloadedIfComplete(db: Database, unitId: string): Promise<boolean> {
  const unit = await db.units.findOne({ _id: unitId });
  if (!unit) return false;
  if ((await missingFiles(unit)).length > 0) return false;
  if (!unit.downloaded) await db.units.updateOne({ _id: unitId }, { $set: { downloaded: true } });
  return true;
}
