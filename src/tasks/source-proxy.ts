/**
 * Fetching through the signed streamer URL, exactly as a redirected client
 * does: `<scheme>://<host>:<port><redirect.path><storage path>`, signed by
 * the task for itself (signing.task_ttl, a fresh signature per request) and
 * sent with `Pulp-Stream-Request: true`. Empty redirect settings fall back
 * to http, 127.0.0.1 and apache.streamer_port (the content daemon's
 * fallbacks are the request's own, which a task does not have).
 */
import { type KeyObject, randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { type Dispatcher, request } from 'undici';
import type { Config } from '../config.ts';
import { redirectPath } from '../content/redirect.ts';
import { ConfigError, PulpLazyError } from '../errors.ts';
import { signUrl } from '../signing/index.ts';
import { describeError } from '../upstream/describe.ts';
import { DispatcherPool } from '../upstream/dispatcher.ts';
import { contentLength, type FileSource, STREAM_REQUEST_HEADERS, sourceError } from './source.ts';

/** `scheme://host:port` the tasks send their requests to. */
export function taskProxyOrigin(config: Config): string {
  const r = config.redirect;
  const host = r.host || '127.0.0.1';
  const h = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  return `${r.scheme || 'http'}://${h}:${r.port || config.apache.streamer_port}`;
}

/** The unsigned URL of a storage path on the streamer proxy. */
export function taskProxyUrl(config: Config, storagePath: string): string {
  return `${taskProxyOrigin(config)}${redirectPath(config.redirect.path, storagePath)}`;
}

export interface ProxySourceOptions {
  privateKey: KeyObject;
  clock?: () => number;
  /** Defaults to a pooled agent with the streamer's timeouts (and apache.tls_ca for https). */
  dispatcher?: Dispatcher;
}

export function proxySource(config: Config, opts: ProxySourceOptions): FileSource {
  const clock = opts.clock ?? Date.now;
  let pool: DispatcherPool | undefined;
  let dispatcher = opts.dispatcher;
  if (!dispatcher) {
    pool = new DispatcherPool({
      connectMs: config.streamer.connect_timeout,
      headersMs: config.streamer.headers_timeout,
      bodyIdleMs: config.streamer.body_idle_timeout,
    });
    dispatcher = pool.get({ tls_verify: true, ca_cert: proxyCa(config) });
  }
  const d = dispatcher;
  return {
    async open(storagePath, signal) {
      const url = taskProxyUrl(config, storagePath);
      const what = `GET ${url}`;
      const signed = signUrl(url, {
        privateKey: opts.privateKey,
        ttlMs: config.signing.task_ttl,
        now: clock(),
      });
      let res: Dispatcher.ResponseData;
      try {
        res = await request(signed, {
          method: 'GET',
          // Each fetch has its own id: Apache, Squid and the streamer log it, the streamer sends it upstream.
          headers: { ...STREAM_REQUEST_HEADERS, 'x-request-id': randomUUID() },
          dispatcher: d,
          signal,
        });
      } catch (err) {
        if (signal.aborted) throw signal.reason;
        throw new PulpLazyError('PL_PROXY_UNREACHABLE', `${what}: ${describeError(err)}`, { cause: err });
      }
      if (res.statusCode !== 200) {
        const text = await res.body.text().catch(() => '');
        throw sourceError(what, res.statusCode, text);
      }
      return { body: res.body, size: contentLength(res.headers['content-length']) };
    },
    async close() {
      await pool?.close();
    },
  };
}

/** The CA that signs the proxy's certificate (apache.tls_ca), for https task URLs. */
function proxyCa(config: Config): string | undefined {
  if (!config.apache.tls_ca) return undefined;
  try {
    return readFileSync(config.apache.tls_ca, 'utf8');
  } catch (err) {
    throw new ConfigError(
      `apache.tls_ca: cannot read ${config.apache.tls_ca}: ${(err as NodeJS.ErrnoException).code ?? err}`,
    );
  }
}
