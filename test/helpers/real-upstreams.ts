/**
 * Real static web servers as upstreams, each serving a directory tree on a
 * free loopback port from its own temp dir: Apache httpd (event MPM), nginx,
 * and Python's http.server (HTTP/1.0: it closes the connection after every
 * response). Each runs in the foreground as a child of the test process and
 * is stopped (SIGTERM, then SIGKILL) by an after() hook, which then checks
 * that no process mentions its temp dir any more. Every server writes one
 * log line per request, so tests can count the GETs a path received.
 * Apt packages needed: apache2-bin, nginx-light (or nginx), python3.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, open, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import { portOpen, processAlive, waitFor } from '../../src/util/process.ts';
import { freePort, processesMentioning } from './proxies.ts';

export const UPSTREAM_KINDS = ['apache', 'nginx', 'python'] as const;
export type UpstreamKind = (typeof UPSTREAM_KINDS)[number];

export interface RealUpstream {
  kind: UpstreamKind;
  /** http://127.0.0.1:PORT/ (the served directory's root). */
  url: string;
  port: number;
  /** The server's main process. */
  pid: number;
  /** The temp dir holding its config, logs and pid file; every process of it mentions this. */
  dir: string;
  /** Requests logged so far, in order: method, path (as sent, %-encoded), status. */
  requests(): Promise<Array<{ method: string; path: string; status: number }>>;
  /** GET requests logged for `p` (a path as sent, e.g. "/deb/dists/stable/Release"). */
  gets(p: string): Promise<number>;
  /** True while the main process runs. */
  alive(): boolean;
  /** Stops it (idempotent) and waits until no process mentions `dir`. */
  stop(): Promise<void>;
}

/** What each server needs: its command line, written into `dir`. */
interface Launch {
  cmd: string;
  args: string[];
  /** Where its request lines go (the access log; Python's: its stderr). */
  log: string;
  /** Python writes its request log to stderr: the child's stderr goes to `log`. */
  stderrToLog?: boolean;
}

/** `"GET /path HTTP/1.1" 200`: the common shape of the three servers' request lines. */
const REQUEST_LINE = /"([A-Z]+) (\S+) HTTP\/1\.[01]" (\d{3})/g;

async function apacheLaunch(dir: string, docroot: string, port: number): Promise<Launch> {
  const mods = '/usr/lib/apache2/modules';
  const conf = path.join(dir, 'httpd.conf');
  await mkdir(path.join(dir, 'run'), { recursive: true });
  // mod_mime needs a types file; the machine's /etc/mime.types may be missing (no media-types).
  await writeFile(path.join(dir, 'mime.types'), 'application/octet-stream bin rpm deb\ntext/xml xml\n');
  const root = process.getuid?.() === 0;
  await writeFile(
    conf,
    [
      `ServerRoot "${dir}"`,
      'ServerName 127.0.0.1',
      `Listen 127.0.0.1:${port}`,
      `PidFile "${path.join(dir, 'httpd.pid')}"`,
      `DefaultRuntimeDir "${path.join(dir, 'run')}"`,
      `ErrorLog "${path.join(dir, 'error.log')}"`,
      'LogLevel warn',
      // As root, the children run as www-data (without User they would stay root).
      ...(root ? ['User www-data', 'Group www-data'] : []),
      `LoadModule mpm_event_module ${mods}/mod_mpm_event.so`,
      `LoadModule authz_core_module ${mods}/mod_authz_core.so`,
      `LoadModule mime_module ${mods}/mod_mime.so`,
      `LoadModule dir_module ${mods}/mod_dir.so`,
      `TypesConfig "${path.join(dir, 'mime.types')}"`,
      'LogFormat "%h \\"%r\\" %>s %B" upstream',
      `CustomLog "${path.join(dir, 'access.log')}" upstream`,
      `DocumentRoot "${docroot}"`,
      `<Directory "${docroot}">`,
      '  Require all granted',
      '</Directory>',
      '',
    ].join('\n'),
  );
  return { cmd: '/usr/sbin/apache2', args: ['-f', conf, '-DFOREGROUND'], log: path.join(dir, 'access.log') };
}

