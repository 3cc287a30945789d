/**
 * The values `pulp-lazy init` asks for, and the config file they make.
 * Only values given (flags or prompt answers) and the paths are written;
 * everything else stays at its default, so the file stays short.
 */
import path from 'node:path';
import { stringify } from 'smol-toml';
import { type Config, DEFAULT_CONFIG_PATH, defaultConfig, parseConfig, rootedPaths } from '../config.ts';
import { UsageError } from '../errors.ts';

export interface InitAnswers {
  /** Everything under this directory (else the FHS paths). */
  root?: string | undefined;
  mongodbUrl?: string | undefined;
  databaseName?: string | undefined;
  /** Apache's public content vhost port. */
  contentPort?: number | undefined;
  /** Apache's streamer vhost port (where signed redirects point). */
  streamerPort?: number | undefined;
  listenHost?: string | undefined;
  contentListen?: string | undefined;
  streamerListen?: string | undefined;
  authorizerListen?: string | undefined;
  squidPort?: number | undefined;
  serveListen?: string | undefined;
  proxyCache?: 'squid' | 'none' | undefined;
}

/** Where init writes the config file. */
export function configFilePath(root: string | undefined): string {
  return root ? path.join(path.resolve(root), 'etc/pulp-lazy/config.toml') : DEFAULT_CONFIG_PATH;
}

/** Where init writes the rendered Apache/Squid configs and systemd units. */
export function renderedDir(root: string | undefined): string {
  return path.join(path.dirname(configFilePath(root)), 'rendered');
}

/** The raw config sections for these answers (only what differs from the defaults, plus paths). */
export function configSections(a: InitAnswers): Record<string, Record<string, unknown>> {
  const s: Record<string, Record<string, unknown>> = {};
  const set = (section: string, key: string, value: unknown) => {
    if (value === undefined) return;
    s[section] ??= {};
    s[section][key] = value;
  };
  set('database', 'url', a.mongodbUrl);
  set('database', 'name', a.databaseName);
  if (a.root) s.paths = { ...rootedPaths(a.root) };
  set('content', 'listen', a.contentListen);
  set('streamer', 'listen', a.streamerListen);
  set('serve', 'listen', a.serveListen);
  set('apache', 'listen_host', a.listenHost);
  set('apache', 'content_port', a.contentPort);
  set('apache', 'streamer_port', a.streamerPort);
  set('apache', 'authorizer_listen', a.authorizerListen);
  set('squid', 'port', a.squidPort);
  set('proxy', 'cache', a.proxyCache);
  return s;
}

/** The config file text (deterministic: same answers, same bytes). */
export function configText(a: InitAnswers): string {
  const sections = configSections(a);
  // Validate now, with the file's own name, so a bad flag is a one-line error before anything is written.
  parseConfig(sections, '(init options)', {});
  return `# pulp-lazy configuration, written by "pulp-lazy init".\n# Every other key keeps its default: see "pulp-lazy config show".\n\n${stringify(sections)}\n`;
}

/** Parses a port flag. */
export function portFlag(name: string, v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1 || n > 65535)
    throw new UsageError(`${name}: "${v}" is not a port (1-65535)`);
  return n;
}

/** Defaults shown in prompts. */
export function defaultsFor(): Config {
  return defaultConfig();
}
