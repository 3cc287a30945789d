/**
 * The syntax check of the rendered configs (`pulp-lazy config check`, `init`):
 * each file goes through its own program's parser, `apache2 -t` and
 * `squid -k parse`.
 */
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import type { Config } from '../config.ts';
import { oneLine } from '../errors.ts';
import { findBinary } from '../util/process.ts';
import { APACHE_CONF, renderAll, SQUID_CONF } from './index.ts';
import { detectApachePlatform } from './platform.ts';

export interface CheckResult {
  file: string;
  tool: string;
  ok: boolean | null;
  /** Tool output worth showing (errors, warnings), or why the check was skipped. */
  message: string;
}

/**
 * Renders the configs into a temporary directory and checks each with its
 * program's own parser. Run-time and log directories are redirected into the
 * temporary directory (Apache's -t insists that they exist); everything else
 * is checked as configured. A missing program gives ok = null.
 */
export async function checkConfigs(config: Config): Promise<CheckResult[]> {
  const tmp = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-check-'));
  try {
    const run = path.join(tmp, 'run');
    const logs = path.join(tmp, 'logs');
    const probe: Config = { ...config, paths: { ...config.paths, run, logs } };
    for (const d of ['apache', 'squid']) {
      await mkdir(path.join(run, d), { recursive: true });
      await mkdir(path.join(logs, d), { recursive: true });
    }
    const platform = detectApachePlatform();
    const files = renderAll(probe, { apache: platform });
    const results: CheckResult[] = [];
    for (const [name, text] of Object.entries(files)) {
      const file = path.join(tmp, name);
      await writeFile(file, text);
      if (name === APACHE_CONF)
        results.push(await runCheck(name, platform.bin, ['-t', '-f', file], /Syntax OK/));
      if (name === SQUID_CONF) results.push(await runCheck(name, 'squid', ['-k', 'parse', '-f', file]));
    }
    return results;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

async function runCheck(
  file: string,
  program: string,
  args: string[],
  okLine?: RegExp,
): Promise<CheckResult> {
  const bin = findBinary([program]);
  const tool = `${program} ${args.slice(0, -2).join(' ')}`.trim();
  if (!bin) return { file, tool, ok: null, message: `${program} is not installed` };
  const r = await execa(bin, args, { reject: false, stdin: 'ignore', timeout: 60_000, all: true });
  const lines = (r.all ?? '')
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !/Processing|Startup:|Initializ|proxy context/.test(l));
  const ok = r.exitCode === 0 && (!okLine || okLine.test(r.all ?? ''));
  const notes = lines.filter((l) => !(okLine?.test(l) ?? false));
  return { file, tool, ok, message: oneLine(notes.join('; ')) };
}
