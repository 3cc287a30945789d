/**
 * A small, dependency-free FastCGI (1.0) server: the BEGIN_REQUEST / PARAMS /
 * STDIN / STDOUT / END_REQUEST flow and management records (FCGI_GET_VALUES).
 *
 * Requests are kept per request id, so a multiplexing client gets each answer
 * framed with its own id. Record, parameter and stdin sizes are bounded; input
 * that breaks the protocol closes that connection (never the server).
 * Records for request ids that are not active are ignored (spec §3.3).
 */
import net from 'node:net';
import type { ErrorCode } from '../error-codes.ts';
import {
  decodePairs,
  encodePairs,
  encodeRecord,
  encodeResponse,
  endRequest,
  FastCgiProtocolError,
  type FcgiRecord,
  type FcgiResponse,
  FLAG_KEEP_CONN,
  HEADER_LEN,
  MAX_CONTENT,
  PROTOCOL_STATUS,
  RecordReader,
  RecordType,
  Role,
} from './codec.ts';

export interface FcgiRequest {
  id: number;
  role: 'responder' | 'authorizer' | 'filter';
  params: Map<string, string>;
  stdin: Buffer;
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

/** The code a handler's failure answers with (the body's first word, as the authorizer's refusals). */
const INTERNAL: ErrorCode = 'PL_AUTHORIZER_INTERNAL';

const ROLE_NAMES: Record<number, FcgiRequest['role']> = { 1: 'responder', 2: 'authorizer', 3: 'filter' };

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
      out = encodeResponse(id, { status: 500, body: `${INTERNAL} internal error\n` }, 1);
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
