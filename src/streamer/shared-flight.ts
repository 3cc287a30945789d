/**
 * Single-flight across streamer processes (config streamer.share_fetches):
 * several streamers on one database and one shared storage fetch each cold
 * path from upstream once, not once each.
 *
 * Before a streamer starts an upstream fetch it claims the path in the lease
 * chain `p:<storage path>#<gen>` of `fetch_leases` (src/db/chain.ts:
 * decided by a unique insert), naming its own URL (streamer.advertise_url).
 *   - won: it fetches as usual, renews the lease while the fetch runs and
 *     releases it once the fetch is over (the file is then in storage);
 *   - busy (another streamer holds the path): the request is passed to the
 *     holder (`GET <its URL><path>` with JOIN_HEADER), which joins its own
 *     fetch, and the bytes are relayed to the client. A holder that does not
 *     answer (it died; its lease expires by itself) is not waited for: this
 *     streamer then fetches without a lease (the one duplicate fetch this
 *     allows, only after a crash).
 * A request carrying JOIN_HEADER never claims (no ping-pong between two
 * streamers): it joins a running fetch, or is served from storage, or
 * fetches locally.
 */

import type { IncomingMessage, ServerResponse } from 'node:http';
import { hostname } from 'node:os';
import { pipeline } from 'node:stream/promises';
import { Agent, request } from 'undici';
import { type ChainLease, LeaseChain } from '../db/chain.ts';
import type { Database } from '../db/index.ts';
import type { Logger } from '../log.ts';
import { endToEndHeaders } from './headers.ts';

export const FETCH_LEASES_COLLECTION = 'fetch_leases';
/** Request header of a streamer passing a client's request to the streamer that holds the fetch. */
export const JOIN_HEADER = 'pulp-lazy-join';
/** Request headers relayed to the holder (the task header keeps its meaning there). */
const RELAYED = ['range', 'pulp-stream-request', 'if-none-match', 'if-modified-since', 'x-request-id'];

export type PathClaim =
  | { kind: 'won'; release: () => Promise<void> }
  | { kind: 'held'; owner: string; url: string };

export interface SharedFlights {
  /** This streamer's owner id in the leases. */
  readonly owner: string;
  /** Claims `path` for an upstream fetch by this streamer (see the module comment). */
  claim(path: string): Promise<PathClaim>;
  /**
   * Relays `req` to the holder at `url`. Resolves 'relayed' once the reply
   * was passed on (or the client left), 'unreachable' when the holder did
   * not answer before anything was sent (fetch locally then).
   */
  relay(
    req: IncomingMessage,
    res: ServerResponse,
    url: string,
    path: string,
  ): Promise<'relayed' | 'unreachable'>;
  close(): Promise<void>;
}

export function createSharedFlights(opts: {
  db: Database;
  logger: Logger;
  clock: () => number;
  /** This streamer's base URL, as the other streamers reach it (no trailing slash). */
  advertiseUrl: string;
  leaseMs: number;
  connectMs: number;
}): SharedFlights {
  const { db, clock, leaseMs } = opts;
  const log = opts.logger.child({ module: 'shared-flight' });
  const owner = `${hostname()}:${process.pid}:${Math.random().toString(36).slice(2, 8)}`;
  const chain = new LeaseChain(db, FETCH_LEASES_COLLECTION, 'p:', 'path');
  const agent = new Agent({ connect: { timeout: opts.connectMs }, keepAliveTimeout: 10_000 });

  const hold = (lease: ChainLease) => {
    const timer = setInterval(() => {
      chain
        .renew(lease, leaseMs, clock)
        .then((held) => {
          if (!held) log.warn({ path: lease.key }, 'fetch lease lost (another streamer may fetch too)');
        })
        .catch((err: unknown) => log.warn({ path: lease.key, err }, 'cannot renew fetch lease'));
    }, leaseMs / 3);
    timer.unref();
    return async () => {
      clearInterval(timer);
      await chain
        .release(lease, clock)
        .catch((err: unknown) => log.warn({ path: lease.key, err }, 'cannot release fetch lease'));
    };
  };

  return {
    owner,
    async claim(path) {
      const got = await chain.acquire(path, owner, leaseMs, clock, { url: opts.advertiseUrl });
      if (got.kind === 'won') return { kind: 'won', release: hold({ key: path, gen: got.gen, owner }) };
      return { kind: 'held', owner: got.owner, url: String(got.doc.url ?? '') };
    },
    async relay(req, res, url, path) {
      const headers: Record<string, string> = { [JOIN_HEADER]: '1' };
      for (const name of RELAYED) {
        const v = req.headers[name];
        if (typeof v === 'string') headers[name] = v;
      }
      const ac = new AbortController();
      const onClose = () => ac.abort();
      res.once('close', onClose);
      let up: Awaited<ReturnType<typeof request>>;
      try {
        up = await request(`${url}${path.split('/').map(encodeURIComponent).join('/')}`, {
          dispatcher: agent,
          method: req.method === 'HEAD' ? 'HEAD' : 'GET',
          headers,
          signal: ac.signal,
        });
      } catch (err) {
        res.off('close', onClose);
        if (res.destroyed) return 'relayed';
        log.warn({ path, holder: url, err }, 'the streamer holding the fetch does not answer');
        return 'unreachable';
      }
      try {
        const out = endToEndHeaders(up.headers);
        // The holder's freshness, so that a cache in front of this streamer keeps the object as it would.
        const cc = up.headers['cache-control'];
        if (cc !== undefined) out['cache-control'] = Array.isArray(cc) ? cc.join(', ') : cc;
        res.writeHead(up.statusCode, out);
        await pipeline(up.body, res);
      } catch {
        // The holder's reply broke off (or the client left): never end the client's reply cleanly.
        res.destroy();
      } finally {
        res.off('close', onClose);
      }
      return 'relayed';
    },
    close: () => agent.close(),
  };
}
