/**
 * The signature check in front of the streamer: a FastCGI authorizer for
 * Apache's mod_authnz_fcgi (authn mode). Apache sends the CGI environment;
 * REQUEST_URI is the raw request target and still carries `policy` and
 * `signature` even after the vhost's [QSD]. Valid: `Status: 200` +
 * `Variable-SIG_USER: signed` (Apache's UserExpr picks it up). Invalid:
 * `Status: 403` and a one-line body naming the reason code; Apache returns it
 * to the client as is.
 */
import type { KeyObject } from 'node:crypto';
import type net from 'node:net';
import type { Config } from '../config.ts';
import { ConfigError } from '../errors.ts';
import type { FcgiResponse } from '../fastcgi/codec.ts';
import { createFcgiServer, type FcgiRequest } from '../fastcgi/server.ts';
import type { Logger } from '../log.ts';
import { isSignatureError, type SignatureErrorCode } from '../signing/errors.ts';
import { loadPublicKey, verifyUrl } from '../signing/index.ts';
import { parseListen } from '../util/listen.ts';

export interface AuthorizerDeps {
  logger: Logger;
  /** Defaults to the public key in config paths.keys. */
  publicKey?: KeyObject;
  /** Clock in epoch milliseconds (tests). */
  now?: () => number;
}

export interface Authorizer {
  server: net.Server;
  /** Listens on apache.authorizer_listen; resolves with the bound address. */
  listen(): Promise<{ host: string; port: number }>;
  /** Stops accepting, lets in-flight checks finish (they are CPU only), then closes idle connections. */
  close(): Promise<void>;
}

export const SIG_USER = 'signed';

export function createAuthorizer(config: Config, deps: AuthorizerDeps): Authorizer {
  const addr = parseListen(config.apache.authorizer_listen);
  if (addr.kind === 'unix') {
    throw new ConfigError(
      `apache.authorizer_listen = "${config.apache.authorizer_listen}": mod_authnz_fcgi connects over TCP only; use host:port`,
    );
  }
  const publicKey = deps.publicKey ?? loadPublicKey(config.paths.keys);
  const log = deps.logger.child({ module: 'authorizer' });
  const bindIp = config.content.bind_remote_ip;

  const check = (req: FcgiRequest): FcgiResponse => {
    const target = req.params.get('REQUEST_URI');
    const remoteIp = req.params.get('REMOTE_ADDR') ?? '';
    if (!target) {
      log.warn({ reqId: req.id }, 'FastCGI request without REQUEST_URI');
      return deny('PL_SIG_MALFORMED', 'no REQUEST_URI in the FastCGI request');
    }
    try {
      verifyUrl(target, {
        publicKey,
        ...(deps.now ? { now: deps.now() } : {}),
        ...(bindIp ? { extensions: { remote_ip: remoteIp } } : {}),
      });
    } catch (err) {
      if (!isSignatureError(err)) throw err;
      const code = err.code;
      // Never log the query: it holds the signature.
      log.info({ path: target.split('?')[0], remoteIp, code }, 'signature refused');
      return deny(code, err.message);
    }
    log.debug({ path: target.split('?')[0], remoteIp }, 'signature accepted');
    return { status: 200, headers: { 'Variable-SIG_USER': SIG_USER } };
  };

  const server = createFcgiServer({
    handler: check,
    onError: (err, where) => {
      if (where === 'handler') log.error({ err }, 'authorizer check failed');
      else log.warn({ err }, 'FastCGI connection closed on a protocol error');
    },
  });
  const sockets = new Set<net.Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
  });

  return {
    server,
    listen() {
      return new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen({ host: addr.host, port: addr.port }, () => {
          server.off('error', reject);
          const a = server.address() as net.AddressInfo;
          log.info({ address: `${a.address}:${a.port}` }, 'authorizer listening');
          resolve({ host: a.address, port: a.port });
        });
      });
    },
    close() {
      return new Promise((resolve) => {
        if (!server.listening) return resolve();
        server.close(() => resolve());
        // Checks are synchronous, so a connection with no complete request is idle: close it.
        setImmediate(() => {
          for (const s of sockets) s.destroy();
        });
      });
    },
  };
}

function deny(code: SignatureErrorCode, message: string): FcgiResponse {
  return { status: 403, body: `${code} ${message.replace(/[\r\n]+/g, ' ').slice(0, 200)}\n` };
}
