/**
 * A small, dependency-free FastCGI (1.0) server: record framing, the
 * BEGIN_REQUEST / PARAMS / STDIN / STDOUT / END_REQUEST flow, management
 * records (FCGI_GET_VALUES), and a client-side health check.
 *
 * Requests are kept per request id, so a multiplexing client gets each answer
 * framed with its own id. Record, parameter and stdin sizes are bounded; input
 * that breaks the protocol closes that connection (never the server).
 * Records for request ids that are not active are ignored (spec §3.3).
 */
import net from 'node:net';
import { PulpLazyError } from '../errors.ts';

export const FCGI_VERSION = 1;
export const HEADER_LEN = 8;
export const MAX_CONTENT = 0xffff;

export const RecordType = {
  BeginRequest: 1,
  AbortRequest: 2,
  EndRequest: 3,
  Params: 4,
  Stdin: 5,
  Stdout: 6,
  Stderr: 7,
  Data: 8,
  GetValues: 9,
  GetValuesResult: 10,
  UnknownType: 11,
} as const;

export const Role = { Responder: 1, Authorizer: 2, Filter: 3 } as const;
const FLAG_KEEP_CONN = 1;
const PROTOCOL_STATUS = { RequestComplete: 0, CantMpxConn: 1, Overloaded: 2, UnknownRole: 3 } as const;

export class FastCgiProtocolError extends PulpLazyError {
  constructor(message: string) {
    super('PL_FCGI_PROTOCOL', message, { status: 502 });
  }
}

export interface FcgiRecord {
  type: number;
  requestId: number;
  content: Buffer;
}

/** One record, content ≤ 65535 bytes, padded to a multiple of 8. */
export function encodeRecord(type: number, requestId: number, content: Buffer = Buffer.alloc(0)): Buffer {
  if (content.length > MAX_CONTENT)
    throw new RangeError(`FastCGI record content too long (${content.length})`);
  const padding = (8 - (content.length % 8)) % 8;
  const out = Buffer.alloc(HEADER_LEN + content.length + padding);
  out.writeUInt8(FCGI_VERSION, 0);
  out.writeUInt8(type, 1);
  out.writeUInt16BE(requestId, 2);
  out.writeUInt16BE(content.length, 4);
  out.writeUInt8(padding, 6);
  content.copy(out, HEADER_LEN);
  return out;
}

/** A byte stream split into as many records of one type as needed (no terminating empty record). */
export function encodeStream(type: number, requestId: number, data: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0; off < data.length; off += MAX_CONTENT) {
    out.push(encodeRecord(type, requestId, data.subarray(off, off + MAX_CONTENT)));
  }
  return out;
}

function encodeLength(n: number): Buffer {
  if (n < 128) return Buffer.from([n]);
  const b = Buffer.alloc(4);
  b.writeUInt32BE((n | 0x80000000) >>> 0, 0);
  return b;
}

/** FastCGI name-value pairs (PARAMS, GET_VALUES bodies). */
export function encodePairs(pairs: Iterable<[string, string]>): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of pairs) {
    const n = Buffer.from(name, 'latin1');
    const v = Buffer.from(value, 'latin1');
    parts.push(encodeLength(n.length), encodeLength(v.length), n, v);
  }
  return Buffer.concat(parts);
}

/** Decodes name-value pairs; throws FastCgiProtocolError on a truncated or oversized pair. */
export function decodePairs(buf: Buffer, maxPairs = 1000): Map<string, string> {
  const out = new Map<string, string>();
  let off = 0;
  const readLen = (): number => {
    if (off >= buf.length) throw new FastCgiProtocolError('truncated name-value length');
    const first = buf[off]!;
    if (first < 128) {
      off += 1;
      return first;
    }
    if (off + 4 > buf.length) throw new FastCgiProtocolError('truncated name-value length');
    const n = buf.readUInt32BE(off) & 0x7fffffff;
    off += 4;
    return n;
  };
  while (off < buf.length) {
    if (out.size >= maxPairs) throw new FastCgiProtocolError(`more than ${maxPairs} parameters`);
    const nl = readLen();
    const vl = readLen();
    if (off + nl + vl > buf.length) throw new FastCgiProtocolError('name-value pair longer than its stream');
    // Params are bytes; latin1 keeps them one char per byte (REQUEST_URI is ASCII anyway).
    const name = buf.toString('latin1', off, off + nl);
    const value = buf.toString('latin1', off + nl, off + nl + vl);
    off += nl + vl;
    out.set(name, value);
  }
  return out;
}

/** Incremental record parser: feed chunks, get complete records. */
export class RecordReader {
  private buf: Buffer = Buffer.alloc(0);

  /** Bytes received that are not yet a complete record. */
  get pending(): number {
    return this.buf.length;
  }

