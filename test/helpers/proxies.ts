/**
 * Fixtures for tests that run the real private Apache and Squid: free
 * loopback ports, a temp root that Apache's and Squid's unprivileged users can
 * traverse, and a small HTTP(S) client.
 */
import { once } from 'node:events';
import { readFileSync, unlinkSync } from 'node:fs';
import { chmod, lchown, mkdir, readdir, readFile, unlink, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { processAlive } from '../../src/util/process.ts';
import { type Reply, request } from './http.ts';

export type { Reply };

/**
 * Where reservations live: one file per port, holding the reserving process's pid. Test files
 * run in parallel processes; a port one of them found free must not be handed to another before
 * its Apache or Squid binds it.
 */
const RESERVED = path.join(tmpdir(), 'pulp-lazy-test-ports');
const held: string[] = [];
/** Every process scans from the bottom of the range; the reservations keep them apart. */
let nextPick = 0;

/**
 * Ports from below the kernel's ephemeral range (ip_local_port_range), where neither bind(0) of
 * any process nor an outgoing connection can take a port between our check and Apache's bind.
 */
function portRange(): { low: number; high: number } {
  let ephemeralLow = 32768;
  try {
    ephemeralLow = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').split(/\s+/)[0]);
  } catch {}
  const high = Math.min(ephemeralLow, 65536) - 1;
  return high - 20_000 >= 2_000 ? { low: 20_000, high } : { low: 1024, high: 65535 };
}

/** Takes `port` for this process until it exits; false when a live process holds it. */
/** The file that reserves `port` while it exists. */
export const reservationFile = (port: number) => path.join(RESERVED, String(port));

async function reserve(port: number): Promise<boolean> {
  const file = reservationFile(port);
  for (let attempt = 0; attempt < 2; attempt++) {
    try {
      await writeFile(file, String(process.pid), { flag: 'wx' });
      held.push(file);
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const owner = Number(await readFile(file, 'utf8').catch(() => ''));
      // A file being written (empty for an instant) or a live owner: taken.
      if (!owner || processAlive(owner)) return false;
      await unlink(file).catch(() => {});
    }
  }
  return false;
}

function release(file: string): void {
  try {
    unlinkSync(file);
  } catch {}
}
process.once('exit', () => {
  for (const f of held) release(f);
});

async function bindable(port: number): Promise<boolean> {
  const s = net.createServer();
  try {
    s.listen(port, '127.0.0.1');
    await once(s, 'listening');
    return true;
  } catch {
    return false;
  } finally {
    await new Promise((r) => s.close(r));
  }
}

/**
 * Distinct free TCP ports on 127.0.0.1, reserved for this test process until it exits: outside
 * the ephemeral range, free when checked, and never handed to another test process meanwhile.
 */
export async function freePorts(n: number): Promise<number[]> {
  await mkdir(RESERVED, { recursive: true });
  // Shared by every user's test runs, like /tmp itself (mkdir's mode is cut by the umask).
  await chmod(RESERVED, 0o1777).catch(() => {});
  const { low, high } = portRange();
  const span = high - low + 1;
  const ports: number[] = [];
  for (let tries = 0; ports.length < n; tries++) {
    if (tries > span) throw new Error(`no free port between ${low} and ${high}`);
    const port = low + (nextPick++ % span);
    if (!(await reserve(port))) continue;
    if (await bindable(port)) ports.push(port);
    else release(held.pop()!);
  }
  return ports;
}

/**
 * The config sections of a whole chain on free loopback ports: Apache's content and streamer
 * vhosts, the authorizer, the content daemon (the client's address bound into signed URLs), the
 * streamer with `streamer` added, and Squid (64 MB, no wait at shutdown).
 */
export async function chainSections(
  streamer: Record<string, unknown> = {},
): Promise<Record<string, Record<string, unknown>>> {
  const [contentPort, streamerPort, squidPort, contentDaemon, streamerDaemon, authorizer] =
    await freePorts(6);
  return {
    apache: {
      listen_host: '127.0.0.1',
      content_port: contentPort!,
      streamer_port: streamerPort!,
      authorizer_listen: `127.0.0.1:${authorizer}`,
    },
    content: { listen: `127.0.0.1:${contentDaemon}`, bind_remote_ip: true },
    streamer: { listen: `127.0.0.1:${streamerDaemon}`, ...streamer },
    squid: { port: squidPort!, shutdown_lifetime: '0s', cache_size_mb: 64 },
  };
}

export async function freePort(): Promise<number> {
  const [port] = await freePorts(1);
  return port!;
}

/** Makes `root` and every directory on the way to `dirs` traversable (0755): mkdtemp creates 0700. */
/** Gives `dir` and everything below it (links themselves, not their targets) to uid:gid. */
export async function chownTree(dir: string, uid: number, gid: number): Promise<void> {
  await lchown(dir, uid, gid);
  for (const e of await readdir(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) await chownTree(p, uid, gid);
    else await lchown(p, uid, gid);
  }
}

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

/** A GET; over HTTPS any server certificate is accepted, `tls` is the client certificate. */
export function get(
  url: string,
  headers: Record<string, string> = {},
  tls: { cert?: string; key?: string } = {},
): Promise<Reply> {
  return request(url, { headers, insecure: true, ...tls });
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
