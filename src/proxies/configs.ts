/**
 * Writes the rendered Apache and Squid configs into their layout
 * (src/render/layout.ts) before every start, with the directories they name.
 * The only execa user among the proxies' helpers besides the start and stop
 * themselves: `id` gives Squid's system user.
 */
import { chmod, chown, mkdir, rename, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { execa } from 'execa';
import type { Config } from '../config.ts';
import { APACHE_CONF, detectApachePlatform, proxyLayout, renderAll, SQUID_CONF } from '../render/index.ts';
import { ProxyError } from './errors.ts';

/**
 * Renders the configs into the layout, creates the directories, and (when
 * running as root) gives Squid's directories to squid.user. Returns the files written.
 */
export async function writeProxyConfigs(config: Config, apache = detectApachePlatform()): Promise<string[]> {
  const layout = proxyLayout(config.paths);
  const files = renderAll(config, { apache });
  await mkdirs([layout.apacheDir, layout.apacheLogDir]);
  const written = [layout.apacheConf];
  await writeConf(layout.apacheConf, files[APACHE_CONF]!);
  if (files[SQUID_CONF] !== undefined) {
    const squidDirs = [layout.squidDir, layout.squidLogDir, layout.squidCacheDir];
    await mkdirs(squidDirs);
    await writeConf(layout.squidConf, files[SQUID_CONF]);
    written.push(layout.squidConf);
    if (process.getuid?.() === 0) {
      const { uid, gid } = await userIds(config.squid.user);
      for (const d of squidDirs) await chown(d, uid, gid);
      for (const f of ['access.log', 'cache.log'])
        await chown(path.join(layout.squidLogDir, f), uid, gid).catch(() => {});
    }
  }
  return written;
}

async function mkdirs(dirs: string[]): Promise<void> {
  for (const d of dirs) {
    await mkdir(d, { recursive: true, mode: 0o755 });
    await chmod(d, 0o755);
  }
}

async function writeConf(file: string, text: string): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  await writeFile(tmp, text, { mode: 0o644 });
  await chmod(tmp, 0o644);
  await rename(tmp, file);
}

/** uid and gid of a system user (for chown when running as root). */
export async function userIds(user: string): Promise<{ uid: number; gid: number }> {
  const r = await execa('id', [user], { reject: false });
  const uid = /uid=(\d+)/.exec(r.stdout)?.[1];
  const gid = /gid=(\d+)/.exec(r.stdout)?.[1];
  if (r.exitCode !== 0 || uid === undefined || gid === undefined) {
    throw new ProxyError('PL_PROXY_USER', `system user "${user}" does not exist`);
  }
  return { uid: Number(uid), gid: Number(gid) };
}