  push(chunk: Buffer): FcgiRecord[] {
    this.buf = this.buf.length ? Buffer.concat([this.buf, chunk]) : chunk;
    const records: FcgiRecord[] = [];
    while (this.buf.length >= HEADER_LEN) {
      const version = this.buf.readUInt8(0);
      if (version !== FCGI_VERSION) throw new FastCgiProtocolError(`unsupported FastCGI version ${version}`);
      const contentLength = this.buf.readUInt16BE(4);
      const total = HEADER_LEN + contentLength + this.buf.readUInt8(6);
      if (this.buf.length < total) break;
      records.push({
        type: this.buf.readUInt8(1),
        requestId: this.buf.readUInt16BE(2),
        content: Buffer.from(this.buf.subarray(HEADER_LEN, HEADER_LEN + contentLength)),
      });
      this.buf = this.buf.subarray(total);
    }
    return records;
  }
}

export interface FcgiRequest {
  id: number;
  role: 'responder' | 'authorizer' | 'filter';
  params: Map<string, string>;
  stdin: Buffer;
}

export interface FcgiResponse {
  status: number;
  headers?: Record<string, string>;
  body?: string;
}

export type FcgiHandler = (req: FcgiRequest) => FcgiResponse | Promise<FcgiResponse>;

export interface FcgiLimits {
  /** Total bytes of one request's PARAMS stream. */
  maxParamsBytes: number;
  /** Total bytes of one request's STDIN stream. */
  maxStdinBytes: number;
  /** Concurrent requests on one connection. */
  maxRequestsPerConnection: number;
  /** A connection that stays silent (or keeps a partial record) this long is closed. */
  idleTimeoutMs: number;
  /** Simultaneous connections (server.maxConnections). */
  maxConnections: number;
}

export const DEFAULT_LIMITS: FcgiLimits = {
  maxParamsBytes: 256 * 1024,
  maxStdinBytes: 64 * 1024,
  maxRequestsPerConnection: 16,
  idleTimeoutMs: 30_000,
  maxConnections: 1024,
};

export interface FcgiServerOptions {
  handler: FcgiHandler;
  limits?: Partial<FcgiLimits>;
  /** Told about protocol errors (connection closed) and handler failures (answered 500). */
  onError?: (err: unknown, where: 'protocol' | 'handler') => void;
}

interface Pending {
  role: number;
  keepConn: boolean;
  params: Buffer[];
  paramsBytes: number;
  paramsDone: boolean;
  stdin: Buffer[];
  stdinBytes: number;
  answered: boolean;
}

const ROLE_NAMES: Record<number, FcgiRequest['role']> = { 1: 'responder', 2: 'authorizer', 3: 'filter' };

/** Encodes a CGI-style response as STDOUT records + empty STDOUT + END_REQUEST. */
export function encodeResponse(requestId: number, res: FcgiResponse, appStatus = 0): Buffer {
  const lines = [`Status: ${res.status}`];
  for (const [k, v] of Object.entries(res.headers ?? {})) {
    if (/[\r\n:]/.test(k) || /[\r\n]/.test(v))
      throw new TypeError(`invalid response header ${JSON.stringify(k)}`);
    lines.push(`${k}: ${v}`);
  }
  const body = Buffer.from(res.body ?? '', 'utf8');
  if (body.length && !res.headers?.['Content-Type']) lines.push('Content-Type: text/plain; charset=utf-8');
  const out = Buffer.concat([Buffer.from(`${lines.join('\r\n')}\r\n\r\n`, 'latin1'), body]);
  return Buffer.concat([
    ...encodeStream(RecordType.Stdout, requestId, out),
    encodeRecord(RecordType.Stdout, requestId),
    endRequest(requestId, appStatus, PROTOCOL_STATUS.RequestComplete),
  ]);
}

function endRequest(requestId: number, appStatus: number, protocolStatus: number): Buffer {
  const body = Buffer.alloc(8);
  body.writeUInt32BE(appStatus >>> 0, 0);
  body.writeUInt8(protocolStatus, 4);
  return encodeRecord(RecordType.EndRequest, requestId, body);
}

/** Creates a FastCGI server (not yet listening). */
export function createFcgiServer(opts: FcgiServerOptions): net.Server {
  const limits: FcgiLimits = { ...DEFAULT_LIMITS, ...opts.limits };
  const onError = opts.onError ?? (() => {});
  const server = net.createServer((socket) => handleConnection(socket, opts.handler, limits, onError));
  server.maxConnections = limits.maxConnections;
  return server;
}

