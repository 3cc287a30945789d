/** A local upstream repository: serves files from a map, counts requests per path. */
import { once } from 'node:events';
import http from 'node:http';
import type https from 'node:https';
import type { AddressInfo } from 'node:net';
import { after } from 'node:test';

export interface Upstream {
  url: string;
  files: Map<string, Buffer | string>;
  /** Paths answered with this status and no body, whatever `files` holds (a 410, say). */
  statuses: Map<string, number>;
  /** GET/HEAD count per path. */
  hits: Map<string, number>;
  /** The X-Request-Id of each request per path (undefined: none sent). */
  requestIds: Map<string, Array<string | undefined>>;
  total(): number;
  server: http.Server;
}

/**
 * Listens on a free port of 127.0.0.1 and returns it; the server and its open connections are
 * closed after the test file.
 */
export async function listenForTestFile(server: http.Server | https.Server): Promise<number> {
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  after(() => {
    server.closeAllConnections();
    return new Promise<void>((r) => server.close(() => r()));
  });
  return (server.address() as AddressInfo).port;
}

export async function startUpstream(files: Map<string, Buffer | string> = new Map()): Promise<Upstream> {
  const hits = new Map<string, number>();
  const requestIds = new Map<string, Array<string | undefined>>();
  const statuses = new Map<string, number>();
  const server = http.createServer((req, res) => {
    const p = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    hits.set(p, (hits.get(p) ?? 0) + 1);
    const id = req.headers['x-request-id'];
    requestIds.set(p, [...(requestIds.get(p) ?? []), typeof id === 'string' ? id : undefined]);
    const status = statuses.get(p);
    if (status !== undefined) {
      res.writeHead(status).end();
      return;
    }
    const body = files.get(p);
    if (body === undefined) {
      res.writeHead(404).end('not found');
      return;
    }
    res.writeHead(200, { 'content-length': Buffer.byteLength(body) });
    res.end(req.method === 'HEAD' ? undefined : body);
  });
  const port = await listenForTestFile(server);
  return {
    url: `http://127.0.0.1:${port}/`,
    files,
    statuses,
    hits,
    requestIds,
    total: () => [...hits.values()].reduce((a, b) => a + b, 0),
    server,
  };
}

/** Requests the upstream saw for paths matching `re`. */
export const hitsMatching = (up: Upstream, re: RegExp): number =>
  [...up.hits].filter(([p]) => re.test(p)).reduce((n, [, c]) => n + c, 0);
