/**
 * Configuration: one TOML file, every key has a default, validated at load.
 * This module is the only reader of the environment (PULP_LAZY_CONFIG,
 * MONGODB_URL). Errors name the file and the key.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import path from 'node:path';
import { parse as parseToml, TomlError } from 'smol-toml';
import { z } from 'zod';
import { ConfigError } from './errors.ts';
import { parseDuration } from './util/duration.ts';
import { type MinFree, parseMinFree, parseSize } from './util/size.ts';

export type { MinFree } from './util/size.ts';

export const DEFAULT_CONFIG_PATH = '/etc/pulp-lazy/config.toml';

/** A duration in the file (`90`, `"90s"`, `"30m"`), held as milliseconds. */
const duration = (def: string) =>
  z
    .union([z.number(), z.string()])
    .default(def)
    .transform((v, ctx) => {
      const ms = parseDuration(v);
      if (ms === undefined) {
        ctx.addIssue({
          code: 'custom',
          message: `"${v}" is not a duration (use e.g. 90, "90s", "30m", "4h")`,
        });
        return z.NEVER;
      }
      return ms;
    });

/** A size in bytes, or "off" (undefined). */
const sizeOrOff = (def: string) =>
  z
    .union([z.number(), z.string()])
    .default(def)
    .transform((v, ctx) => {
      if (v === 'off') return undefined;
      const bytes = parseSize(v);
      if (bytes === undefined) {
        ctx.addIssue({
          code: 'custom',
          message: `"${v}" is not a size (use e.g. 1048576, "512KiB", "32MiB", "1GiB", or "off")`,
        });
        return z.NEVER;
      }
      return bytes;
    });

/** storage.min_free (util/size.ts parseMinFree). */
const minFree = z
  .union([z.number(), z.string()])
  .default('default')
  .transform((v, ctx): MinFree => {
    const min = parseMinFree(v);
    if (min) return min;
    ctx.addIssue({
      code: 'custom',
      message: `"${v}" is not a size or a percentage (use e.g. "2GiB", "512MiB", "5%", "default" or "off")`,
    });
    return z.NEVER;
  });

