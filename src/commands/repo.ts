import { Command, Option } from 'commander';
import { DOWNLOAD_POLICIES, type RepoDoc } from '../db/index.ts';
import { UsageError } from '../errors.ts';
import {
  buildRepo,
  createRepo,
  deleteRepo,
  getRepo,
  listRepos,
  REPO_TYPES,
  updateRepo,
} from '../repos/index.ts';
import { type RepoSettingsInput, shownHeader } from '../repos/settings.ts';
import { type SyncTiming, type SyncView, syncTiming, syncView } from '../scheduler/plan.ts';
import { describeRemote, readRemoteHealth, remoteOf } from '../upstream/health.ts';
import { formatExactDuration } from '../util/duration.ts';
import { type Context, withJson } from './context.ts';

/**
 * A repository as shown to operators (no key material); `sync` is its schedule: the last
 * sync's time, result and duration, whoever ran it, failures in a row and the next one.
 */
export function describeRepo(r: RepoDoc, timing: SyncTiming, counts?: { units: number; downloaded: number }) {
  return {
    name: r._id,
    type: r.type,
    feed: r.feed,
    published_path: r.published_path,
    protected: Boolean(r.protection),
    signed_metadata: Boolean(r.gpg_key),
    upstream: {
      ca_cert: Boolean(r.upstream.ca_cert),
      client_cert: Boolean(r.upstream.client_cert),
      tls_verify: r.upstream.tls_verify,
      proxy: r.upstream.proxy_url ? r.upstream.proxy_url.replace(/\/\/[^@/]*@/, '//***@') : null,
      basic_auth: r.upstream.basic_auth ? r.upstream.basic_auth.username : null,
      headers: (r.upstream.headers ?? []).map(shownHeader),
      max_connections: r.upstream.max_connections ?? null,
      rate_limit: r.upstream.rate_limit ?? null,
    },
    options: r.options ?? {},
    policy: r.policy ?? 'on_demand',
    sync_interval: r.sync_interval_ms ? formatExactDuration(r.sync_interval_ms) : 'off',
    last_sync: r.last_sync ?? null,
    sync: syncView(r, Date.now(), timing),
    ...(counts ?? {}),
  };
}

