/**
 * `pulp-lazy init`: sets up a host (directories, keys, config file, MongoDB
 * indexes, rendered Apache/Squid configs and systemd units). See src/init/.
 * Prompts only on a terminal and without --yes; elsewhere defaults are used.
 */
import { createInterface } from 'node:readline/promises';
import { Command } from 'commander';
import { defaultConfig } from '../config.ts';
import { PulpLazyError, UsageError } from '../errors.ts';
import { portFlag } from '../init/answers.ts';
import { InitError, type InitOptions, renderedDir, runInit } from '../init/index.ts';
import { SYSTEMD_SERVICES } from '../init/systemd.ts';
import { type Context, withJson } from './context.ts';

interface Flags {
  root?: string;
  yes?: boolean;
  mongodbUrl?: string;
  databaseName?: string;
  contentPort?: string;
  streamerPort?: string;
  listenHost?: string;
  contentListen?: string;
  streamerListen?: string;
  authorizerListen?: string;
  squidPort?: string;
  serveListen?: string;
  proxyCache?: 'squid' | 'none';
  skipDb?: boolean;
  skipCheck?: boolean;
  force?: boolean;
  rotateKeys?: boolean;
  json?: boolean;
}

export function initCommand(ctx: Context): Command {
  return withJson(
    new Command('init')
      .description(
        'set up this host: directories, signing keys, config file, database indexes, rendered configs',
      )
      .option('--root <dir>', 'put everything under this directory (default: /etc, /var/lib, /var/log, /run)')
      .option('-y, --yes', 'use defaults for everything not given as a flag (no prompts)')
      .option('--mongodb-url <url>', 'MongoDB URL (database.url)')
      .option('--database-name <name>', 'database name (database.name)')
      .option('--content-port <port>', "Apache's public content port (apache.content_port)")
      .option(
        '--streamer-port <port>',
        "Apache's streamer port, where redirects point (apache.streamer_port)",
      )
      .option('--listen-host <ip>', "Apache's listen address (apache.listen_host)")
      .option('--content-listen <addr>', 'content daemon address (content.listen)')
      .option('--streamer-listen <addr>', 'streamer daemon address (streamer.listen)')
      .option('--authorizer-listen <addr>', 'FastCGI authorizer address (apache.authorizer_listen)')
      .option('--squid-port <port>', 'Squid port (squid.port)')
      .option('--serve-listen <addr>', 'all-in-one server address (serve.listen)')
      .option('--proxy-cache <kind>', 'squid or none (proxy.cache)')
      .option('--skip-db', 'do not create the MongoDB indexes now')
      .option('--skip-check', 'do not run apache2 -t / squid -k parse on the rendered configs')
      .option('--force', 'rewrite files whose contents differ from these answers')
      .option('--rotate-keys', 'with --force: replace the signing keys'),
  ).action(async (f: Flags) => {
    if (f.proxyCache !== undefined && f.proxyCache !== 'squid' && f.proxyCache !== 'none') {
      throw new UsageError(`--proxy-cache: "${f.proxyCache}" is not squid or none`);
    }
    const opts: InitOptions = {
      root: f.root,
      mongodbUrl: f.mongodbUrl,
      databaseName: f.databaseName,
      contentPort: portFlag('--content-port', f.contentPort),
      streamerPort: portFlag('--streamer-port', f.streamerPort),
      listenHost: f.listenHost,
      contentListen: f.contentListen,
      streamerListen: f.streamerListen,
      authorizerListen: f.authorizerListen,
      squidPort: portFlag('--squid-port', f.squidPort),
      serveListen: f.serveListen,
      proxyCache: f.proxyCache,
      skipDb: f.skipDb,
      skipCheck: f.skipCheck,
      force: f.force,
      rotateKeys: f.rotateKeys,
    };
    if (!f.yes) {
      if (process.stdin.isTTY && process.stdout.isTTY) await prompt(opts);
      else ctx.out.err('pulp-lazy: not a terminal: using defaults for everything not given (as with --yes)');
    }
    const r = await runInit(opts, f.json ? undefined : (l) => ctx.out.line(l)).catch((err: unknown) => {
      if (err instanceof InitError) for (const d of err.details) ctx.out.err(d);
      throw err;
    });
    if (f.json) {
      const { config: _c, ...rest } = r;
      ctx.out.json(rest);
      return;
    }
    if (r.dirsCreated.length) ctx.out.line(`created ${r.dirsCreated.length} directories`);
    ctx.out.line(`signing keys: ${r.keys} (${r.config.paths.keys})`);
    for (const c of r.configChanges) ctx.out.line(`changed ${c}`);
    ctx.out.line(`database indexes: ${r.indexes === 'created' ? 'in place' : 'skipped (--skip-db)'}`);
    for (const c of r.checks) {
      const v = c.ok === null ? 'not checked' : c.ok ? 'ok' : 'FAILED';
      ctx.out.line(`${c.file}: ${v} (${c.tool})${c.message && !c.ok ? `: ${c.message}` : ''}`);
    }
    ctx.out.line(r.changed ? 'init: done' : 'init: nothing changed (already set up with these answers)');
    const cfg = r.configPath === '/etc/pulp-lazy/config.toml' ? '' : ` --config ${r.configPath}`;
    ctx.out.line('');
    ctx.out.line('next steps:');
    ctx.out.line(`  pulp-lazy${cfg} start all`);
    ctx.out.line(`  pulp-lazy${cfg} repo create NAME --type file --feed URL && pulp-lazy${cfg} sync NAME`);
    const host = r.config.apache.listen_host || 'localhost';
    ctx.out.line(
      `  curl -L http://${host}:${r.config.apache.content_port}/pulp/repos/NAME/PATH   (deb: /pulp/deb/NAME/...)`,
    );
    ctx.out.line(`  pulp-lazy${cfg} top`);
    const rendered = renderedDir(f.root);
    ctx.out.line('');
    ctx.out.line('or, under systemd instead of "start" (units written to the rendered dir):');
    ctx.out.line(`  cp ${rendered}/systemd/pulp-lazy-* /etc/systemd/system/ && systemctl daemon-reload`);
    ctx.out.line(`  systemctl enable --now ${SYSTEMD_SERVICES.join(' ')}`);
    ctx.out.line('  (or enable pulp-lazy-sweep.timer in place of pulp-lazy-scheduler)');
    ctx.out.line(
      `  Apache and Squid run from ${rendered}/httpd.conf and ${rendered}/squid.conf (pulp-lazy-proxies); ` +
        'a system Apache can Include the httpd.conf vhosts instead',
    );
    if (r.checks.some((c) => c.ok === false)) {
      throw new PulpLazyError('PL_CONFIG_CHECK', 'a rendered config failed its syntax check (see above)');
    }
  });
}

async function prompt(opts: InitOptions): Promise<void> {
  const d = defaultConfig();
  const rl = createInterface({ input: process.stdin, output: process.stdout });
  try {
    const ask = async (q: string, def: string) => (await rl.question(`${q} [${def}]: `)).trim() || def;
    opts.mongodbUrl ??= await ask('MongoDB URL', d.database.url);
    opts.contentPort ??= portFlag(
      'content port',
      await ask('public content port', String(d.apache.content_port)),
    );
    opts.streamerPort ??= portFlag(
      'streamer port',
      await ask('streamer port', String(d.apache.streamer_port)),
    );
  } finally {
    rl.close();
  }
}
