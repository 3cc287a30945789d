/**
 * Every top-level command, in the order `pulp-lazy --help` lists them.
 *
 * Each command's module is loaded only when that command runs (a daemon
 * does not carry the importers, the TUI or the init code): `commandsFor`
 * loads the one named on the command line, or all of them for the
 * top-level help, an unknown name (for suggestions) or no command.
 */
import type { Command } from 'commander';
import type { Context } from './context.ts';

interface CommandModule {
  /** The top-level command names the module defines. */
  names: readonly string[];
  load(ctx: Context): Promise<Command[]>;
}

const COMMANDS: readonly CommandModule[] = [
  { names: ['demo'], load: async (c) => [(await import('./demo.ts')).demoCommand(c)] },
  { names: ['init'], load: async (c) => [(await import('./init.ts')).initCommand(c)] },
  {
    names: ['start', 'stop', 'restart', 'status'],
    load: async (c) => (await import('./lifecycle.ts')).lifecycleCommands(c),
  },
  // Hidden (HIDDEN_COMMANDS): what `start` runs for each daemon, and Apache's piped logger of fast-path hits.
  { names: ['supervise'], load: async (c) => [(await import('./supervise.ts')).superviseCommand(c)] },
  { names: ['access-log'], load: async (c) => [(await import('./access-log.ts')).accessLogCommand(c)] },
  { names: ['top'], load: async (c) => [(await import('./top.tsx')).topCommand(c)] },
  { names: ['repo'], load: async (c) => [(await import('./repo.ts')).repoCommand(c)] },
  { names: ['sync'], load: async (c) => [(await import('./sync.ts')).syncCommand(c)] },
  { names: ['sweep'], load: async (c) => [(await import('./sweep.ts')).sweepCommand(c)] },
  {
    names: ['download-repo'],
    load: async (c) => [(await import('./download-repo.ts')).downloadRepoCommand(c)],
  },
  { names: ['orphans'], load: async (c) => [(await import('./orphans.ts')).orphansCommand(c)] },
  { names: ['reclaim'], load: async (c) => [(await import('./reclaim.ts')).reclaimCommand(c)] },
  { names: ['queue'], load: async (c) => [(await import('./queue.ts')).queueCommand(c)] },
  { names: ['schedule'], load: async (c) => [(await import('./schedule.ts')).scheduleCommand(c)] },
  { names: ['keys'], load: async (c) => [(await import('./keys.ts')).keysCommand(c)] },
  { names: ['url'], load: async (c) => [(await import('./url.ts')).urlCommand(c)] },
  { names: ['serve'], load: async (c) => [(await import('./serve.ts')).serveCommand(c)] },
  { names: ['run'], load: async (c) => [(await import('./run.ts')).runCommand(c)] },
  { names: ['proxies'], load: async (c) => [(await import('./proxies.ts')).proxiesCommand(c)] },
  { names: ['config'], load: async (c) => [(await import('./config.ts')).configCommand(c)] },
  { names: ['db'], load: async (c) => [(await import('./db.ts')).dbCommand(c)] },
  { names: ['devdb'], load: async (c) => [(await import('./devdb.ts')).devdbCommand(c)] },
];

/** Commands `--help` does not list: internal to pulp-lazy. */
export const HIDDEN_COMMANDS: ReadonlySet<string> = new Set(['supervise', 'access-log']);

/** Global options that take a value (their value is not the command name). */
const VALUE_OPTIONS = new Set(['-c', '--config']);

/** The command named in `argv` (user arguments), skipping global options; undefined when none. */
export function commandName(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (VALUE_OPTIONS.has(a)) i++;
    else if (!a.startsWith('-')) return a;
  }
  return undefined;
}

/** The commands to register for `argv`: the one it names, or all (help, version, unknown names). */
export async function commandsFor(ctx: Context, argv: readonly string[]): Promise<Command[]> {
  const name = commandName(argv);
  // `--version` alone needs no command at all.
  if (name === undefined && (argv.includes('-V') || argv.includes('--version'))) return [];
  const named = COMMANDS.find((m) => name !== undefined && m.names.includes(name));
  const modules = named ? [named] : COMMANDS;
  return (await Promise.all(modules.map((m) => m.load(ctx)))).flat();
}
