/**
 * An upstream for edge cases, written on raw sockets (node:net, node:tls) so
 * that it can do what node:http will not: bodies delimited by EOF without
 * Content-Length (HTTP/1.0, and HTTP/1.1 with Connection: close), a
 * Content-Length the body does not keep, a reset or a stall mid-body,
 * Content-Encoding on a file that is not encoded for transfer.
 *
 * Three listeners share one table of routes (by request path):
 *   - `base`  http://127.0.0.1:P, the feed's origin in the tests;
 *   - `other` http://127.0.0.2:Q, another host;
 *   - `tls`   https://127.0.0.1:R, a certificate of a private CA (test/helpers/chain.ts makePki),
 *             asking for (not requiring) a client certificate;
 *   - `tls2`  https://127.0.0.1:S, the same on another port: another https origin.
 * Every request is recorded with its listener, headers and whether a client
 * certificate came with it.
 */
import { once } from 'node:events';
import { readFile } from 'node:fs/promises';
import net from 'node:net';
import { after } from 'node:test';
import tls from 'node:tls';
import { makePki } from './chain.ts';

export type Listener = 'base' | 'other' | 'tls' | 'tls2';

export interface EdgeRequest {
  listener: Listener;
  method: string;
  path: string;
  /** Names lowercased. */
  headers: Record<string, string>;
  /** A TLS client certificate was presented. */
  clientCert: boolean;
}

/** Answers one request on `socket`; a route that keeps the connection open for more requests returns 'keep'. */
export type EdgeRoute = (socket: net.Socket, req: EdgeRequest) => 'keep' | undefined;

export interface EdgeUpstream {
  base: string;
  other: string;
  tls: string;
  tls2: string;
  /** PEM texts: the CA that signs the TLS listener's certificate, and a client certificate it issued. */
  pki: { ca: string; clientCert: string; clientKey: string };
  routes: Map<string, EdgeRoute>;
  requests: EdgeRequest[];
  /** Requests for `path`, on any listener. */
  requestsOf(path: string): EdgeRequest[];
}

/** Starts the three listeners (PKI files in `dir`); closed after the test file. */
export async function startEdgeUpstream(dir: string): Promise<EdgeUpstream> {
  const files = await makePki(dir);
  const [ca, serverCert, serverKey, clientCert, clientKey] = await Promise.all(
    [files.ca, files.serverCert, files.serverKey, files.clientCert, files.clientKey].map((f) =>
      readFile(f, 'utf8'),
    ),
  );
  const routes = new Map<string, EdgeRoute>();
  const requests: EdgeRequest[] = [];
  const sockets = new Set<net.Socket>();
  const handle = (listener: Listener) => (socket: net.Socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => {});
    const clientCert =
      socket instanceof tls.TLSSocket && Object.keys(socket.getPeerCertificate() ?? {}).length > 0;
    let buffered = Buffer.alloc(0);
    let busy = false;
    const next = () => {
      const end = buffered.indexOf('\r\n\r\n');
      if (busy || end < 0) return;
      const [line = '', ...fields] = buffered.subarray(0, end).toString('latin1').split('\r\n');
      buffered = buffered.subarray(end + 4);
      const [method = '', target = '/'] = line.split(' ');
      const headers: Record<string, string> = {};
      for (const f of fields) {
        const i = f.indexOf(':');
        if (i > 0) headers[f.slice(0, i).trim().toLowerCase()] = f.slice(i + 1).trim();
      }
      const req: EdgeRequest = { listener, method, path: target.split('?')[0]!, headers, clientCert };
      requests.push(req);
      const route = routes.get(req.path) ?? sized(Buffer.from('no such file\n'), { status: 404 });
      busy = true;
      if (route(socket, req) === 'keep') {
        busy = false;
        next();
      }
    };
    socket.on('data', (chunk: Buffer) => {
      buffered = Buffer.concat([buffered, chunk]);
      next();
    });
  };
  const plain = (host: string) => {
    const server = net.createServer(handle(host === '127.0.0.1' ? 'base' : 'other'));
    server.listen(0, host);
    return server;
  };
  const secure = (listener: Listener) =>
    tls
      .createServer(
        { key: serverKey, cert: serverCert, ca, requestCert: true, rejectUnauthorized: false },
        handle(listener),
      )
      .listen(0, '127.0.0.1');
  const servers = [plain('127.0.0.1'), plain('127.0.0.2'), secure('tls'), secure('tls2')];
  await Promise.all(servers.map((s) => (s.listening ? undefined : once(s, 'listening'))));
  after(async () => {
    for (const s of sockets) s.destroy();
    await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  });
  const port = (i: number) => (servers[i]!.address() as net.AddressInfo).port;
  return {
    base: `http://127.0.0.1:${port(0)}`,
    other: `http://127.0.0.2:${port(1)}`,
    tls: `https://127.0.0.1:${port(2)}`,
    tls2: `https://127.0.0.1:${port(3)}`,
    pki: { ca: ca!, clientCert: clientCert!, clientKey: clientKey! },
    routes,
    requests,
    requestsOf: (p) => requests.filter((r) => r.path === p),
  };
}

