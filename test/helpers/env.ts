/** A temp root with a config file whose paths all live under it, and a unique database. */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import { type Config, parseConfig, rootedPaths } from '../../src/config.ts';
import { mongoUrl } from './db.ts';

export interface TestEnv {
  root: string;
  configPath: string;
  config: Config;
  dbName: string;
  /** Environment for spawned CLI processes. */
  env: NodeJS.ProcessEnv;
}

let n = 0;

/** A config file's text: one TOML table per section, values as JSON literals (TOML accepts them). */
export function toToml(obj: Record<string, Record<string, unknown>>): string {
  const lines: string[] = [];
  for (const [section, values] of Object.entries(obj)) {
    lines.push(`[${section}]`);
    for (const [k, v] of Object.entries(values)) lines.push(`${k} = ${JSON.stringify(v)}`);
    lines.push('');
  }
  return lines.join('\n');
}

/** Creates the temp root and config; `extra` adds or overrides sections. */
export async function testEnv(
  label: string,
  extra: Record<string, Record<string, unknown>> = {},
): Promise<TestEnv> {
  const root = await mkdtemp(path.join(tmpdir(), `pulp-lazy-${label}-`));
  const dbName = `t_${label.replace(/[^A-Za-z0-9]/g, '_').slice(0, 20)}_${process.pid}_${n++}`;
  const sections: Record<string, Record<string, unknown>> = {
    database: { name: dbName },
    paths: { ...rootedPaths(root) },
    log: { level: 'warn' },
    // A re-sync's dropped files go at once (the default keeps them a day); test/keep-previous-clients.test.ts sets its own.
    publish: { keep_previous: '0s' },
  };
  for (const [k, v] of Object.entries(extra)) sections[k] = { ...(sections[k] ?? {}), ...v };
  const configPath = path.join(root, 'config.toml');
  await writeFile(configPath, toToml(sections));
  const env = { ...process.env, MONGODB_URL: mongoUrl(), PULP_LAZY_CONFIG: configPath };
  const config = parseConfig(JSON.parse(JSON.stringify(sections)), configPath, env);
  after(async () => {
    await rm(root, { recursive: true, force: true });
  });
  return { root, configPath, config, dbName, env };
}
