/** The FastCGI health check of `status`, `start` and `proxies status`: an FCGI_GET_VALUES round trip. */
import net from 'node:net';
import { PulpLazyError } from '../errors.ts';
import { decodePairs, encodePairs, encodeRecord, RecordReader, RecordType } from './codec.ts';

export interface HealthOptions {
  timeoutMs?: number;
}

/**
 * Asks a FastCGI server for FCGI_MAX_CONNS / FCGI_MAX_REQS / FCGI_MPXS_CONNS and
 * resolves with its answer; rejects (code PL_FCGI_UNHEALTHY) on refusal, timeout or garbage.
 */
export function healthCheck(
  addr: { host: string; port: number },
  opts: HealthOptions = {},
): Promise<Map<string, string>> {
  const timeoutMs = opts.timeoutMs ?? 2000;
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: addr.host, port: addr.port });
    const reader = new RecordReader();
    const done = (err: unknown, values?: Map<string, string>) => {
      socket.destroy();
      if (values) resolve(values);
      else
        reject(
          new PulpLazyError(
            'PL_FCGI_UNHEALTHY',
            `FastCGI server ${addr.host}:${addr.port} did not answer: ${err instanceof Error ? err.message : String(err)}`,
          ),
        );
    };
    socket.setTimeout(timeoutMs, () => done(new Error(`no answer within ${timeoutMs} ms`)));
    socket.on('error', (err) => done(err));
    socket.on('end', () => done(new Error('connection closed')));
    socket.on('connect', () => {
      const ask = encodePairs([
        ['FCGI_MAX_CONNS', ''],
        ['FCGI_MAX_REQS', ''],
        ['FCGI_MPXS_CONNS', ''],
      ]);
      socket.write(encodeRecord(RecordType.GetValues, 0, ask));
    });
    socket.on('data', (chunk: Buffer) => {
      try {
        for (const rec of reader.push(chunk)) {
          if (rec.type === RecordType.GetValuesResult && rec.requestId === 0) {
            return done(null, decodePairs(rec.content, 16));
          }
        }
      } catch (err) {
        done(err);
      }
    });
  });
}
