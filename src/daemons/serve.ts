/**
 * All-in-one server (`pulp-lazy serve`): the content logic, the signature
 * check and the streamer in one process on one port, without Apache or
 * Squid. Hits are sent by the process itself (Range, HEAD, conditional
 * requests); misses stream through the streamer's single-flight/save path
 * directly, without a redirect. Signed streamer URLs
 * (`<redirect.path><storage path>?policy=…&signature=…`, what the download
 * tasks and `url sign` produce) are verified here as Apache's authorizer
 * would, then served by the streamer logic.
 */
import type { KeyObject } from 'node:crypto';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import path from 'node:path';
import type { Config } from '../config.ts';
import { clientAddress, trustedSet } from '../content/redirect.ts';
import type { Database } from '../db/index.ts';
import { requestId } from '../http/request-id.ts';
import { fileVanished, sendFile } from '../http/send-file.ts';
import type { Logger } from '../log.ts';
import { loadPublicKey, SignatureError, verifyUrl } from '../signing/index.ts';
import { createAccessRecorder, isUnitFile } from '../storage/access.ts';
import { createStreamerService } from '../streamer/service.ts';
import { createContentDaemon, type Delivery } from './content.ts';
import { removePredecessorTemps, requestPath } from './streamer.ts';

export interface AllInOneDeps {
  db: Database;
  logger: Logger;
  clock?: () => number;
  publicKey?: KeyObject;
}

export interface AllInOne {
  server: http.Server;
  listen(): Promise<AddressInfo | string>;
  close(opts?: { deadlineMs?: number }): Promise<void>;
}

export function createAllInOne(config: Config, deps: AllInOneDeps): AllInOne {
  const clock = deps.clock ?? Date.now;
  const log = deps.logger.child({ module: 'serve' });
  const storageRoot = path.resolve(config.paths.storage);
  const access = createAccessRecorder(deps.db, { storageRoot, clock, logger: log });
  const streamer = createStreamerService(config, { db: deps.db, logger: deps.logger, clock, access });
  const publicKey = deps.publicKey ?? loadPublicKey(config.paths.keys);
  const trusted = trustedSet(config.content.trusted_proxies);
  const signedPrefix = config.redirect.path;

  const delivery: Delivery = {
    async file(req, res, r) {
      try {
        await sendFile(req, res, r.file, r.stat, {
          'content-type': r.contentType,
          etag: r.etag,
          ...(r.cacheControl ? { 'cache-control': r.cacheControl } : {}),
        });
      } catch (err) {
        // A unit file reclaimed between the resolve and the open: stream it like a miss.
        if (!fileVanished(err, res) || !isUnitFile(storageRoot, r.file)) throw err;
        await streamer.handleStoragePath(req, res, r.file, { cacheControl: r.cacheControl ?? null });
        return 'miss';
      }
      return 'hit';
    },
    async missing(req, res, r) {
      // Streamed under the content URL: the caching of a hit on that URL, not the streamer's.
      await streamer.handleStoragePath(req, res, r.storagePath, { cacheControl: r.cacheControl ?? null });
      return 'miss';
    },
  };

  /** `<redirect.path><storage path>?policy&signature`: check the signature, then stream. */
  const otherRoutes = async (req: http.IncomingMessage, res: http.ServerResponse, pathname: string) => {
    if (!pathname.startsWith(signedPrefix)) return false;
    try {
      verifyUrl(req.url ?? '', {
        publicKey,
        now: clock(),
        ...(config.content.bind_remote_ip
          ? {
              extensions: {
                remote_ip: clientAddress(
                  { peer: req.socket.remoteAddress, headers: req.headers, encrypted: false },
                  trusted,
                ),
              },
            }
          : {}),
      });
    } catch (err) {
      if (!(err instanceof SignatureError)) throw err;
      log.info({ reqId: requestId(req), code: err.code }, 'signature refused');
      res.writeHead(403, { 'content-type': 'text/plain; charset=utf-8', 'cache-control': 'no-store' });
      res.end(`forbidden: ${err.code}\n`);
      return true;
    }
    const storagePath = requestPath(`/${pathname.slice(signedPrefix.length)}`);
    if (storagePath === undefined) {
      res.writeHead(400, { 'content-type': 'text/plain; charset=utf-8' }).end('bad request\n');
      return true;
    }
    await streamer.handleStoragePath(req, res, storagePath);
    return true;
  };

  const content = createContentDaemon(config, {
    db: deps.db,
    logger: deps.logger,
    clock,
    delivery,
    listen: config.serve.listen,
    otherRoutes,
    access,
    extraMetrics: () => streamer.metrics.registry.render(),
  });

  return {
    server: content.server,
    async listen() {
      await removePredecessorTemps(config, log);
      return content.listen();
    },
    async close(opts = {}) {
      await Promise.all([content.close(opts), streamer.close(opts)]);
      await access.close();
    },
  };
}
