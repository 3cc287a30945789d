/**
 * The pulp-lazy command line: assembles the commands, parses, and maps
 * errors to one line on stderr and an exit code (2: usage/config, 1: failure).
 */
import { readFileSync } from 'node:fs';
import { Command, CommanderError } from 'commander';
import { createContext, type Output } from './commands/context.ts';
import { commandsFor, HIDDEN_COMMANDS } from './commands/index.ts';
import { oneLine, PulpLazyError } from './errors.ts';

export const VERSION: string = JSON.parse(
  readFileSync(new URL('../package.json', import.meta.url), 'utf8'),
).version;

/** Error messages longer than this are cut on stderr. */
const MAX_ERROR_CHARS = 1000;

/** The program with the commands `argv` needs (all of them when it names none; see commandsFor). */
export async function buildProgram(ctx: ReturnType<typeof createContext>, argv: string[]): Promise<Command> {
  const program = new Command('pulp-lazy')
    .description('Publish and serve yum, deb and file repositories before their content is downloaded.')
    .version(VERSION, '-V, --version', 'print the version')
    .option('-c, --config <path>', 'config file (default: $PULP_LAZY_CONFIG or /etc/pulp-lazy/config.toml)')
    .showSuggestionAfterError(true)
    .exitOverride()
    .configureOutput({
      outputError: (str, write) => write(`pulp-lazy: ${str.replace(/^error: /, '').trim()}\n`),
    });
  for (const cmd of await commandsFor(ctx, argv)) {
    program.addCommand(cmd, { hidden: HIDDEN_COMMANDS.has(cmd.name()) });
  }
  // Every subcommand reports usage errors in one line and exits 2.
  const harden = (c: Command) => {
    c.exitOverride().configureOutput({
      outputError: (str, write) => write(`pulp-lazy: ${str.replace(/^error: /, '').trim()}\n`),
    });
    c.commands.forEach(harden);
  };
  program.commands.forEach(harden);
  return program;
}

/** Runs the CLI and returns the exit code (never throws). */
export async function run(argv: string[], opts: { out?: Output } = {}): Promise<number> {
  let program: Command | undefined;
  const ctx = createContext({
    configPath: () => program?.opts().config as string | undefined,
    out: opts.out,
  });
  try {
    program = await buildProgram(ctx, argv);
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // --help and --version end this way with exit code 0.
      return err.exitCode === 0 ? 0 : 2;
    }
    const code = err instanceof PulpLazyError ? err.exitCode : 1;
    const message = oneLine(err);
    // A message quoting bad input (a megabyte-long manifest line) is cut: one readable line.
    process.stderr.write(
      `pulp-lazy: ${message.length > MAX_ERROR_CHARS ? `${message.slice(0, MAX_ERROR_CHARS)}…` : message}\n`,
    );
    if (process.env.PULP_LAZY_DEBUG && err instanceof Error) process.stderr.write(`${err.stack}\n`);
    return code;
  } finally {
    await ctx.close().catch(() => {});
  }
}
