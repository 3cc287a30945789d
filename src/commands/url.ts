import { isIP } from 'node:net';
import { Command } from 'commander';
import type { Config } from '../config.ts';
import { PulpLazyError, UsageError } from '../errors.ts';
import { loadPrivateKey, loadPublicKey, SignatureError, signUrl, verifyUrl } from '../signing/index.ts';
import { type Context, withJson } from './context.ts';

/** `pulp-lazy url sign|verify`: make and check signed streamer URLs by hand. */
export function urlCommand(ctx: Context): Command {
  const url = new Command('url').description('sign and verify streamer redirect URLs');
  withJson(
    url
      .command('sign')
      .description('print a signed URL for PATH (a path under redirect.path, or an absolute http(s) URL)')
      .argument('<path>', 'storage path such as /var/lib/pulp-lazy/content/units/..., or http(s)://...')
      .option('--ttl <seconds>', 'validity in seconds (default: signing.ttl)')
      .option('--remote-ip <ip>', 'bind the URL to this client address')
      .action((target: string, opts: { ttl?: string; remoteIp?: string; json?: boolean }) => {
        const cfg = ctx.config();
        const ttlMs = opts.ttl === undefined ? cfg.signing.ttl : parseTtl(opts.ttl) * 1000;
        const extensions = remoteIpExtension(opts.remoteIp);
        const full = /^https?:\/\//i.test(target) ? target : redirectUrl(cfg, target);
        const now = Date.now();
        const signed = signUrl(full, { privateKey: loadPrivateKey(cfg.paths.keys), ttlMs, now, extensions });
        if (opts.json) {
          const expiration = Math.ceil((now + ttlMs) / 1000);
          ctx.out.json({
            url: signed,
            expiration,
            expiresAt: new Date(expiration * 1000).toISOString(),
            extensions,
          });
        } else ctx.out.line(signed);
      }),
  );
  withJson(
    url
      .command('verify')
      .description('check a signed URL (exit 0 valid, 1 invalid)')
      .argument('<url>', 'signed URL or request target (/streamer/...?policy=...&signature=...)')
      .option('--remote-ip <ip>', 'the client address the request comes from')
      .action((target: string, opts: { remoteIp?: string; json?: boolean }) => {
        const cfg = ctx.config();
        const extensions = remoteIpExtension(opts.remoteIp);
        const publicKey = loadPublicKey(cfg.paths.keys);
        const now = Date.now();
        try {
          const policy = verifyUrl(target, { publicKey, now, extensions });
          const expiresIn = Math.floor(policy.expiration - now / 1000);
          if (opts.json) ctx.out.json({ valid: true, ...policy, expiresIn });
          else ctx.out.line(`valid (expires in ${expiresIn}s)`);
        } catch (err) {
          if (!(err instanceof SignatureError)) throw err;
          if (opts.json) ctx.out.json({ valid: false, code: err.code, message: err.message });
          throw new PulpLazyError(err.code, `invalid: ${err.code}: ${err.message}`, {
            exitCode: 1,
            status: 403,
          });
        }
      }),
  );
  return url;
}

function parseTtl(value: string): number {
  const n = Number(value);
  if (!/^\d+$/.test(value) || !Number.isSafeInteger(n) || n <= 0) {
    throw new UsageError(`--ttl must be a positive whole number of seconds, got "${value}"`);
  }
  return n;
}

function remoteIpExtension(ip: string | undefined): Record<string, string> {
  if (ip === undefined) return {};
  if (isIP(ip) === 0) throw new UsageError(`--remote-ip must be an IP address, got "${ip}"`);
  return { remote_ip: ip };
}

/** `<scheme>://<host>:<port><redirect.path><path>`, as the content daemon builds its redirects. */
function redirectUrl(cfg: Config, target: string): string {
  const r = cfg.redirect;
  const host = r.host || '127.0.0.1';
  const port = r.port || cfg.apache.streamer_port;
  const h = host.includes(':') && !host.startsWith('[') ? `[${host}]` : host;
  return `${r.scheme || 'http'}://${h}:${port}${r.path}${target.replace(/^\/+/, '')}`;
}
