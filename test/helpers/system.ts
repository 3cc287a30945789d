/**
 * A whole pulp-lazy installation for tests that start the real daemons: a
 * temp root set up by `pulp-lazy init --root DIR --yes` on free loopback
 * ports and a fresh database, a CLI bound to its config, and one clean-up
 * hook: the test's own clean-ups, `stop all`, the database dropped, the
 * root removed, then a check that no process mentions the root any more.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import { connect } from '../../src/db/index.ts';
import { type CliResult, runCli } from './cli.ts';
import { mongoUrl } from './db.ts';
import { freePorts } from './proxies.ts';

export interface SystemPorts {
  /** Apache's public content port. */
  apacheContent: number;
  /** Apache's public streamer port (signed redirects). */
  apacheStreamer: number;
  content: number;
  streamer: number;
  authorizer: number;
  squid: number;
}

export interface TestSystem {
  root: string;
  configPath: string;
  dbName: string;
  ports: SystemPorts;
  /** The output of `init`. */
  init: CliResult;
  /** Runs the same `init` again (same answers). */
  reinit(): Promise<CliResult>;
  /** Runs the built CLI with `--config <root's config>`. */
  cli(args: string[]): Promise<CliResult>;
  /**
   * Adds a clean-up step run before `stop all` (last added first), e.g.
   * stopping a process the test started itself; what it throws is reported
   * after the rest of the clean-up has run.
   */
  onCleanup(fn: () => unknown): void;
}

let n = 0;

/**
 * Runs `init --root TMP --yes` with every port free and the test database;
 * does not check that init succeeded (see `system.init`). When the test (or
 * file) ends: the onCleanup steps, `stop all`, the database and the root
 * removed, and `pgrep -f ROOT` must find nothing.
 */
export async function initSystem(label: string): Promise<TestSystem> {
  const root = await mkdtemp(path.join(tmpdir(), `pulp-lazy-${label}-`));
  // Apache's workers (www-data) and Squid (proxy) must be able to walk into the root.
  await chmod(root, 0o755);
  const dbName = `t_${label.replace(/[^A-Za-z0-9]/g, '_').slice(0, 20)}_${process.pid}_${n++}`;
  const configPath = path.join(root, 'etc/pulp-lazy/config.toml');
  const cli = (args: string[]) => runCli(['--config', configPath, ...args]);
  const cleanups: Array<() => unknown> = [];
  // One hook, so the order holds whatever fails: node:test skips the later hooks once one throws.
  after(async () => {
    const errors: unknown[] = [];
    const step = async (fn: () => unknown) => {
      try {
        await fn();
      } catch (err) {
        errors.push(err);
      }
    };
    for (const fn of cleanups.reverse()) await step(fn);
    await step(() => cli(['stop', 'all']));
    await step(async () => {
      const d = await connect(mongoUrl(), dbName);
      await d.db.dropDatabase();
      await d.close();
    });
    await step(() => rm(root, { recursive: true, force: true }));
    if (errors.length > 0) throw errors[0];
    assert.deepEqual(await pgrepF(root), [], `processes left running under ${root}`);
  });
  const [apacheContent, apacheStreamer, content, streamer, authorizer, squid] = await freePorts(6);
  const ports = { apacheContent, apacheStreamer, content, streamer, authorizer, squid } as SystemPorts;
  const initArgs = [
    'init',
    ...['--root', root, '--yes', '--mongodb-url', mongoUrl(), '--database-name', dbName],
    ...['--content-port', String(ports.apacheContent), '--streamer-port', String(ports.apacheStreamer)],
    ...['--listen-host', '127.0.0.1', '--content-listen', `127.0.0.1:${ports.content}`],
    ...['--streamer-listen', `127.0.0.1:${ports.streamer}`],
    ...['--authorizer-listen', `127.0.0.1:${ports.authorizer}`, '--squid-port', String(ports.squid)],
  ];
  const init = await runCli(initArgs);
  return {
    root,
    configPath,
    dbName,
    ports,
    init,
    reinit: () => runCli(initArgs),
    cli,
    onCleanup: (fn) => void cleanups.push(fn),
  };
}

/** `pgrep -f <text>`: pids of the processes whose command line contains `text` (none: []). */
export function pgrepF(text: string): Promise<number[]> {
  const pattern = text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  return new Promise((resolve, reject) => {
    execFile('pgrep', ['-f', pattern], (err, stdout) => {
      // Exit status 1: nothing matched.
      if (err && err.code !== 1) return reject(err);
      resolve(
        stdout
          .split('\n')
          .filter((l) => l.trim() !== '')
          .map(Number),
      );
    });
  });
}
