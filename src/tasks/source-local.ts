/**
 * Fetching through the streamer logic inside the task process (all-in-one
 * mode: no proxy to go through). The request is real HTTP between an
 * http.Server that is never bound and an http client, connected by an
 * in-memory stream pair, so the streamer's handler gets a genuine
 * IncomingMessage/ServerResponse and its backpressure, abort and
 * destroy-on-failure behaviour all apply unchanged.
 */
import http from 'node:http';
import { Duplex } from 'node:stream';
import { oneLine, PulpLazyError } from '../errors.ts';
import { contentLength, type FileSource, STREAM_REQUEST_HEADERS, sourceError } from './source.ts';

/** The streamer's entry point for one decoded storage path (createStreamer(...).handleStoragePath). */
export type StoragePathHandler = (
  req: http.IncomingMessage,
  res: http.ServerResponse,
  storagePath: string,
) => Promise<void>;

export function localSource(
  handle: StoragePathHandler,
  opts: { close?: () => Promise<void>; explain?: (storagePath: string) => string | undefined } = {},
): FileSource {
  const server = http.createServer((req, res) => {
    const encoded = (req.url ?? '/').split('?')[0]!;
    let storagePath: string;
    try {
      storagePath = decodeURIComponent(encoded);
    } catch {
      res.writeHead(400).end();
      return;
    }
    void handle(req, res, storagePath);
  });
  return {
    open(storagePath, signal) {
      const what = `GET ${storagePath} (local streamer)`;
      const [clientSide, serverSide] = duplexPair();
      server.emit('connection', serverSide);
      return new Promise((resolve, reject) => {
        const req = http.request({
          method: 'GET',
          path: storagePath.split('/').map(encodeURIComponent).join('/'),
          headers: { ...STREAM_REQUEST_HEADERS, host: 'local-streamer' },
          createConnection: () => clientSide as unknown as import('node:net').Socket,
          signal,
        });
        req.once('error', (err) => {
          if (signal.aborted) reject(signal.reason);
          else reject(new PulpLazyError('PL_LOCAL_STREAMER', `${what}: ${oneLine(err)}`, { cause: err }));
        });
        req.once('response', (res) => {
          if (res.statusCode !== 200) {
            const chunks: Buffer[] = [];
            res.on('data', (c: Buffer) => chunks.push(c));
            res.once('end', () =>
              reject(sourceError(what, res.statusCode ?? 0, Buffer.concat(chunks).toString())),
            );
            res.once('error', () =>
              reject(sourceError(what, res.statusCode ?? 0, Buffer.concat(chunks).toString())),
            );
            return;
          }
          // A connection destroyed before the end must fail the body stream, not end it quietly.
          res.once('aborted', () => res.destroy(new Error('connection closed before the end of the body')));
          resolve({ body: res, size: contentLength(res.headers['content-length']) });
        });
        req.end();
      });
    },
    explain: opts.explain,
    async close() {
      await opts.close?.();
    },
  };
}

const kOther = Symbol('other');
const kCallback = Symbol('callback');

/** One end of an in-memory, full-duplex byte stream (what node's own tests use for HTTP over non-sockets). */
class MemorySocket extends Duplex {
  [kOther]!: MemorySocket;
  [kCallback]: (() => void) | undefined;
  // net.Socket-like bits the http modules touch.
  remoteAddress = '127.0.0.1';
  remotePort = 0;
  setTimeout(): this {
    return this;
  }
  setNoDelay(): this {
    return this;
  }
  setKeepAlive(): this {
    return this;
  }
  ref(): this {
    return this;
  }
  unref(): this {
    return this;
  }

  override _read(): void {
    const cb = this[kCallback];
    if (cb) {
      this[kCallback] = undefined;
      cb();
    }
  }

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const other = this[kOther];
    if (other.destroyed) {
      cb(new Error('socket closed'));
      return;
    }
    if (chunk.length === 0) {
      process.nextTick(cb);
      return;
    }
    other[kCallback] = cb;
    other.push(chunk);
  }

  override _final(cb: (err?: Error | null) => void): void {
    const other = this[kOther];
    if (other.destroyed) {
      cb();
      return;
    }
    let called = false;
    const done = () => {
      if (called) return;
      called = true;
      cb();
    };
    other.once('end', done);
    other.once('close', done);
    other.push(null);
  }

  override _destroy(err: Error | null, cb: (err?: Error | null) => void): void {
    const other = this[kOther];
    const pending = this[kCallback];
    this[kCallback] = undefined;
    pending?.();
    // Like a TCP reset: the peer's reads end with an error unless it already ended cleanly.
    if (!other.destroyed) other.destroy(other.readableEnded ? undefined : new Error('socket hang up'));
    cb(err);
  }
}

function duplexPair(): [MemorySocket, MemorySocket] {
  const a = new MemorySocket();
  const b = new MemorySocket();
  a[kOther] = b;
  b[kOther] = a;
  return [a, b];
}
