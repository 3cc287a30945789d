/**
 * The Apache fast hit path (apache.fast_path): the content vhost serves a
 * present published file itself instead of asking the content daemon for an
 * X-Sendfile. Everything else goes to the daemon as before: dangling links
 * (the 302 to the streamer), directories (listings), unknown paths, dot
 * entries, other methods, and apache.protected_paths (entitlement needs the
 * daemon's certificate check).
 *
 * The `-f` test runs in vhost context: inside a <Directory> block Apache's
 * directory walk answers 403 for a dangling link before any rewrite runs.
 *
 * Safety: a published link whose target is outside the roots must never be
 * served. The published tree is served with `Options SymLinksIfOwnerMatch`,
 * so a link is only followed to a file with the same owner as the link: the
 * published links and stored files must belong to one non-root service user
 * (root owns most of the system, /etc/passwd included). `pulp-lazy proxies
 * start` refuses the fast path when the published or storage root is owned
 * by root (src/proxies/fastpath.ts).
 *
 * Content-Type follows src/content/mime.ts by the last extension (ForceType
 * per extension, octet-stream otherwise); no Content-Encoding is ever set
 * (no TypesConfig, no AddEncoding). ETag is Apache's (mtime + size), not the
 * daemon's digest-based one. Cache-Control follows src/http/cache-control.ts,
 * like the daemons' hits.
 */
import path from 'node:path';
import type { Config } from '../config.ts';
import { DEFAULT_CONTENT_TYPE, TYPES } from '../content/mime.ts';
import { PulpLazyError } from '../errors.ts';
import { CACHE_RULES } from '../http/cache-control.ts';
import { BIN_PATH } from '../util/bin.ts';
import { PUBLIC_PREFIXES } from './prefixes.ts';

/** The env var the fast path's RewriteRule sets on the requests it serves (the access log's filter). */
export const FAST_HIT_ENV = 'PULP_LAZY_FAST_HIT';
/** What the access logger reads per fast-path hit: status, method, served file (last: it may hold spaces). */
export const FAST_HIT_LOG_FORMAT = '%>s %m %f';

/**
 * Global directives for the fast path ('' when off). Its hits never reach a
 * daemon, so a piped logger records them (`pulp-lazy access-log`, with the
 * config the render had: `source`, as loadConfig returns it): Apache starts
 * it, restarts it when it dies and closes its stdin at stop. `||`: run
 * without a shell, arguments split at spaces.
 */
export function fastPathGlobal(config: Config & { source?: string | null }, modules: string): string {
  if (!config.apache.fast_path) return '';
  const command = [
    process.execPath,
    BIN_PATH,
    ...(config.source ? ['--config', path.resolve(config.source)] : []),
    'access-log',
  ];
  if (command.some((a) => /[\s"\\]/.test(a)))
    throw new PulpLazyError(
      'PL_RENDER',
      `apache.fast_path: the access logger's command cannot hold spaces or quotes: ${command.join(' ')}`,
    );
  return [
    `LoadModule mime_module ${modules}/mod_mime.so`,
    '# No system mime.types: types come from the Directory block below, encodings never.',
    'TypesConfig /dev/null',
    '# Fast-path hits, for access tracking (src/storage/access.ts via src/commands/access-log.ts).',
    `CustomLog "||${command.join(' ')}" "${FAST_HIT_LOG_FORMAT}" env=${FAST_HIT_ENV}`,
  ].join('\n');
}

/** Rewrite rules and the published-tree Directory block for the content vhost ('' when off). */
export function fastPathVhost(config: Config): string {
  if (!config.apache.fast_path) return '';
  const published = config.paths.published.replace(/\/+$/, '');
  const prefixes = ['/pulp/content/', ...PUBLIC_PREFIXES.map((p) => p.prefix)]
    .map((p) => regexEscape(p.replace(/^\/|\/$/g, '')))
    .join('|');
  const prot = config.apache.protected_paths;
  const lines = [
    '# Fast path (apache.fast_path): a present published file is served by Apache itself.',
    '# Anything else (dangling link, directory, dot entry, protected path) goes to the daemon.',
    'RewriteCond "%{REQUEST_METHOD}" "^(GET|HEAD)$"',
    'RewriteCond "$2" "!(^|/)\\."',
    'RewriteCond "$2" "!\\x5c"',
    ...(prot.length > 0 ? [`RewriteCond "$2" "!^(${prot.map(regexEscape).join('|')})(/|$)"`] : []),
    `RewriteCond "${published}/$2" -f`,
    `RewriteRule "^/(${prefixes})/(.*)$" "${published}/$2" [L,E=${FAST_HIT_ENV}:1]`,
    `<Directory "${published}">`,
    '    # Links are only followed to files with the same owner (see docs/proxies.md).',
    '    Options SymLinksIfOwnerMatch',
    '    AllowOverride None',
    '    Require all granted',
    '    FileETag MTime Size',
    `    ForceType ${quoteType(DEFAULT_CONTENT_TYPE)}`,
    ...typeBlocks(),
    ...cacheHeaders(),
    '</Directory>',
  ];
  return lines.join('\n');
}

/**
 * Cache-Control by URL path, from the table the daemons use. Apache applies
 * every matching `Header set` in order and the last one stays, so the rules
 * go in reverse: the first rule of the table, where it matches, wins as it does there.
 */
function cacheHeaders(): string[] {
  return [
    '    # Cache-Control by path (src/http/cache-control.ts: first rule wins, hence listed last).',
    ...[...CACHE_RULES]
      .reverse()
      .map((r) => `    Header set Cache-Control "${r.value}" "expr=%{REQUEST_URI} =~ m#${r.pattern}#"`),
  ];
}

/** One FilesMatch per Content-Type, keyed on the last extension (as contentTypeFor does). */
function typeBlocks(): string[] {
  const byType = new Map<string, string[]>();
  for (const [ext, type] of Object.entries(TYPES)) {
    const list = byType.get(type) ?? [];
    list.push(regexEscape(ext.slice(1)));
    byType.set(type, list);
  }
  const out: string[] = [];
  for (const [type, exts] of byType) {
    out.push(`    <FilesMatch "(?i)\\.(${exts.join('|')})$">`);
    out.push(`        ForceType ${quoteType(type)}`);
    out.push('    </FilesMatch>');
  }
  return out;
}

function quoteType(type: string): string {
  return type.includes(' ') ? `"${type}"` : type;
}

function regexEscape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
