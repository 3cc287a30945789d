/**
 * Fixtures for tests that run the real private Apache and Squid: free
 * loopback ports, a temp root that Apache's and Squid's unprivileged users can
 * traverse, and a small HTTP(S) client.
 */
import { once } from 'node:events';
import { chmod, readdir, readFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import net, { type AddressInfo } from 'node:net';
import path from 'node:path';

/** Distinct free TCP ports on 127.0.0.1 (bound on port 0, then released). */
export async function freePorts(n: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: n }, async () => {
      const s = net.createServer();
      s.listen(0, '127.0.0.1');
      await once(s, 'listening');
      return s;
    }),
  );
  const ports = servers.map((s) => (s.address() as AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

/** Makes `root` and every directory on the way to `dirs` traversable (0755): mkdtemp creates 0700. */
export async function openUp(root: string, dirs: string[]): Promise<void> {
  await chmod(root, 0o755);
  for (const d of dirs) {
    let cur = d;
    while (cur.startsWith(root) && cur !== root) {
      await chmod(cur, 0o755).catch(() => {});
      cur = path.dirname(cur);
    }
  }
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

export function get(
  url: string,
  headers: Record<string, string> = {},
  tls: { cert?: string; key?: string } = {},
): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const opts = { headers, agent: false as const };
    const cb = (res: http.IncomingMessage) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }),
      );
      res.on('error', reject);
    };
    const req =
      u.protocol === 'https:'
        ? https.get(url, { ...opts, rejectUnauthorized: false, ...tls }, cb)
        : http.get(url, opts, cb);
    req.on('error', reject);
  });
}

/** Pids of every process whose command line mentions `needle` (e.g. a config file path). */
export async function processesMentioning(needle: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmd = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    const stat = await readFile(`/proc/${entry}/stat`, 'utf8').catch(() => '');
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    if (cmd.includes(needle) && state !== 'Z') pids.push(Number(entry));
  }
  return pids;
}