function handleConnection(
  socket: net.Socket,
  handler: FcgiHandler,
  limits: FcgiLimits,
  onError: NonNullable<FcgiServerOptions['onError']>,
): void {
  const reader = new RecordReader();
  const requests = new Map<number, Pending>();
  let closing = false;

  socket.setNoDelay(true);
  socket.setTimeout(limits.idleTimeoutMs, () => socket.destroy());
  socket.on('error', () => {}); // peer resets are normal; the socket is closed either way

  const fail = (err: unknown) => {
    onError(err, 'protocol');
    closing = true;
    socket.destroy();
  };

  const send = (buf: Buffer, close: boolean) => {
    if (socket.destroyed) return;
    if (close) {
      closing = true;
      socket.end(buf);
    } else socket.write(buf);
  };

  const respond = async (id: number, p: Pending) => {
    p.answered = true;
    const req: FcgiRequest = {
      id,
      role: ROLE_NAMES[p.role]!,
      params: decodePairs(Buffer.concat(p.params)),
      stdin: Buffer.concat(p.stdin),
    };
    let out: Buffer;
    try {
      out = encodeResponse(id, await handler(req));
    } catch (err) {
      onError(err, 'handler');
      out = encodeResponse(id, { status: 500, body: 'PL_AUTHORIZER_INTERNAL internal error\n' }, 1);
    }
    // ABORT_REQUEST may have removed it meanwhile: then the abort already got its END_REQUEST.
    if (requests.get(id) !== p) return;
    requests.delete(id);
    send(out, !p.keepConn);
  };

  const onRecord = (rec: FcgiRecord) => {
    if (rec.requestId === 0) return onManagement(rec);
    const p = requests.get(rec.requestId);
    switch (rec.type) {
      case RecordType.BeginRequest: {
        if (rec.content.length !== 8) throw new FastCgiProtocolError('BEGIN_REQUEST body must be 8 bytes');
        if (p) throw new FastCgiProtocolError(`request id ${rec.requestId} is already active`);
        const role = rec.content.readUInt16BE(0);
        const keepConn = (rec.content.readUInt8(2) & FLAG_KEEP_CONN) !== 0;
        if (!ROLE_NAMES[role] || role === Role.Filter) {
          send(endRequest(rec.requestId, 0, PROTOCOL_STATUS.UnknownRole), !keepConn);
          return;
        }
        if (requests.size >= limits.maxRequestsPerConnection) {
          send(endRequest(rec.requestId, 0, PROTOCOL_STATUS.Overloaded), !keepConn);
          return;
        }
        requests.set(rec.requestId, {
          role,
          keepConn,
          params: [],
          paramsBytes: 0,
          paramsDone: false,
          stdin: [],
          stdinBytes: 0,
          answered: false,
        });
        return;
      }
      case RecordType.AbortRequest: {
        if (!p) return;
        requests.delete(rec.requestId);
        send(endRequest(rec.requestId, 1, PROTOCOL_STATUS.RequestComplete), !p.keepConn);
        return;
      }
      case RecordType.Params: {
        if (!p || p.answered) return;
        if (p.paramsDone) throw new FastCgiProtocolError('PARAMS after the end of the PARAMS stream');
        if (rec.content.length === 0) {
          p.paramsDone = true;
          // mod_authnz_fcgi sends no STDIN to an authorizer: answer once the params are complete.
          if (p.role === Role.Authorizer) void respond(rec.requestId, p).catch(fail);
          return;
        }
        p.paramsBytes += rec.content.length;
        if (p.paramsBytes > limits.maxParamsBytes) {
          throw new FastCgiProtocolError(`PARAMS longer than ${limits.maxParamsBytes} bytes`);
        }
        p.params.push(rec.content);
        return;
      }
      case RecordType.Stdin: {
        if (!p || p.answered) return;
        if (!p.paramsDone) throw new FastCgiProtocolError('STDIN before the end of PARAMS');
        if (rec.content.length === 0) {
          void respond(rec.requestId, p).catch(fail);
          return;
        }
        p.stdinBytes += rec.content.length;
        if (p.stdinBytes > limits.maxStdinBytes) {
          throw new FastCgiProtocolError(`STDIN longer than ${limits.maxStdinBytes} bytes`);
        }
        p.stdin.push(rec.content);
        return;
      }
      case RecordType.Data:
        return; // only for the filter role, which is refused
      default:
        throw new FastCgiProtocolError(`unexpected record type ${rec.type} for request ${rec.requestId}`);
    }
  };

  const onManagement = (rec: FcgiRecord) => {
    if (rec.type !== RecordType.GetValues) {
      const body = Buffer.alloc(8);
      body.writeUInt8(rec.type, 0);
      send(encodeRecord(RecordType.UnknownType, 0, body), false);
      return;
    }
    const asked = decodePairs(rec.content, 16);
    const known: Record<string, string> = {
      FCGI_MAX_CONNS: String(limits.maxConnections),
      FCGI_MAX_REQS: String(limits.maxConnections * limits.maxRequestsPerConnection),
      FCGI_MPXS_CONNS: '1',
    };
    const answer: Array<[string, string]> = [];
    for (const name of asked.keys()) if (known[name] !== undefined) answer.push([name, known[name]]);
    send(encodeRecord(RecordType.GetValuesResult, 0, encodePairs(answer)), false);
  };

  socket.on('data', (chunk: Buffer) => {
    if (closing) return;
    try {
      for (const rec of reader.push(chunk)) {
        onRecord(rec);
        if (closing) return;
      }
      // A record header announces at most 64 KiB + 255; anything buffered beyond that is garbage.
      if (reader.pending > HEADER_LEN + MAX_CONTENT + 255) throw new FastCgiProtocolError('record too long');
    } catch (err) {
      fail(err);
    }
  });
}

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
            { status: 503 },
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