function head(status: number, fields: Record<string, string | number>, version = '1.1'): string {
  const lines = [`HTTP/${version} ${status} ${status < 300 ? 'OK' : status < 400 ? 'Redirect' : 'Error'}`];
  for (const [k, v] of Object.entries(fields)) lines.push(`${k}: ${v}`);
  return `${lines.join('\r\n')}\r\n\r\n`;
}

/** 200 (or `status`) with Content-Length; the connection stays open. */
export function sized(
  body: Buffer,
  opts: { status?: number; headers?: Record<string, string> } = {},
): EdgeRoute {
  return (socket) => {
    socket.write(head(opts.status ?? 200, { 'Content-Length': body.length, ...opts.headers }));
    socket.write(body);
    return 'keep';
  };
}

/** The file with `Content-Encoding: gzip` (a `.gz` file as some servers label it); Content-Length of the bytes sent. */
export function gzipLabelled(body: Buffer): EdgeRoute {
  return sized(body, { headers: { 'Content-Type': 'application/x-gzip', 'Content-Encoding': 'gzip' } });
}

/** A body delimited by the end of the connection: HTTP/1.0, or HTTP/1.1 with Connection: close. */
export function untilEof(body: Buffer, version: '1.0' | '1.1'): EdgeRoute {
  return (socket) => {
    socket.write(head(200, version === '1.1' ? { Connection: 'close' } : {}, version));
    socket.end(body);
    return undefined;
  };
}

/** Chunked transfer coding, `size` bytes a chunk. */
export function chunked(body: Buffer, size: number): EdgeRoute {
  return (socket) => {
    socket.write(head(200, { 'Transfer-Encoding': 'chunked' }));
    for (let at = 0; at < body.length; at += size) {
      const c = body.subarray(at, at + size);
      socket.write(`${c.length.toString(16)}\r\n`);
      socket.write(c);
      socket.write('\r\n');
    }
    socket.write('0\r\n\r\n');
    return 'keep';
  };
}

/** Content-Length and `Connection: close`, the whole body written and the connection ended at once (FIN queued behind it). */
export function closeAfter(body: Buffer): EdgeRoute {
  return (socket) => {
    socket.write(head(200, { 'Content-Length': body.length, Connection: 'close' }));
    socket.end(body);
    return undefined;
  };
}

/** `status` with a Location. */
export function redirect(status: number, location: string): EdgeRoute {
  return (socket) => {
    socket.write(head(status, { Location: location, 'Content-Length': 0 }));
    return 'keep';
  };
}

/** Content-Length of the whole body, then `sent` bytes and the end of the connection. */
export function shortBody(body: Buffer, sent: number): EdgeRoute {
  return (socket) => {
    socket.write(head(200, { 'Content-Length': body.length }));
    socket.end(body.subarray(0, sent));
    return undefined;
  };
}

/** Content-Length of the whole body, `sent` bytes, then a TCP reset. */
export function resetMidBody(body: Buffer, sent: number): EdgeRoute {
  return (socket) => {
    socket.write(head(200, { 'Content-Length': body.length }));
    socket.write(body.subarray(0, sent), () => socket.resetAndDestroy());
    return undefined;
  };
}

/** Content-Length of the whole body, `sent` bytes, then nothing (the connection stays open until the client leaves). */
export function stall(body: Buffer, sent: number): EdgeRoute {
  return (socket) => {
    socket.write(head(200, { 'Content-Length': body.length }));
    if (sent > 0) socket.write(body.subarray(0, sent));
    return undefined;
  };
}

/**
 * Routes `${prefix}/0` … `${prefix}/${n - 1}`, each redirecting to the next
 * (statuses 301, 302, 303, 307, 308 in turn, relative Locations), the last to
 * `target`; returns the first path.
 */
export function redirectChain(edge: EdgeUpstream, prefix: string, n: number, target: string): string {
  const statuses = [301, 302, 303, 307, 308];
  for (let i = 0; i < n; i++) {
    const to = i === n - 1 ? target : String(i + 1);
    edge.routes.set(`${prefix}/${i}`, redirect(statuses[i % statuses.length]!, to));
  }
  return `${prefix}/0`;
}
