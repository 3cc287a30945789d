import { Command } from 'commander';
import { generateKeys } from '../signing/index.ts';
import { type Context, withJson } from './context.ts';

/** `pulp-lazy keys generate`: the Ed25519 key pair for signed URLs, in paths.keys. */
export function keysCommand(ctx: Context): Command {
  const keys = new Command('keys').description('signing keys for the streamer redirect URLs');
  withJson(
    keys
      .command('generate')
      .description('create the Ed25519 key pair in paths.keys (existing keys are kept unless --force)')
      .option('--force', 'replace existing keys (outstanding signed URLs stop working)')
      .action(async (opts: { force?: boolean; json?: boolean }) => {
        const r = await generateKeys(ctx.config().paths.keys, { force: opts.force === true });
        if (opts.json) {
          ctx.out.json(r);
          return;
        }
        if (r.created) {
          ctx.out.line(`created private key ${r.privatePath} (mode 0600)`);
          ctx.out.line(`created public key ${r.publicPath}`);
        } else {
          ctx.out.line(`keys already exist, left unchanged (use --force to replace them):`);
          ctx.out.line(`  private key ${r.privatePath}`);
          ctx.out.line(`  public key ${r.publicPath}`);
        }
      }),
  );
  return keys;
}
