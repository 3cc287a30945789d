/**
 * Renders the private Apache and Squid configs from the pulp-lazy config:
 * templates/apache/httpd.conf.tmpl and templates/squid/squid.conf.tmpl.
 * Every optional block (TLS, client certificates, public prefixes) is computed
 * here and passed to the template as a value. Output is deterministic.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import type { Config } from '../config.ts';
import { PulpLazyError } from '../errors.ts';
import { parseListen } from '../util/listen.ts';
import { fastPathGlobal, fastPathVhost } from './fastpath.ts';
import { proxyLayout } from './layout.ts';
import { type ApachePlatform, DEBIAN_APACHE } from './platform.ts';
import { PUBLIC_PREFIXES } from './prefixes.ts';
import { renderTemplate, type TemplateValues } from './template.ts';

export { type ProxyLayout, proxyLayout } from './layout.ts';
export { type ApachePlatform, DEBIAN_APACHE, detectApachePlatform, RHEL_APACHE } from './platform.ts';
export { renderTemplate, TemplateError, type TemplateValues } from './template.ts';

export const TEMPLATES_DIR = path.resolve(import.meta.dirname, '../../templates');

export const APACHE_CONF = 'httpd.conf';
export const SQUID_CONF = 'squid.conf';

export interface RenderOptions {
  apache?: ApachePlatform;
}

/**
 * Renders every config file the proxies need: `httpd.conf`, plus `squid.conf`
 * when proxy.cache is "squid". Throws PL_RENDER for a config the proxies cannot run with.
 */
export function renderAll(config: Config, opts: RenderOptions = {}): Record<string, string> {
  const values = templateValues(config, opts.apache ?? DEBIAN_APACHE);
  const out: Record<string, string> = {
    [APACHE_CONF]: renderTemplate(readTemplate('apache/httpd.conf.tmpl'), values, 'httpd.conf.tmpl'),
  };
  if (config.proxy.cache === 'squid') {
    out[SQUID_CONF] = renderTemplate(readTemplate('squid/squid.conf.tmpl'), values, 'squid.conf.tmpl');
  }
  return out;
}

function readTemplate(name: string): string {
  return readFileSync(path.join(TEMPLATES_DIR, name), 'utf8');
}

export class RenderError extends PulpLazyError {
  constructor(message: string) {
    super('PL_RENDER', message);
  }
}

/** All template values (exported for tests). */
export function templateValues(config: Config, apache: ApachePlatform): TemplateValues {
  const layout = proxyLayout(config.paths);
  const a = config.apache;
  const secs = (ms: number) => Math.ceil(ms / 1000);

  const streamer = parseListen(config.streamer.listen);
  const squid = config.proxy.cache === 'squid';
  if (squid && streamer.kind === 'unix') {
    throw new RenderError(
      `streamer.listen = "${config.streamer.listen}": Squid reaches the streamer over TCP only; use host:port or proxy.cache = "none"`,
    );
  }
  const authorizer = parseListen(a.authorizer_listen);
  if (authorizer.kind === 'unix') {
    throw new RenderError(
      `apache.authorizer_listen = "${a.authorizer_listen}": mod_authnz_fcgi connects over TCP only; use host:port`,
    );
  }
  if (!/^\d+\s*(bytes|KB|MB|GB)$/i.test(config.squid.maximum_object_size.trim())) {
    throw new RenderError(
      `squid.maximum_object_size = "${config.squid.maximum_object_size}": use a number and a unit, e.g. "5 GB"`,
    );
  }
  const tls = a.tls_cert !== '' || a.tls_key !== '';
  if (tls && (a.tls_cert === '' || a.tls_key === '')) {
    throw new RenderError('apache.tls_cert and apache.tls_key must be set together');
  }

  // How long the origin may take: the streamer's own timeouts, plus a margin so it reports first.
  const s = config.streamer;
  const originWait = secs(s.connect_timeout + s.headers_timeout + s.body_idle_timeout) + 60;
  const streamerKeepAlive = Math.max(1, secs(s.keep_alive_timeout) - 5);
  const squidUrl = `http://127.0.0.1:${config.squid.port}/`;
  const streamerHost = streamer.kind === 'tcp' ? connectHost(streamer.host) : '';
  const redirectPath = config.redirect.path;

  return {
    apache_bin: apache.bin,
    apache_root: apache.root,
    apache_modules: apache.modules,
    apache_conf: layout.apacheConf,
    apache_dir: layout.apacheDir,
    apache_pid: layout.apachePid,
    apache_log_dir: layout.apacheLogDir,
    apache_user: a.user,
    apache_group: a.group,
    server_name: a.server_name,
    content_listen: listenDirective(a.listen_host, a.content_port),
    streamer_listen: listenDirective(a.listen_host, a.streamer_port),
    content_port: a.content_port,
    streamer_port: a.streamer_port,
    tls_global: tls ? tlsGlobal(apache, layout.apacheDir) : '',
    fast_path_global: fastPathGlobal(config, apache.modules),
    mpm: mpmDirectives(a.max_request_workers),
    fast_path: fastPathVhost(config),
    content_tls: tls ? contentTls(config) : '',
    streamer_tls: tls ? serverTls(config) : '',
    client_cert_header: config.content.client_cert_header,
    content_scheme: tls ? 'https' : 'http',
    // mod_headers puts the PEM on one line (newlines become spaces); the content daemon
    // checks the chain against each repository's anchors.
    client_cert_forward: tls
      ? `RequestHeader set ${config.content.client_cert_header} "%{SSL_CLIENT_CERT}s" "expr=-n %{SSL_CLIENT_CERT}"`
      : '',
    public_rewrites: PUBLIC_PREFIXES.map(
      (p) => `RewriteRule "^${regexEscape(p.prefix)}(.*)$" "/pulp/content/$1" [PT]`,
    ).join('\n'),
    content_backend: backendUrl(config.content.listen),
    content_ttl: Math.max(1, secs(config.content.keep_alive_timeout) - 5),
    storage_dir: config.paths.storage,
    published_dir: config.paths.published,
    authorizer: `${connectHost(authorizer.host)}:${authorizer.port}`,
    redirect_path: redirectPath,
    redirect_path_re: regexEscape(redirectPath),
    streamer_hop: squid ? 'Squid' : 'the streamer',
    streamer_upstream: squid ? squidUrl : backendUrl(config.streamer.listen),
    // Squid closes idle client connections after 2 minutes (client_idle_pconn_timeout).
    streamer_ttl: squid ? 60 : streamerKeepAlive,
    streamer_timeout: originWait + 30,
    // squid.conf
    squid_conf: layout.squidConf,
    squid_port: config.squid.port,
    squid_pid: layout.squidPid,
    squid_user: config.squid.user,
    squid_cache_dir: layout.squidCacheDir,
    squid_log_dir: layout.squidLogDir,
    cache_size_mb: config.squid.cache_size_mb,
    maximum_object_size: config.squid.maximum_object_size.trim(),
    streamer_host: streamerHost,
    streamer_daemon_port: streamer.kind === 'tcp' ? streamer.port : 0,
    streamer_site: streamer.kind === 'tcp' ? `${hostForUrl(streamerHost)}:${streamer.port}` : '',
    read_timeout: originWait,
    server_idle_pconn_timeout: streamerKeepAlive,
    shutdown_lifetime: secs(config.squid.shutdown_lifetime),
  };
}

