/**
 * The database a benchmark script uses: MONGODB_URL when set, otherwise the
 * development database (FerretDB on SQLite) started in `scratch`.
 */
import path from 'node:path';
import { startDevDb } from '../src/devdb.ts';

export async function benchDatabase(
  scratch: string,
  log: (line: string) => void,
): Promise<{ url: string; stop: () => Promise<void> }> {
  const url = process.env.MONGODB_URL;
  if (url) {
    log('database: MONGODB_URL');
    return { url, stop: async () => {} };
  }
  const dev = await startDevDb({ dataDir: path.join(scratch, 'devdb'), stderr: 'ignore' });
  log(`database: development FerretDB at ${dev.url}`);
  return { url: dev.url, stop: dev.stop };
}
