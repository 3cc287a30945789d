/**
 * `pulp-lazy init`: sets a host up. Creates the directory layout, the signing
 * keys, the config file, the MongoDB indexes, the rendered Apache/Squid
 * configs and systemd units, and checks the rendered configs with the real
 * binaries. Idempotent: the same answers change nothing; different answers
 * list what would change and need `force`.
 */
import { chmod, mkdir, readFile, rename, stat, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import { parse as parseToml } from 'smol-toml';
import { type Config, parseConfig } from '../config.ts';
import { connect, type Database, migrate } from '../db/index.ts';
import { type ErrorCode, PulpLazyError } from '../errors.ts';
import { type CheckResult, checkConfigs } from '../render/check.ts';
import { detectApachePlatform, renderAll } from '../render/index.ts';
import { generateKeys } from '../signing/keys.ts';
import { parseListen } from '../util/listen.ts';
import { configFilePath, configText, type InitAnswers, renderedDir } from './answers.ts';
import { renderUnits } from './systemd.ts';

export { configFilePath, type InitAnswers, renderedDir } from './answers.ts';

export interface InitOptions extends InitAnswers {
  force?: boolean;
  /** With force: replace the signing keys too. */
  rotateKeys?: boolean;
  skipDb?: boolean;
  /** Skip `apache2 -t` / `squid -k parse` (tests that do not need them). */
  skipCheck?: boolean;
}

export type FileAction = 'create' | 'same' | 'change';

export interface PlannedFile {
  path: string;
  action: FileAction;
  text: string;
  mode: number;
}

export interface InitResult {
  configPath: string;
  config: Config;
  dirsCreated: string[];
  keys: 'created' | 'kept' | 'replaced';
  files: Array<{ path: string; action: FileAction }>;
  /** Config keys whose value changes ("section.key: old → new"). */
  configChanges: string[];
  indexes: 'created' | 'skipped';
  checks: CheckResult[];
  changed: boolean;
}

export class InitError extends PulpLazyError {
  /** Lines worth printing before the one-line message (what would change). */
  readonly details: string[];
  constructor(code: ErrorCode, message: string, details: string[] = []) {
    super(code, message);
    this.details = details;
  }
}

/** Computes every file init would write and whether it is new, the same, or different. */
export async function planFiles(opts: InitOptions): Promise<{ config: Config; files: PlannedFile[] }> {
  const configPath = configFilePath(opts.root);
  const text = configText(opts);
  const config = parseConfig(parseToml(text), configPath);
  const rendered = renderedDir(opts.root);
  // The config may hold the database password (database.url): readable by its owner only.
  const wanted: Array<[string, string, number]> = [[configPath, text, 0o600]];
  for (const [name, body] of Object.entries(renderAll(config, { apache: detectApachePlatform() })))
    wanted.push([path.join(rendered, name), body, 0o644]);
  for (const [name, body] of Object.entries(renderUnits(config, configPath)))
    wanted.push([path.join(rendered, 'systemd', name), body, 0o644]);
  const files: PlannedFile[] = [];
  for (const [p, body, mode] of wanted) {
    const old = await readFile(p, 'utf8').catch(() => undefined);
    files.push({
      path: p,
      text: body,
      mode,
      action: old === undefined ? 'create' : old === body ? 'same' : 'change',
    });
  }
  return { config, files };
}

/** "section.key: old → new" for every differing key between two config texts. */
export function diffConfig(oldText: string, newText: string): string[] {
  const flat = (text: string): Map<string, string> => {
    const m = new Map<string, string>();
    let raw: Record<string, unknown> = {};
    try {
      raw = parseToml(text) as Record<string, unknown>;
    } catch {
      m.set('(file)', '(not valid TOML)');
    }
    for (const [s, v] of Object.entries(raw)) {
      if (v && typeof v === 'object' && !Array.isArray(v))
        for (const [k, x] of Object.entries(v)) m.set(`${s}.${k}`, JSON.stringify(x));
      else m.set(s, JSON.stringify(v));
    }
    return m;
  };
  const a = flat(oldText);
  const b = flat(newText);
  const out: string[] = [];
  for (const k of [...new Set([...a.keys(), ...b.keys()])].sort()) {
    if (a.get(k) !== b.get(k)) out.push(`${k}: ${a.get(k) ?? '(default)'} → ${b.get(k) ?? '(default)'}`);
  }
  return out;
}

/** Runs init. `note` receives progress lines. */
export async function runInit(
  opts: InitOptions,
  note: (line: string) => void = () => {},
): Promise<InitResult> {
  const configPath = configFilePath(opts.root);
  const { config, files } = await planFiles(opts);
  const cfgFile = files[0]!;
  const oldConfig = await readFile(configPath, 'utf8').catch(() => undefined);
  const configChanges =
    oldConfig !== undefined && cfgFile.action === 'change' ? diffConfig(oldConfig, cfgFile.text) : [];
  const changing = files.filter((f) => f.action === 'change');
  if (changing.length > 0 && !opts.force) {
    const what = [...configChanges.map((c) => `  ${c}`), ...changing.map((f) => `  would rewrite ${f.path}`)];
    throw new InitError(
      'PL_INIT_CHANGED',
      `the existing setup differs from these answers (${configChanges.length} config value(s), ${changing.length} file(s)): nothing written; run again with --force to apply`,
      what,
    );
  }
  if (opts.rotateKeys && !opts.force) throw new InitError('PL_USAGE', '--rotate-keys needs --force');

  // Ports are checked only when the config is new or changes (a running setup holds its own ports).
  if (cfgFile.action !== 'same') await checkPorts(config);

  // The database is reached before anything is written: a refused init leaves the host as it was.
  const db = opts.skipDb
    ? undefined
    : await connect(config.database.url, config.database.name, { timeoutMs: 3000 }).catch((err) => {
        throw new InitError(
          'PL_INIT_DB',
          `${err instanceof Error ? err.message : String(err)} (start MongoDB, pass --mongodb-url, or use --skip-db and run "pulp-lazy db migrate" later)`,
        );
      });
  try {
    return await setUp(opts, { config, files, configPath, configChanges }, db, note);
  } finally {
    await db?.close();
  }
}

/** Directories, keys, files, indexes and checks, once every refusal was ruled out. */
async function setUp(
  opts: InitOptions,
  plan: { config: Config; files: PlannedFile[]; configPath: string; configChanges: string[] },
  db: Database | undefined,
  note: (line: string) => void,
): Promise<InitResult> {
  const { config, files, configPath, configChanges } = plan;
  const dirsCreated: string[] = [];
  const p = config.paths;
  const dirs: Array<[string, number]> = [
    [p.storage, 0o755],
    [p.published, 0o755],
    [p.working, 0o750],
    [p.keys, 0o700],
    [p.logs, 0o755],
    [p.run, 0o755],
    [p.cache, 0o755],
    [path.dirname(configPath), 0o755],
    [path.join(renderedDir(opts.root), 'systemd'), 0o755],
  ];
  for (const [d, mode] of dirs) {
    try {
      const made = await mkdir(d, { recursive: true, mode });
      if (made !== undefined) dirsCreated.push(d);
    } catch (err) {
      throw new InitError(
        'PL_INIT_WRITE',
        `cannot create ${d}: ${(err as NodeJS.ErrnoException).code ?? err}`,
      );
    }
  }

  const keys = await generateKeys(p.keys, { force: Boolean(opts.force && opts.rotateKeys) });
  const keyState = keys.created ? (opts.force && opts.rotateKeys ? 'replaced' : 'created') : 'kept';

  // An existing keys dir made wider by hand is narrowed again (mkdir leaves existing dirs alone).
  await narrow(p.keys, 0o700);
  for (const f of files) {
    if (f.action === 'same') {
      await narrow(f.path, f.mode);
      continue;
    }
    try {
      const tmp = `${f.path}.tmp-${process.pid}`;
      await writeFile(tmp, f.text, { mode: f.mode });
      await rename(tmp, f.path);
    } catch (err) {
      throw new InitError(
        'PL_INIT_WRITE',
        `cannot write ${f.path}: ${(err as NodeJS.ErrnoException).code ?? err}`,
      );
    }
    note(`${f.action === 'create' ? 'wrote' : 'rewrote'} ${f.path}`);
  }

  let indexes: InitResult['indexes'] = 'skipped';
  if (db) {
    await migrate(db);
    indexes = 'created';
  }

  const checks = opts.skipCheck ? [] : await checkConfigs(config);
  const changed = dirsCreated.length > 0 || keyState !== 'kept' || files.some((f) => f.action !== 'same');
  return {
    configPath,
    config,
    dirsCreated,
    keys: keyState,
    files: files.map((f) => ({ path: f.path, action: f.action })),
    configChanges,
    indexes,
    checks,
    changed,
  };
}

/** Every TCP address the setup will listen on. */
export function listenAddresses(config: Config): Array<{ what: string; host: string; port: number }> {
  const out: Array<{ what: string; host: string; port: number }> = [];
  for (const [what, spec] of [
    ['content.listen', config.content.listen],
    ['streamer.listen', config.streamer.listen],
    ['apache.authorizer_listen', config.apache.authorizer_listen],
  ] as const) {
    const t = parseListen(spec);
    if (t.kind === 'tcp') out.push({ what, host: t.host, port: t.port });
  }
  const ah = config.apache.listen_host || '0.0.0.0';
  out.push({ what: 'apache.content_port', host: ah, port: config.apache.content_port });
  out.push({ what: 'apache.streamer_port', host: ah, port: config.apache.streamer_port });
  if (config.proxy.cache === 'squid')
    out.push({ what: 'squid.port', host: '127.0.0.1', port: config.squid.port });
  return out;
}

async function checkPorts(config: Config): Promise<void> {
  const taken: string[] = [];
  for (const a of listenAddresses(config)) {
    const err = await tryBind(a.host, a.port);
    if (err === 'EADDRINUSE') taken.push(`${a.what} (${a.host}:${a.port})`);
  }
  if (taken.length)
    throw new InitError(
      'PL_INIT_PORT',
      `port already in use: ${taken.join(', ')} (choose another with the flags)`,
    );
}

function tryBind(host: string, port: number): Promise<string | null> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? 'ERROR'));
    s.listen({ host, port, exclusive: true }, () => s.close(() => resolve(null)));
  });
}

/** Takes away the permission bits `file` has beyond `mode` (an older init wrote the config 0640). */
async function narrow(file: string, mode: number): Promise<void> {
  try {
    const has = (await stat(file)).mode & 0o777;
    if ((has & ~mode) !== 0) await chmod(file, has & mode);
  } catch (err) {
    throw new InitError(
      'PL_INIT_WRITE',
      `cannot set the mode of ${file}: ${(err as NodeJS.ErrnoException).code ?? err}`,
    );
  }
}