/** The address to connect to for a listen host (a wildcard means this machine). */
function connectHost(host: string): string {
  if (host === '0.0.0.0') return '127.0.0.1';
  if (host === '::') return '::1';
  return host;
}

function hostForUrl(host: string): string {
  return host.includes(':') ? `[${host}]` : host;
}

/** mod_proxy backend URL (ending in "/") for a daemon's listen address. */
function backendUrl(listen: string): string {
  const t = parseListen(listen);
  if (t.kind === 'unix') return `unix:${t.path}|http://localhost/`;
  return `http://${hostForUrl(connectHost(t.host))}:${t.port}/`;
}

function listenDirective(host: string, port: number): string {
  return host === '' ? String(port) : `${hostForUrl(host)}:${port}`;
}

function regexEscape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function tlsGlobal(apache: ApachePlatform, runDir: string): string {
  return [
    `LoadModule ssl_module ${apache.modules}/mod_ssl.so`,
    `LoadModule socache_shmcb_module ${apache.modules}/mod_socache_shmcb.so`,
    `SSLSessionCache "shmcb:${runDir}/ssl_scache(512000)"`,
    'SSLProtocol -all +TLSv1.2 +TLSv1.3',
  ].join('\n');
}

function serverTls(config: Config): string {
  return [
    'SSLEngine on',
    `SSLCertificateFile "${config.apache.tls_cert}"`,
    `SSLCertificateKeyFile "${config.apache.tls_key}"`,
  ].join('\n');
}

/**
 * TLS for the content vhost. Clients may present a certificate (entitlement); with
 * apache.tls_ca Apache also checks its chain, without it only the proof of possession
 * (optional_no_ca). Either way the content daemon checks the chain per repository.
 */
function contentTls(config: Config): string {
  const ca = config.apache.tls_ca;
  return [
    serverTls(config),
    ...(ca !== ''
      ? [`SSLCACertificateFile "${ca}"`, 'SSLVerifyClient optional']
      : ['SSLVerifyClient optional_no_ca']),
    'SSLVerifyDepth 5',
    'SSLOptions +ExportCertData',
  ].join('\n');
}

const MPM_THREADS_PER_CHILD = 64;

/** Thread-pool sizing of the event MPM for `workers` concurrent requests (64 threads per child). */
function mpmDirectives(workers: number): string {
  const children = Math.ceil(workers / MPM_THREADS_PER_CHILD);
  return [
    `ThreadLimit ${MPM_THREADS_PER_CHILD}`,
    `ThreadsPerChild ${MPM_THREADS_PER_CHILD}`,
    `ServerLimit ${children}`,
    `MaxRequestWorkers ${children * MPM_THREADS_PER_CHILD}`,
    'StartServers 2',
    `MinSpareThreads ${MPM_THREADS_PER_CHILD}`,
    `MaxSpareThreads ${children * MPM_THREADS_PER_CHILD}`,
  ].join('\n');
}
