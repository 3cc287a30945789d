/**
 * Fixtures for tests that run the real private Apache and Squid: free
 * loopback ports, a temp root that Apache's and Squid's unprivileged users can
 * traverse, and a small HTTP(S) client.
 */
import { once } from 'node:events';
import { readFileSync, unlinkSync } from 'node:fs';
import { chmod, mkdir, readdir, readFile, unlink, writeFile } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { processAlive } from '../../src/util/process.ts';

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

export async function freePort(): Promise<number> {
  const [port] = await freePorts(1);
  return port!;
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