/** `host:port` or `unix:/path/to.sock`. */
const listenAddress = (def: string) =>
  z
    .string()
    .default(def)
    .refine((v) => v.startsWith('unix:/') || /^(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(v), {
      message: 'must be "host:port", "[v6addr]:port" or "unix:/absolute/path"',
    });

const port = (def: number) => z.number().int().min(1).max(65535).default(def);
const absPath = (def: string) =>
  z
    .string()
    .default(def)
    .refine((p) => path.isAbsolute(p), { message: 'must be an absolute path' });

const schema = z
  .object({
    database: z
      .object({
        url: z.string().default('mongodb://127.0.0.1:27017/'),
        name: z
          .string()
          .regex(/^[A-Za-z0-9_-]{1,63}$/, 'letters, digits, _ and - only')
          .default('pulp_lazy'),
      })
      .strict()
      .prefault({}),
    paths: z
      .object({
        storage: absPath('/var/lib/pulp-lazy/content'),
        published: absPath('/var/lib/pulp-lazy/published'),
        working: absPath('/var/lib/pulp-lazy/work'),
        keys: absPath('/etc/pulp-lazy/keys'),
        logs: absPath('/var/log/pulp-lazy'),
        run: absPath('/run/pulp-lazy'),
        cache: absPath('/var/cache/pulp-lazy'),
      })
      .strict()
      .prefault({}),
    log: z
      .object({
        level: z.enum(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent']).default('info'),
      })
      .strict()
      .prefault({}),
    content: z
      .object({
        listen: listenAddress('127.0.0.1:8750'),
        /** Bind redirects to the client address (Pulp's remote_ip extension). */
        bind_remote_ip: z.boolean().default(true),
        /** Peers whose X-Forwarded-For is believed (the local Apache). */
        trusted_proxies: z
          .array(z.string().refine((a) => isIP(a) !== 0, { message: 'must be an IP address' }))
          .default(['127.0.0.1', '::1']),
        /** Request header in which Apache passes the client certificate (PEM). */
        client_cert_header: z.string().default('X-Pulp-Client-Cert'),
        keep_alive_timeout: duration('65s'),
      })
      .strict()
      .prefault({}),
    streamer: z
      .object({
        listen: listenAddress('127.0.0.1:8751'),
        /** Cache-Control max-age/s-maxage sent so Squid keeps the object. */
        cache_timeout: duration('86400s'),
        save_to_storage: z.boolean().default(true),
        connect_timeout: duration('30s'),
        headers_timeout: duration('60s'),
        body_idle_timeout: duration('60s'),
        /** How long a save may go on after its last client went away. */
        orphan_save_timeout: duration('10m'),
        /** A catalog entry whose bytes failed verification is skipped this long. */
        failure_cooldown: duration('5m'),
        keep_alive_timeout: duration('65s'),
        /** On SIGTERM, running transfers may finish this long before they are cut. */
        shutdown_timeout: duration('30s'),
        /**
         * Several streamer processes share one database and storage: each cold path is fetched
         * upstream by one of them (src/streamer/shared-flight.ts). Streamer daemons only.
         */
        share_fetches: z.boolean().default(false),
        /** How the other streamers reach this one (`http://host:port`); empty: from `listen`. */
        advertise_url: z
          .string()
          .default('')
          .refine((v) => v === '' || /^https?:\/\/[^/?#\s]+$/.test(v), {
            message: 'must be "http://host:port" (or https), without a path',
          }),
        /** A fetch lease of share_fetches expires this long after its holder stopped renewing it. */
        fetch_lease: duration('30s'),
        /**
         * Files at least this large are saved with O_DIRECT, past the page cache
         * (src/storage/direct-io.ts); "off": never.
         */
        direct_io_min_size: sizeOrOff('32MiB'),
      })
      .strict()
      .prefault({}),
    /** All-in-one server (`pulp-lazy serve`). */
    serve: z
      .object({ listen: listenAddress('127.0.0.1:8080') })
      .strict()
      .prefault({}),
    /** Where redirects point: Pulp's redirect_host / redirect_port / redirect_path. */
    redirect: z
      .object({
        scheme: z.enum(['http', 'https', '']).default(''),
        host: z.string().default(''),
        port: z.number().int().min(0).max(65535).default(0),
        path: z
          .string()
          .default('/streamer/')
          .refine((p) => p.startsWith('/') && p.endsWith('/'), { message: 'must start and end with "/"' }),
      })
      .strict()
      .prefault({}),
    publish: z
      .object({
        /**
         * After a sync replaces a published tree, the previous tree's files the new one lacks
         * (hashed metadata, a dropped package) stay served this long; "0s": removed at once.
         */
        keep_previous: duration('1d'),
      })
      .strict()
      .prefault({}),
    storage: z
      .object({
        /**
         * `orphans` keeps a unit that no repository references for this long after it was created
         * or last unassociated (Pulp's ORPHAN_PROTECTION_TIME), so a running sync keeps its new units.
         */
        orphan_protection: duration('1d'),
        /** Under this free space (storage or working dir): misses streamed, not saved; sweep paused (storage/free-space.ts). */
        min_free: minFree,
      })
      .strict()
      .prefault({}),
    signing: z
      .object({
        ttl: duration('90s'),
        /** TTL of the URLs the download tasks sign for themselves. */
        task_ttl: duration('300s'),
      })
      .strict()
      .prefault({}),
    tasks: z
      .object({
        sweep_interval: duration('30m'),
        batch_size: z.number().int().min(1).max(10_000).default(100),
        concurrency: z.number().int().min(1).max(256).default(5),
        max_attempts: z.number().int().min(1).max(1000).default(10),
        lease: duration('5m'),
        backoff_base: duration('30s'),
        backoff_max: duration('6h'),
        /**
         * How the tasks fetch files: "proxy" = GET the signed streamer URL (Apache/Squid, or
         * `serve`), "local" = through streamer logic inside the task process; "auto" = "proxy"
         * when proxy.cache is "squid", else "local".
         */
        fetch: z.enum(['auto', 'proxy', 'local']).default('auto'),
        /** On SIGTERM, `schedule` lets the running sweep go on this long before aborting it. */
        shutdown_timeout: duration('60s'),
      })
      .strict()
      .prefault({}),
    /** Scheduled and requested syncs, run by the scheduler daemon (src/scheduler/syncs.ts). */
    sync: z
      .object({
        /** How often the scheduler looks for due syncs (intervals, retries, requests). */
        check_interval: duration('15s'),
        /** First retry after a failed sync; doubles with each failure, up to the repository's interval. */
        retry_min: duration('1m'),
        /** Longest wait between retries of a requested sync of a repository without an interval. */
        retry_max: duration('6h'),
        /** Where the scheduler serves GET /metrics (per-repository sync gauges); '' = nowhere. */
        metrics_listen: z.union([z.literal(''), listenAddress('')]).default(''),
      })
      .strict()
      .prefault({}),
    /** Health of upstream origins (src/upstream/health.ts): blocked after connection failures, probed until they answer. */
    remotes: z
      .object({
        /** Consecutive connection failures or timeouts (not HTTP errors) that block an origin. */
        block_after: z.number().int().min(1).max(1000).default(3),
        /** First probe of a blocked origin this long after the block; each probe doubles the wait. */
        probe_min: duration('10s'),
        /** Longest wait between two probes. */
        probe_max: duration('5m'),
      })
      .strict()
      .prefault({}),
    apache: z
      .object({
        /** Address Apache's two vhosts listen on ('' = all interfaces). */
        listen_host: z
          .string()
          .default('')
          .refine((v) => v === '' || isIP(v) !== 0, {
            message: 'must be an IP address or "" (all interfaces)',
          }),
        content_port: port(8080),
        streamer_port: port(8081),
        authorizer_listen: listenAddress('127.0.0.1:8753'),
        user: z.string().default('www-data'),
        group: z.string().default('www-data'),
        server_name: z.string().default('localhost'),
        tls_cert: z.string().default(''),
        tls_key: z.string().default(''),
        tls_ca: z.string().default(''),
        /**
         * Apache serves present published files itself (no content daemon hop). Opt-in: its
         * safety rests on file ownership (Options SymLinksIfOwnerMatch), see docs/proxies.md.
         */
        fast_path: z.boolean().default(false),
        /**
         * Requests Apache serves at once (event MPM, 64 threads per child). Every proxied miss holds
         * a worker for its whole transfer, so this bounds concurrent misses too.
         */
        max_request_workers: z.number().int().min(64).max(20_000).default(256),
        /** Published paths (repositories) that always go through the content daemon (entitlement). */
        protected_paths: z
          .array(
            z
              .string()
              .refine((v) => /^[\w.~+@:-]+(\/[\w.~+@:-]+)*$/.test(v) && !/(^|\/)\.\.?(\/|$)/.test(v), {
                message:
                  'must be a published path like "rhel9/entitled" (letters, digits, . _ ~ + @ : -; no leading /, . or ..)',
              }),
          )
          .default([]),
      })
      .strict()
      .prefault({}),
    proxy: z
      .object({ cache: z.enum(['squid', 'none']).default('squid') })
      .strict()
      .prefault({}),
    squid: z
      .object({
        port: port(3128),
        cache_size_mb: z.number().int().min(16).default(10_000),
        maximum_object_size: z.string().default('5 GB'),
        user: z.string().default('proxy'),
        shutdown_lifetime: duration('30s'),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type Config = z.infer<typeof schema>;

export interface LoadOptions {
  /** Explicit path (from --config). When absent: PULP_LAZY_CONFIG, then the default path if it exists. */
  path?: string | undefined;
  env?: NodeJS.ProcessEnv;
}

/** Where the config comes from, after --config and PULP_LAZY_CONFIG. */
export function resolveConfigPath(opts: LoadOptions = {}): { path: string; explicit: boolean } {
  const env = opts.env ?? process.env;
  if (opts.path) return { path: path.resolve(opts.path), explicit: true };
  if (env.PULP_LAZY_CONFIG) return { path: path.resolve(env.PULP_LAZY_CONFIG), explicit: true };
  return { path: DEFAULT_CONFIG_PATH, explicit: false };
}

/** Loads, validates and freezes the configuration. A missing default file means "all defaults". */
export function loadConfig(opts: LoadOptions = {}): Config & { source: string | null } {
  const env = opts.env ?? process.env;
  const { path: file, explicit } = resolveConfigPath(opts);
  let raw: unknown = {};
  let source: string | null = null;
  let text: string | undefined;
  try {
    text = readFileSync(file, 'utf8');
    source = file;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (explicit || code !== 'ENOENT')
      throw new ConfigError(`cannot read config file ${file}: ${code ?? err}`, err);
  }
  if (text !== undefined) {
    try {
      raw = parseToml(text);
    } catch (err) {
      const where = err instanceof TomlError ? ` (line ${err.line}, column ${err.column})` : '';
      const first = (err instanceof Error ? err.message : String(err)).split('\n')[0];
      throw new ConfigError(`${file}: not valid TOML${where}: ${first}`, err);
    }
  }
  return { ...parseConfig(raw, source ?? '(defaults)', env), source };
}

/** Validates an already-parsed config object. Exposed for `init` and tests. */
export function parseConfig(raw: unknown, source: string, env: NodeJS.ProcessEnv = process.env): Config {
  const result = schema.safeParse(raw);
  if (!result.success) {
    const issue = result.error.issues[0]!;
    const key = issue.path.join('.') || '(top level)';
    let message = issue.message;
    if (issue.code === 'unrecognized_keys') {
      const keys = issue.keys.map((k) => (issue.path.length ? `${key}.${k}` : k)).join(', ');
      throw new ConfigError(`${source}: unknown key ${keys}`);
    }
    if (issue.code === 'invalid_type') message = `expected ${issue.expected}`;
    throw new ConfigError(`${source}: ${key}: ${message}`);
  }
  const cfg = result.data;
  if (env.MONGODB_URL) cfg.database.url = env.MONGODB_URL;
  if (!/^mongodb(\+srv)?:\/\//.test(cfg.database.url)) {
    throw new ConfigError(`${source}: database.url: must start with mongodb:// or mongodb+srv://`);
  }
  return deepFreeze(cfg);
}

/** The defaults, as a config object (used by `init` and `config show`). */
export function defaultConfig(): Config {
  return parseConfig({}, '(defaults)', {});
}

/** Returns a config with every path moved under `root` (for `init --root`, tests and the demo). */
export function rootedPaths(root: string): Config['paths'] {
  const r = path.resolve(root);
  return {
    storage: path.join(r, 'var/lib/pulp-lazy/content'),
    published: path.join(r, 'var/lib/pulp-lazy/published'),
    working: path.join(r, 'var/lib/pulp-lazy/work'),
    keys: path.join(r, 'etc/pulp-lazy/keys'),
    logs: path.join(r, 'var/log/pulp-lazy'),
    run: path.join(r, 'run/pulp-lazy'),
    cache: path.join(r, 'var/cache/pulp-lazy'),
  };
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === 'object') {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}
