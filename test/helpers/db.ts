/**
 * Each test file gets its own database on the run's server (the FerretDB
 * launcher started by scripts/test.ts, or MONGODB_URL), dropped at the end.
 */
import { after } from 'node:test';
import { connect, type Database, migrate } from '../../src/db/index.ts';

export function mongoUrl(): string {
  const url = process.env.MONGODB_URL;
  if (!url) throw new Error('MONGODB_URL is not set: run the tests with "npm test"');
  return url;
}

let counter = 0;

/** A fresh, migrated database; dropped when the test file ends. */
export async function testDatabase(label = 'db'): Promise<Database> {
  const name = `t_${label.replace(/[^A-Za-z0-9]/g, '_').slice(0, 20)}_${process.pid}_${counter++}`;
  const d = await connect(mongoUrl(), name);
  await migrate(d);
  after(async () => {
    await d.db.dropDatabase().catch(() => {});
    await d.close();
  });
  return d;
}

/**
 * Every document of the collections a sync writes, as sorted JSON lines:
 * two snapshots are equal when nothing changed (`repos` adds the repositories,
 * but not their sync_state).
 */
export async function dbSnapshot(db: Database, opts: { repos?: boolean } = {}) {
  const strip = (docs: object[]) => docs.map((d) => JSON.stringify(d)).sort();
  return {
    units: strip(await db.units.find({}).toArray()),
    catalog: strip(await db.catalog.find({}).toArray()),
    rcu: strip(await db.repoContentUnits.find({}).toArray()),
    // sync_state is the record of each sync (its time and result), which every sync writes.
    ...(opts.repos
      ? { repos: strip(await db.repos.find({}, { projection: { sync_state: 0 } }).toArray()) }
      : {}),
  };
}
