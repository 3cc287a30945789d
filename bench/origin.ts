/**
 * The bench's upstream, in its own process (so it does not share a thread
 * with what is measured): `node --import tsx bench/origin.ts <spec.json>`.
 * Serves generated objects (bench/lib/body.ts) and fixed texts, optionally
 * rate-limited per response, and counts GETs per path (GET /_stats).
 * Prints `{"port":N}` on stdout once listening; exits on SIGTERM.
 */
import { readFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { blocks } from './lib/body.ts';

export interface OriginSpec {
  /** URL path → generated object (seed, size, optional bytes/s limit) or fixed text. */
  routes: Record<string, { seed: number; size: number; rate?: number } | { text: string }>;
}

const spec = JSON.parse(readFileSync(process.argv[2]!, 'utf8')) as OriginSpec;
const counts: Record<string, number> = {};
const PACE_CHUNK = 64 * 1024;

async function sendObject(
  res: http.ServerResponse,
  seed: number,
  size: number,
  rate?: number,
): Promise<void> {
  const t0 = performance.now();
  let sent = 0;
  for (const b of blocks(seed, size)) {
    const parts = rate
      ? Array.from({ length: Math.ceil(b.length / PACE_CHUNK) }, (_, i) =>
          b.subarray(i * PACE_CHUNK, (i + 1) * PACE_CHUNK),
        )
      : [b];
    for (const p of parts) {
      if (res.destroyed) return;
      if (!res.write(p)) await new Promise((r) => res.once('drain', r));
      sent += p.length;
      if (rate) {
        const ahead = (sent / rate) * 1000 - (performance.now() - t0);
        if (ahead > 1) await new Promise((r) => setTimeout(r, ahead));
      }
    }
  }
  res.end();
}

const server = http.createServer((req, res) => {
  const p = (req.url ?? '/').split('?')[0]!;
  if (p === '/_stats') {
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(counts));
    return;
  }
  const route = spec.routes[p];
  if (!route) {
    res.writeHead(404).end();
    return;
  }
  if (req.method === 'GET') counts[p] = (counts[p] ?? 0) + 1;
  if ('text' in route) {
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': Buffer.byteLength(route.text) });
    res.end(req.method === 'HEAD' ? undefined : route.text);
    return;
  }
  res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': route.size });
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  sendObject(res, route.seed, route.size, route.rate).catch(() => res.destroy());
});
server.keepAliveTimeout = 65_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: (server.address() as AddressInfo).port })}\n`);
});
process.on('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => process.exit(0));
});
