/**
 * Real package managers as the tests run them: dnf and apt-get with private
 * configurations (the machine's settings, sources and proxies stay out),
 * each in a work directory of its own.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa, type Result } from 'execa';

/** The environment of client processes: no proxy from the machine. */
export function clientEnv(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const k of Object.keys(env)) if (/_proxy$/i.test(k)) delete env[k];
  return env;
}

/**
 * A private dnf for the yum repository at `baseurl`, its cache in `work`:
 * returns a runner of `dnf ARGS` (resolved with dnf's result, not rejected on
 * failure). `metadataExpire` is the repository's metadata_expire (default 0:
 * repomd.xml read again on every run; "-1": the cached metadata used as is).
 */
export async function privateDnf(
  work: string,
  baseurl: string,
  timeout: number,
  opts: { metadataExpire?: string } = {},
): Promise<(args: string[]) => Promise<Result>> {
  const conf = path.join(work, 'dnf.conf');
  await mkdir(work, { recursive: true });
  await writeFile(
    conf,
    [
      '[main]',
      `cachedir=${path.join(work, 'cache')}`,
      `logdir=${path.join(work, 'log')}`,
      `persistdir=${path.join(work, 'persist')}`,
      `reposdir=${path.join(work, 'no-repos.d')}`,
      'gpgcheck=0',
      'plugins=0',
      'install_weak_deps=0',
      '',
      '[pulp-lazy-el]',
      'name=pulp-lazy el',
      `baseurl=${baseurl}`,
      'enabled=1',
      'gpgcheck=0',
      `metadata_expire=${opts.metadataExpire ?? '0'}`,
      '',
    ].join('\n'),
  );
  return (args) =>
    execa('dnf', ['-c', conf, `--installroot=${path.join(work, 'root')}`, '--releasever=1', '-y', ...args], {
      env: clientEnv(),
      reject: false,
      timeout,
    });
}

/**
 * `dnf install --downloadonly PKG` from the yum repository at `baseurl`,
 * into `<work>/dl` (privateDnf); resolves with dnf's result (not rejected on failure).
 */
export async function dnfDownload(
  work: string,
  baseurl: string,
  pkg: string,
  timeout: number,
  opts: { metadataExpire?: string } = {},
): Promise<{ result: Result; dl: string }> {
  const dl = path.join(work, 'dl');
  const dnf = await privateDnf(work, baseurl, timeout, opts);
  return { result: await dnf(['--downloadonly', `--downloaddir=${dl}`, 'install', pkg]), dl };
}

/**
 * A private apt-get for one `sources.list` line: APT_CONFIG is read before
 * apt.conf.d, so the machine's settings and sources stay out. Returns a
 * runner of `apt-get -q ARGS` (in `work` unless told) and the download dir.
 */
export async function privateApt(
  work: string,
  source: string,
  timeout: number,
): Promise<{ apt: (args: string[], cwd?: string) => Promise<Result>; dl: string }> {
  const empty = path.join(work, 'empty');
  for (const d of [empty, 'state/lists/partial', 'cache/archives/partial', 'log', 'dl']) {
    await mkdir(path.isAbsolute(d) ? d : path.join(work, d), { recursive: true });
  }
  await writeFile(path.join(work, 'status'), '');
  await writeFile(path.join(work, 'sources.list'), `${source}\n`);
  const aptConf = path.join(work, 'apt.conf');
  await writeFile(
    aptConf,
    [
      `Dir::Etc::parts "${empty}";`,
      `Dir::Etc::main "${path.join(empty, 'none.conf')}";`,
      `Dir::Etc::sourcelist "${path.join(work, 'sources.list')}";`,
      `Dir::Etc::sourceparts "${empty}";`,
      `Dir::Etc::preferencesparts "${empty}";`,
      `Dir::Etc::trustedparts "${empty}";`,
      `Dir::State "${path.join(work, 'state')}";`,
      `Dir::State::status "${path.join(work, 'status')}";`,
      `Dir::Cache "${path.join(work, 'cache')}";`,
      `Dir::Log "${path.join(work, 'log')}";`,
      'APT::Architecture "amd64";',
      'APT::Architectures { "amd64"; };',
      'APT::Sandbox::User "root";',
      'Debug::NoLocking "true";',
      'Acquire::Languages "none";',
      'Acquire::http::Proxy "DIRECT";',
      '',
    ].join('\n'),
  );
  const apt = (args: string[], cwd = work) =>
    execa('apt-get', ['-q', ...args], {
      env: { ...clientEnv(), APT_CONFIG: aptConf },
      cwd,
      reject: false,
      timeout,
    });
  return { apt, dl: path.join(work, 'dl') };
}
