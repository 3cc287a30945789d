/**
 * What every command gets: lazily loaded config, a lazily opened database,
 * output helpers and a logger. Commands throw typed errors; src/cli.ts maps
 * them to a one-line message and an exit code.
 */
import type { Command } from 'commander';
import { type Config, loadConfig } from '../config.ts';
import { connect, type Database, migrate } from '../db/index.ts';
import { createLogger, type Logger } from '../log.ts';

export interface Output {
  /** A line for humans on stdout. */
  line(text?: string): void;
  /** A JSON document on stdout (for --json). */
  json(value: unknown): void;
  /** A line on stderr (progress, warnings). */
  err(text: string): void;
}

export interface Context {
  config(): Config & { source: string | null };
  db(): Promise<Database>;
  /** Connects db() to this URL instead of the configured one (the auto-started dev database). */
  overrideDatabaseUrl(url: string): void;
  logger(): Logger;
  out: Output;
  /** Resources to release when the command ends. */
  onClose(fn: () => Promise<void> | void): void;
  close(): Promise<void>;
}

export function stdOutput(stdout: NodeJS.WritableStream = process.stdout, stderr = process.stderr): Output {
  return {
    line: (text = '') => void stdout.write(`${text}\n`),
    json: (value) => void stdout.write(`${JSON.stringify(value, null, 2)}\n`),
    err: (text) => void stderr.write(`${text}\n`),
  };
}

export function createContext(opts: { configPath: () => string | undefined; out?: Output }): Context {
  let config: (Config & { source: string | null }) | undefined;
  let dbPromise: Promise<Database> | undefined;
  let logger: Logger | undefined;
  let urlOverride: string | undefined;
  const closers: Array<() => Promise<void> | void> = [];
  const ctx: Context = {
    config() {
      config ??= loadConfig({ path: opts.configPath() });
      return config;
    },
    db() {
      dbPromise ??= (async () => {
        const cfg = ctx.config();
        const d = await connect(urlOverride ?? cfg.database.url, cfg.database.name);
        await migrate(d);
        closers.push(() => d.close());
        return d;
      })();
      return dbPromise;
    },
    overrideDatabaseUrl(url) {
      urlOverride = url;
    },
    logger() {
      logger ??= createLogger({ level: ctx.config().log.level, name: 'pulp-lazy' });
      return logger;
    },
    out: opts.out ?? stdOutput(),
    onClose: (fn) => void closers.push(fn),
    async close() {
      for (const fn of closers.reverse()) await fn();
      closers.length = 0;
    },
  };
  return ctx;
}

/** Adds the shared --json option. */
export function withJson(cmd: Command): Command {
  return cmd.option('--json', 'print machine-readable JSON');
}
