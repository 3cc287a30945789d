/**
 * Start-time guard for the Apache fast path (apache.fast_path, see
 * src/render/fastpath.ts): Apache follows a published link only to a file
 * with the same owner (SymLinksIfOwnerMatch). If pulp-lazy runs as root, its
 * links and files belong to root, like most of the system, and that check no
 * longer keeps an escaping link from being served. So the fast path needs the
 * storage and published roots owned by a non-root service user.
 */
import { stat } from 'node:fs/promises';
import type { Config } from '../config.ts';
import { ProxyError } from './errors.ts';

/** Throws PL_PROXY_FASTPATH when apache.fast_path is on and a root is missing or owned by root. */
export async function checkFastPathOwnership(config: Config): Promise<void> {
  if (!config.apache.fast_path) return;
  for (const [key, dir] of [
    ['paths.storage', config.paths.storage],
    ['paths.published', config.paths.published],
  ] as const) {
    const st = await stat(dir).catch(() => undefined);
    if (!st) throw new ProxyError('PL_PROXY_FASTPATH', `apache.fast_path: ${key} (${dir}) does not exist`);
    if (st.uid === 0) {
      throw new ProxyError(
        'PL_PROXY_FASTPATH',
        `apache.fast_path: ${key} (${dir}) is owned by root; run pulp-lazy as a non-root service user that owns it (docs/proxies.md), or turn the fast path off`,
      );
    }
  }
}
