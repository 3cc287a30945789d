/** Readiness/health probes: /healthz (content, streamer), FastCGI get-values (authorizer). */
import http from 'node:http';
import type { Config } from '../config.ts';
import { oneLine } from '../errors.ts';
import { healthCheck } from '../fastcgi/health.ts';
import { parseListen } from '../util/listen.ts';
import { type DaemonName, daemonListen } from './components.ts';

export interface Health {
  healthy: boolean;
  error?: string;
}

/** GET path on a listen address ("host:port" or "unix:/path"); resolves status and body. */
export function httpGet(
  listen: string,
  pathname: string,
  timeoutMs = 1000,
): Promise<{ status: number; body: string }> {
  const t = parseListen(listen);
  const target =
    t.kind === 'unix'
      ? { socketPath: t.path }
      : { host: t.host === '0.0.0.0' ? '127.0.0.1' : t.host, port: t.port };
  return new Promise((resolve, reject) => {
    const req = http.get({ ...target, path: pathname, timeout: timeoutMs, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }),
      );
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

/** Health of a daemon by its protocol; the scheduler has no endpoint (null: not probed). */
export async function probeHealth(config: Config, name: DaemonName): Promise<Health | null> {
  const listen = daemonListen(config, name);
  if (listen === null) return null;
  try {
    if (name === 'authorizer') {
      const t = parseListen(listen);
      if (t.kind !== 'tcp') return { healthy: false, error: 'unix socket: not probed' };
      await healthCheck({ host: t.host, port: t.port }, { timeoutMs: 1000 });
      return { healthy: true };
    }
    const r = await httpGet(listen, '/healthz');
    return r.status === 200 ? { healthy: true } : { healthy: false, error: `/healthz answered ${r.status}` };
  } catch (err) {
    return { healthy: false, error: oneLine(err) };
  }
}