async function nginxLaunch(dir: string, docroot: string, port: number): Promise<Launch> {
  const conf = path.join(dir, 'nginx.conf');
  const temp = path.join(dir, 'temp');
  await mkdir(temp, { recursive: true });
  // As root, the workers run as nginx's default user (nobody): the tree must be world-readable.
  await writeFile(
    conf,
    [
      'daemon off;',
      'worker_processes 1;',
      `pid ${path.join(dir, 'nginx.pid')};`,
      `error_log ${path.join(dir, 'error.log')} warn;`,
      'events { worker_connections 256; }',
      'http {',
      '  types { application/octet-stream bin rpm deb; text/xml xml; }',
      '  default_type application/octet-stream;',
      `  log_format upstream '$remote_addr "$request" $status $body_bytes_sent';`,
      `  access_log ${path.join(dir, 'access.log')} upstream;`,
      ...['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi'].map(
        (t) => `  ${t}_temp_path ${path.join(temp, t)};`,
      ),
      '  sendfile on;',
      '  server {',
      `    listen 127.0.0.1:${port};`,
      `    root ${docroot};`,
      '  }',
      '}',
      '',
    ].join('\n'),
  );
  // -e: the error log before the config is read (the built-in one may be unwritable).
  return {
    cmd: '/usr/sbin/nginx',
    args: ['-p', dir, '-c', conf, '-e', path.join(dir, 'error.log')],
    log: path.join(dir, 'access.log'),
  };
}

async function pythonLaunch(dir: string, docroot: string, port: number): Promise<Launch> {
  return {
    cmd: 'python3',
    args: ['-m', 'http.server', '--bind', '127.0.0.1', '--directory', docroot, String(port)],
    log: path.join(dir, 'requests.log'),
    stderrToLog: true,
  };
}

const LAUNCHERS: Record<UpstreamKind, (dir: string, docroot: string, port: number) => Promise<Launch>> = {
  apache: apacheLaunch,
  nginx: nginxLaunch,
  python: pythonLaunch,
};

/**
 * Starts a `kind` server for `docroot` (its files must be readable by everyone, its directories
 * traversable: Apache's and nginx's workers do not run as root); resolves once the port accepts.
 */
export async function startRealUpstream(kind: UpstreamKind, docroot: string): Promise<RealUpstream> {
  const dir = await mkdtemp(path.join(tmpdir(), `pulp-lazy-upstream-${kind}-`));
  const port = await freePort();
  const launch = await LAUNCHERS[kind](dir, path.resolve(docroot), port);
  const logFile = launch.stderrToLog ? await open(launch.log, 'a') : undefined;
  const errFile = await open(path.join(dir, 'stderr.log'), 'a');
  const child: ChildProcess = spawn(launch.cmd, launch.args, {
    cwd: dir,
    env: { ...process.env, PYTHONUNBUFFERED: '1' },
    stdio: ['ignore', errFile.fd, logFile ? logFile.fd : errFile.fd],
  });
  await logFile?.close();
  await errFile.close();
  const exited = once(child, 'exit');
  let spawnError: Error | undefined;
  child.on('error', (err) => {
    spawnError = err;
  });
  exited.catch(() => {});
  let stopped = false;
  const stop = async () => {
    if (!stopped) {
      stopped = true;
      if (child.exitCode === null && child.signalCode === null) {
        child.kill('SIGTERM');
        const killer = setTimeout(() => child.kill('SIGKILL'), 5000);
        await exited;
        clearTimeout(killer);
      }
    }
    const gone = await waitFor(async () => (await mentioning()).length === 0, 10_000);
    assert.ok(gone, `${kind} upstream: processes left: ${(await mentioning()).join(', ')}`);
  };
  // Apache and nginx name `dir` on their command line; python names the docroot, and runs alone.
  const mentioning = async () =>
    kind === 'python' ? (processAlive(child.pid!) ? [child.pid!] : []) : processesMentioning(dir);
  after(async () => {
    await stop();
    await rm(dir, { recursive: true, force: true });
  });
  const diagnostics = async () => {
    const logs = [path.join(dir, 'stderr.log'), path.join(dir, 'error.log'), launch.log];
    return (await Promise.all(logs.map((f) => readFile(f, 'utf8').catch(() => '')))).join('\n').trim();
  };
  const ready = await waitFor(
    async () => child.exitCode === null && child.signalCode === null && (await portOpen('127.0.0.1', port)),
    15_000,
  );
  if (!ready) {
    await stop().catch(() => {});
    throw new Error(
      `${kind} upstream did not start on port ${port}: ${spawnError?.message ?? ''} ${await diagnostics()}`,
    );
  }
  const requests = async () => {
    const text = await readFile(launch.log, 'utf8').catch(() => '');
    return [...text.matchAll(REQUEST_LINE)].map((m) => ({
      method: m[1]!,
      path: m[2]!,
      status: Number(m[3]),
    }));
  };
  return {
    kind,
    url: `http://127.0.0.1:${port}/`,
    port,
    pid: child.pid!,
    dir,
    requests,
    gets: async (p) => (await requests()).filter((r) => r.method === 'GET' && r.path === p).length,
    alive: () => child.exitCode === null && child.signalCode === null && processAlive(child.pid!),
    stop,
  };
}
