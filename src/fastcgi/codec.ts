/**
 * FastCGI 1.0 wire format, shared by the server (server.ts) and the health
 * client (health.ts): record framing, name-value pairs, and the
 * STDOUT + END_REQUEST answer to a request.
 */
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
export const FLAG_KEEP_CONN = 1;
export const PROTOCOL_STATUS = { RequestComplete: 0, CantMpxConn: 1, Overloaded: 2, UnknownRole: 3 } as const;

export class FastCgiProtocolError extends PulpLazyError {
  constructor(message: string) {
    super('PL_FCGI_PROTOCOL', message);
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

export interface FcgiResponse {
  status: number;
  headers?: Record<string, string>;
  body?: string;
}

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

export function endRequest(requestId: number, appStatus: number, protocolStatus: number): Buffer {
  const body = Buffer.alloc(8);
  body.writeUInt32BE(appStatus >>> 0, 0);
  body.writeUInt8(protocolStatus, 4);
  return encodeRecord(RecordType.EndRequest, requestId, body);
}
