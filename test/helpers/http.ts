/** One HTTP(S) request on a fresh connection, its whole reply collected: the tests' plain client. */
import http from 'node:http';
import https from 'node:https';

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export interface RequestOptions {
  method?: string;
  headers?: http.OutgoingHttpHeaders;
  /** Source address of the connection (e.g. 127.0.0.2: another client on loopback). */
  localAddress?: string;
  /** HTTPS: trust anchor and client certificate (PEM text). */
  ca?: string;
  cert?: string;
  key?: string;
  /** HTTPS: accept any server certificate. */
  insecure?: boolean;
}

/** The status, headers and whole body of a response. */
export function replyOf(res: http.IncomingMessage): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    res.on('data', (c: Buffer) => chunks.push(c));
    res.on('end', () =>
      resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
    );
    res.on('error', reject);
  });
}

/** One request on a fresh connection; the request target goes out exactly as written (no normalisation of `..` or `%2e`). */
export function request(url: string, opts: RequestOptions = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const common = {
      hostname: u.hostname,
      port: u.port,
      path: url.slice(u.origin.length) || '/',
      method: opts.method ?? 'GET',
      headers: opts.headers,
      agent: false as const,
      ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
    };
    const cb = (res: http.IncomingMessage) => void replyOf(res).then(resolve, reject);
    const req =
      u.protocol === 'https:'
        ? https.request(
            {
              ...common,
              ...(opts.ca ? { ca: opts.ca } : {}),
              ...(opts.cert ? { cert: opts.cert } : {}),
              ...(opts.key ? { key: opts.key } : {}),
              ...(opts.insecure ? { rejectUnauthorized: false } : {}),
            },
            cb,
          )
        : http.request(common, cb);
    req.on('error', reject);
    req.end();
  });
}
