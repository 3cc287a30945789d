/**
 * Binding a daemon's server to a configured listen address: `host:port`,
 * `[v6addr]:port` or `unix:/absolute/path` (the forms src/config.ts accepts).
 */
import { chmod, lstat, unlink } from 'node:fs/promises';
import type { AddressInfo, Server } from 'node:net';

export type ListenTarget = { kind: 'tcp'; host: string; port: number } | { kind: 'unix'; path: string };

export function parseListen(spec: string): ListenTarget {
  if (spec.startsWith('unix:')) return { kind: 'unix', path: spec.slice('unix:'.length) };
  const m = /^(?:\[([0-9a-fA-F:]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(spec);
  const port = m ? Number(m[3]) : Number.NaN;
  if (!m || port > 65535) throw new Error(`bad listen address "${spec}" (use host:port or unix:/path)`);
  return { kind: 'tcp', host: (m[1] ?? m[2])!, port };
}

/**
 * Listens on `spec` and resolves with the bound address (AddressInfo for TCP,
 * the socket path for unix). A stale unix socket file is removed first.
 *
 * A unix socket is made connectable by every local user (0666), as a port on
 * 127.0.0.1 is: Apache's workers run as apache.user, not as the daemon's user,
 * and connecting needs write permission on the socket. To restrict it, put it
 * in a directory only the daemon's and Apache's users can enter.
 */
export async function listenOn(server: Server, spec: string): Promise<AddressInfo | string> {
  const target = parseListen(spec);
  if (target.kind === 'unix') {
    const st = await lstat(target.path).catch(() => undefined);
    if (st?.isSocket()) await unlink(target.path);
  }
  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) => reject(err);
    server.once('error', onError);
    const done = () => {
      server.off('error', onError);
      resolve();
    };
    if (target.kind === 'unix') server.listen(target.path, done);
    else server.listen(target.port, target.host, done);
  });
  if (target.kind === 'unix') await chmod(target.path, 0o666);
  const addr = server.address();
  if (addr === null) throw new Error('server is not listening');
  return addr;
}

/** `host:port` / `unix:/path` text of a bound address (for logs). */
export function formatAddress(addr: AddressInfo | string): string {
  if (typeof addr === 'string') return `unix:${addr}`;
  return addr.family === 'IPv6' ? `[${addr.address}]:${addr.port}` : `${addr.address}:${addr.port}`;
}
