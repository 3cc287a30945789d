/**
 * `pulp-lazy config render|check|show`: the Apache and Squid configs generated
 * from the pulp-lazy config, their syntax check, and the effective config.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { Command } from 'commander';
import { stringify } from 'smol-toml';
import { type Config, parseConfig } from '../config.ts';
import { PulpLazyError } from '../errors.ts';
import { checkConfigs } from '../render/check.ts';
import { detectApachePlatform, renderAll } from '../render/index.ts';
import { type Context, withJson } from './context.ts';

export function configCommand(ctx: Context): Command {
  const cmd = new Command('config').description(
    'the effective configuration and the generated Apache/Squid configs',
  );

  cmd
    .command('render')
    .description('render the Apache (and Squid) configs; without --out, print them')
    .option('--out <dir>', 'write the files into this directory and print their paths')
    .action(async (opts: { out?: string }) => {
      const files = renderAll(ctx.config(), { apache: detectApachePlatform() });
      if (!opts.out) {
        for (const [name, text] of Object.entries(files)) {
          ctx.out.line(`# ==> ${name} <==`);
          ctx.out.line(text.replace(/\n$/, ''));
          ctx.out.line();
        }
        return;
      }
      const dir = path.resolve(opts.out);
      await mkdir(dir, { recursive: true });
      for (const [name, text] of Object.entries(files)) {
        const file = path.join(dir, name);
        await writeFile(file, text);
        ctx.out.line(file);
      }
    });

  withJson(
    cmd
      .command('check')
      .description(
        'render into a temporary directory and run "apache2 -t" and "squid -k parse" on the result',
      )
      .action(async (opts: { json?: boolean }) => {
        const results = await checkConfigs(ctx.config());
        if (opts.json) ctx.out.json(results);
        else {
          for (const r of results) {
            const verdict = r.ok === null ? 'skipped' : r.ok ? 'ok' : 'FAILED';
            ctx.out.line(`${r.file}: ${verdict} (${r.tool})${r.message ? `: ${r.message}` : ''}`);
          }
        }
        const failed = results.filter((r) => r.ok === false);
        if (failed.length) {
          throw new PulpLazyError(
            'PL_CONFIG_CHECK',
            `${failed.map((r) => r.file).join(', ')} failed the syntax check`,
          );
        }
      }),
  );

  withJson(
    cmd
      .command('show')
      .description('print the effective configuration (file values over defaults), durations as "…ms"')
      .action((opts: { json?: boolean }) => {
        const { source, ...config } = ctx.config();
        if (opts.json) {
          ctx.out.json({ source, config });
          return;
        }
        ctx.out.line(`# effective configuration (source: ${source ?? 'defaults only'})`);
        ctx.out.line(stringify(durationsAsText(config)).trimEnd());
      }),
  );
  return cmd;
}

/** Duration values (held in ms) as "90000ms" strings, so the printed TOML reads back the same. */
function durationsAsText(config: Config): Record<string, unknown> {
  const out: Record<string, Record<string, unknown>> = {};
  for (const [section, values] of Object.entries(
    config as unknown as Record<string, Record<string, unknown>>,
  )) {
    out[section] = {};
    for (const [key, value] of Object.entries(values)) {
      out[section][key] = typeof value === 'number' && isDuration(section, key, value) ? `${value}ms` : value;
    }
  }
  return out;
}

/** A key is a duration when the schema accepts "<n>ms" for it and reads it back as n. */
function isDuration(section: string, key: string, value: number): boolean {
  try {
    const parsed = parseConfig({ [section]: { [key]: `${value}ms` } }, 'probe', {}) as unknown as Record<
      string,
      Record<string, unknown>
    >;
    return parsed[section]?.[key] === value;
  } catch {
    return false;
  }
}