export function repoCommand(ctx: Context): Command {
  const repo = new Command('repo').description('create, list, show and delete repositories');

  withJson(
    settingOptions(
      repo
        .command('create <name>')
        .description('create a repository (nothing is downloaded until "sync")')
        .addOption(
          new Option('--type <type>', 'repository type').choices([...REPO_TYPES]).makeOptionMandatory(),
        )
        .requiredOption('--feed <url>', 'upstream URL of the repository'),
      'on_demand',
    ).option('--published-path <path>', 'path below /pulp/content/ (default: the name)'),
  ).action(async (name: string, o: Record<string, unknown>) => {
    const doc = await buildRepo({
      ...settingsInput(o),
      name,
      type: String(o.type),
      feed: String(o.feed),
      publishedPath: o.publishedPath as string | undefined,
    });
    await createRepo(await ctx.db(), doc);
    if (o.json) ctx.out.json(describeRepo(doc, syncTiming(ctx.config())));
    else
      ctx.out.line(
        `created ${doc.type} repository "${doc._id}" (feed ${doc.feed}); run "pulp-lazy sync ${doc._id}"`,
      );
  });

  withJson(
    settingOptions(
      repo
        .command('update <name>')
        .description(
          'change settings of a repository (in use by running daemons within seconds; the policy at the next sync)',
        )
        .option('--feed <url>', 'upstream URL of the repository (the catalog is kept until the next sync)')
        .option('--tls-verify', 'verify the feed certificate again'),
    ),
  ).action(async (name: string, o: Record<string, unknown>) => {
    const input = settingsInput(o);
    if (Object.values(input).every((v) => v === undefined)) {
      throw new UsageError(
        'nothing to change: give at least one setting (see "pulp-lazy repo update --help")',
      );
    }
    const doc = await updateRepo(await ctx.db(), name, input);
    if (o.json) ctx.out.json(describeRepo(doc, syncTiming(ctx.config())));
    else ctx.out.line(`updated repository "${doc._id}"`);
  });

  withJson(repo.command('list').description('list repositories')).action(async (o: { json?: boolean }) => {
    const db = await ctx.db();
    const [repos, remotes] = await Promise.all([listRepos(db), readRemoteHealth(db)]);
    const timing = syncTiming(ctx.config());
    // Each repository's feed health (src/upstream/health.ts): ok, failing or blocked.
    if (o.json)
      return ctx.out.json(
        repos.map((r) => ({ ...describeRepo(r, timing), remote: remoteOf(r.feed, remotes) })),
      );
    if (!repos.length) return ctx.out.line('no repositories');
    for (const r of repos) {
      const remote = remoteOf(r.feed, remotes);
      ctx.out.line(
        `${r._id}\t${r.type}\t${r.policy ?? 'on_demand'}\t${r.feed}\t${syncSummary(syncView(r, Date.now(), timing))}` +
          (remote.state === 'ok' ? '' : `\tremote ${describeRemote(remote)}`),
      );
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
      const info = describeRepo(r, syncTiming(ctx.config()), { units: ids.length, downloaded });
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

/** `repo list`'s sync column: last sync (time, result, duration), failures, next one. */
function syncSummary(v: SyncView): string {
  const last =
    v.last_result === 'running'
      ? `syncing since ${v.last_started_at}`
      : v.last_finished_at
        ? `last sync ${v.last_finished_at} ${v.last_result} in ${formatSeconds(v.last_duration_ms ?? 0)}`
        : 'never synced';
  const failures = v.failures > 0 ? `, ${v.failures} failed in a row` : '';
  const next = v.next_at ? `, next ${v.next_at} (${v.next_reason})` : '';
  return `${last}${failures}${next}`;
}

const formatSeconds = (ms: number) => `${(ms / 1000).toFixed(1)}s`;

const collect = (v: string, prev: string[] | undefined) => [...(prev ?? []), v];

/** The settings `repo create` and `repo update` share ('' clears an optional one on update). */
function settingOptions(cmd: Command, defaultPolicy?: string): Command {
  const policy = new Option('--policy <policy>', 'download policy').choices([...DOWNLOAD_POLICIES]);
  return cmd
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
    .option('--dists <list>', 'deb: comma-separated distributions')
    .option('--components <list>', 'deb: comma-separated components')
    .option('--architectures <list>', 'deb: comma-separated architectures')
    .addOption(defaultPolicy ? policy.default(defaultPolicy) : policy)
    .option(
      '--header <header>',
      "request header for the feed, 'Name: value' ('Name:' removes; repeatable)",
      collect,
    )
    .option('--max-connections <n>', "most connections to the feed's host at once, per process (0: default)")
    .option('--rate-limit <n>', 'most requests per second to the feed, per process (0 or off: none)')
    .option('--sync-interval <duration>', 'sync every DURATION (e.g. 6h), or off')
    .option(
      '--gpg-key <file>',
      "OpenPGP public key: a sync checks the upstream metadata's signature with gpgv",
    );
}

function settingsInput(o: Record<string, unknown>): RepoSettingsInput {
  const str = (v: unknown) => (typeof v === 'string' ? v : undefined);
  const list = (v: unknown) =>
    typeof v === 'string'
      ? v
          .split(',')
          .map((s) => s.trim())
          .filter(Boolean)
      : undefined;
  const options: Record<string, unknown> = {};
  for (const k of ['dists', 'components', 'architectures'] as const)
    if (o[k] !== undefined) options[k] = list(o[k]);
  return {
    feed: str(o.feed),
    caCertFile: str(o.caCert),
    clientCertFile: str(o.clientCert),
    clientKeyFile: str(o.clientKey),
    tlsVerify: o.tlsVerify as boolean | undefined,
    proxy: str(o.proxy),
    basicAuth: str(o.basicAuth),
    protectCaFile: str(o.protectCa),
    options: Object.keys(options).length ? options : undefined,
    policy: str(o.policy),
    headers: o.header as string[] | undefined,
    maxConnections: str(o.maxConnections),
    rateLimit: str(o.rateLimit),
    syncInterval: str(o.syncInterval),
    gpgKeyFile: str(o.gpgKey),
  };
}
