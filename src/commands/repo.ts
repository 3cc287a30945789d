import { Command, Option } from 'commander';
import type { RepoDoc } from '../db/index.ts';
import { buildRepo, createRepo, deleteRepo, getRepo, listRepos, REPO_TYPES } from '../repos/index.ts';
import { type Context, withJson } from './context.ts';

/** A repository as shown to operators (no key material). */
export function describeRepo(r: RepoDoc, counts?: { units: number; downloaded: number }) {
  return {
    name: r._id,
    type: r.type,
    feed: r.feed,
    published_path: r.published_path,
    protected: Boolean(r.protection),
    upstream: {
      ca_cert: Boolean(r.upstream.ca_cert),
      client_cert: Boolean(r.upstream.client_cert),
      tls_verify: r.upstream.tls_verify,
      proxy: r.upstream.proxy_url ? r.upstream.proxy_url.replace(/\/\/[^@/]*@/, '//***@') : null,
      basic_auth: r.upstream.basic_auth ? r.upstream.basic_auth.username : null,
    },
    options: r.options ?? {},
    last_sync: r.last_sync ?? null,
    ...(counts ?? {}),
  };
}

export function repoCommand(ctx: Context): Command {
  const repo = new Command('repo').description('create, list, show and delete repositories');

  withJson(
    repo
      .command('create <name>')
      .description('create a repository (nothing is downloaded until "sync")')
      .addOption(
        new Option('--type <type>', 'repository type').choices([...REPO_TYPES]).makeOptionMandatory(),
      )
      .requiredOption('--feed <url>', 'upstream URL of the repository')
      .option('--ca-cert <file>', 'CA bundle (PEM) that signs the feed certificate')
      .option('--client-cert <file>', 'TLS client certificate (PEM) for the feed')
      .option('--client-key <file>', 'TLS client key (PEM) for the feed')
      .option('--no-tls-verify', 'do not verify the feed certificate')
      .option('--proxy <url>', 'HTTP proxy for the feed')
      .option('--basic-auth <user:pass>', 'basic auth credentials for the feed')
      .option(
        '--protect-ca <file>',
        'require client certificates signed by this CA (PEM) to serve the repository',
      )
      .option('--published-path <path>', 'path below /pulp/content/ (default: the name)')
      .option('--dists <list>', 'deb: comma-separated distributions')
      .option('--components <list>', 'deb: comma-separated components')
      .option('--architectures <list>', 'deb: comma-separated architectures'),
  ).action(async (name: string, o: Record<string, string | boolean | undefined>) => {
    const list = (v: unknown) =>
      typeof v === 'string'
        ? v
            .split(',')
            .map((s) => s.trim())
            .filter(Boolean)
        : undefined;
    const options: Record<string, unknown> = {};
    for (const k of ['dists', 'components', 'architectures'] as const) if (o[k]) options[k] = list(o[k]);
    const doc = await buildRepo({
      name,
      type: String(o.type),
      feed: String(o.feed),
      caCertFile: o.caCert as string | undefined,
      clientCertFile: o.clientCert as string | undefined,
      clientKeyFile: o.clientKey as string | undefined,
      tlsVerify: o.tlsVerify as boolean | undefined,
      proxy: o.proxy as string | undefined,
      basicAuth: o.basicAuth as string | undefined,
      protectCaFile: o.protectCa as string | undefined,
      publishedPath: o.publishedPath as string | undefined,
      options: Object.keys(options).length ? options : undefined,
    });
    await createRepo(await ctx.db(), doc);
    if (o.json) ctx.out.json(describeRepo(doc));
    else
      ctx.out.line(
        `created ${doc.type} repository "${doc._id}" (feed ${doc.feed}); run "pulp-lazy sync ${doc._id}"`,
      );
  });

  withJson(repo.command('list').description('list repositories')).action(async (o: { json?: boolean }) => {
    const db = await ctx.db();
    const repos = await listRepos(db);
    if (o.json) return ctx.out.json(repos.map((r) => describeRepo(r)));
    if (!repos.length) return ctx.out.line('no repositories');
    for (const r of repos) {
      const synced = r.last_sync ? `synced ${r.last_sync.finished_at.toISOString()}` : 'never synced';
      ctx.out.line(`${r._id}\t${r.type}\t${r.feed}\t${synced}`);
    }
  });

  withJson(repo.command('show <name>').description('show one repository')).action(
    async (name: string, o: { json?: boolean }) => {
      const db = await ctx.db();
      const r = await getRepo(db, name);
      const ids = await db.repoContentUnits.distinct('unit_id', { repo_id: r._id });
      const downloaded = ids.length
        ? await db.units.countDocuments({ _id: { $in: ids }, downloaded: true })
        : 0;
      const info = describeRepo(r, { units: ids.length, downloaded });
      if (o.json) return ctx.out.json(info);
      for (const [k, v] of Object.entries(info))
        ctx.out.line(`${k}: ${typeof v === 'object' ? JSON.stringify(v) : v}`);
    },
  );

  withJson(repo.command('delete <name>').description('delete a repository (stored files are kept)')).action(
    async (name: string, o: { json?: boolean }) => {
      await deleteRepo(await ctx.db(), name, ctx.config().paths.published);
      if (o.json) ctx.out.json({ deleted: name });
      else ctx.out.line(`deleted repository "${name}"`);
    },
  );
  return repo;
}
