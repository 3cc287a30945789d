/**
 * A minimal FastCGI client for tests, written from the spec independently of
 * src/fastcgi/ (so the server is not tested against itself).
 */
import net from 'node:net';

export interface RawRecord {
  type: number;
  id: number;
  content: Buffer;
}

export function record(type: number, id: number, content: Buffer = Buffer.alloc(0), padding = 0): Buffer {
  const h = Buffer.from([
    1,
    type,
    id >> 8,
    id & 0xff,
    content.length >> 8,
    content.length & 0xff,
    padding,
    0,
  ]);
  return Buffer.concat([h, content, Buffer.alloc(padding)]);
}

function len(n: number): Buffer {
  return n < 128
    ? Buffer.from([n])
    : Buffer.from([((n >>> 24) & 0x7f) | 0x80, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]);
}

export function pairs(p: Record<string, string>): Buffer {
  return Buffer.concat(
    Object.entries(p).flatMap(([k, v]) => [
      len(Buffer.byteLength(k)),
      len(Buffer.byteLength(v)),
      Buffer.from(k),
      Buffer.from(v),
    ]),
  );
}

export function beginRequest(id: number, role = 2, keepConn = false): Buffer {
  return record(1, id, Buffer.from([0, role, keepConn ? 1 : 0, 0, 0, 0, 0, 0]));
}

/** BEGIN_REQUEST + PARAMS (+ empty PARAMS), as mod_authnz_fcgi sends them. */
export function authorizerRequest(id: number, params: Record<string, string>): Buffer {
  return Buffer.concat([beginRequest(id), record(4, id, pairs(params)), record(4, id)]);
}

export function parseRecords(buf: Buffer): RawRecord[] {
  const out: RawRecord[] = [];
  let off = 0;
  while (off + 8 <= buf.length) {
    const clen = buf.readUInt16BE(off + 4);
    const pad = buf[off + 6]!;
    if (off + 8 + clen + pad > buf.length) break;
    out.push({
      type: buf[off + 1]!,
      id: buf.readUInt16BE(off + 2),
      content: buf.subarray(off + 8, off + 8 + clen),
    });
    off += 8 + clen + pad;
  }
  return out;
}

export interface Exchange {
  records: RawRecord[];
  /** True when the server closed the connection. */
  closed: boolean;
}

/**
 * Connects, writes `data`, collects records until the server closes, a record of
 * `untilType` or `untilEnds` END_REQUESTs arrive, or timeoutMs passes.
 */
export function exchange(
  port: number,
  data: Buffer | Buffer[],
  opts: { timeoutMs?: number; untilType?: number; untilEnds?: number } = {},
): Promise<Exchange> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    const chunks: Buffer[] = [];
    let settled = false;
    const finish = (closed: boolean) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ records: parseRecords(Buffer.concat(chunks)), closed });
    };
    const timer = setTimeout(() => finish(false), opts.timeoutMs ?? 5000);
    socket.on('error', (err) => {
      if ((err as NodeJS.ErrnoException).code === 'ECONNRESET') finish(true);
      else if (!settled) {
        settled = true;
        clearTimeout(timer);
        reject(err);
      }
    });
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      const got = parseRecords(Buffer.concat(chunks));
      if (opts.untilType !== undefined && got.some((r) => r.type === opts.untilType)) finish(false);
      if (opts.untilEnds !== undefined && got.filter((r) => r.type === 3).length >= opts.untilEnds)
        finish(false);
    });
    socket.on('end', () => finish(true));
    socket.on('connect', () => {
      for (const d of Array.isArray(data) ? data : [data]) socket.write(d);
    });
  });
}

export interface AuthAnswer {
  status: number;
  headers: Record<string, string>;
  body: string;
  /** The END_REQUEST protocol status (0 = request complete). */
  protocolStatus: number;
  id: number;
}

/** The CGI response of request `id` from collected records. */
export function answerOf(records: RawRecord[], id: number): AuthAnswer | undefined {
  const end = records.find((r) => r.type === 3 && r.id === id);
  if (!end) return undefined;
  const stdout = Buffer.concat(
    records.filter((r) => r.type === 6 && r.id === id).map((r) => r.content),
  ).toString();
  const sep = stdout.indexOf('\r\n\r\n');
  const head = sep < 0 ? '' : stdout.slice(0, sep);
  const headers: Record<string, string> = {};
  for (const line of head.split('\r\n').filter(Boolean)) {
    const i = line.indexOf(':');
    headers[line.slice(0, i).trim()] = line.slice(i + 1).trim();
  }
  return {
    status: Number.parseInt(headers.Status ?? '0', 10),
    headers,
    body: sep < 0 ? '' : stdout.slice(sep + 4),
    protocolStatus: end.content[4]!,
    id,
  };
}

/** One authorizer check on its own connection. */
export async function authorize(port: number, params: Record<string, string>, id = 1): Promise<AuthAnswer> {
  const { records } = await exchange(port, authorizerRequest(id, params));
  const a = answerOf(records, id);
  if (!a) throw new Error('no END_REQUEST from the authorizer');
  return a;
}
