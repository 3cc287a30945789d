/**
 * `pulp-lazy proxies start|stop|status`: the private Apache and Squid
 * instances (configs rendered under paths.run, see src/render/layout.ts).
 * The daemons behind them (content, streamer, authorizer) run separately
 * (`pulp-lazy run ...`); status also checks that the authorizer answers.
 */
import { Command } from 'commander';
import {
  type InstanceStatus,
  type ProxiesStatus,
  proxiesStatus,
  startProxies,
  stopProxies,
} from '../proxies/index.ts';
import { type Context, type Output, withJson } from './context.ts';

export function proxiesCommand(ctx: Context): Command {
  const cmd = new Command('proxies').description(
    'the private Apache and Squid instances in front of the daemons',
  );
  const deps = () => ({ logger: ctx.logger().child({ module: 'proxies' }) });

  withJson(
    cmd
      .command('start')
      .description('render the configs and start Squid (unless proxy.cache = "none") and Apache')
      .action(async (opts: { json?: boolean }) => {
        print(ctx.out, await startProxies(ctx.config(), deps()), opts.json);
      }),
  );
  withJson(
    cmd
      .command('stop')
      .description('stop Apache, then Squid, and wait until they are gone')
      .action(async (opts: { json?: boolean }) => {
        print(ctx.out, await stopProxies(ctx.config(), deps()), opts.json);
      }),
  );
  withJson(
    cmd
      .command('status')
      .description('show whether Apache, Squid and the authorizer are running and listening')
      .action(async (opts: { json?: boolean }) => {
        print(ctx.out, await proxiesStatus(ctx.config()), opts.json);
      }),
  );
  return cmd;
}

function print(out: Output, s: ProxiesStatus, json?: boolean): void {
  if (json) {
    out.json(s);
    return;
  }
  const line = (i: InstanceStatus) => {
    if (!i.enabled && !i.running) return `${i.name}: disabled (proxy.cache = "none")`;
    const ports = i.ports
      .map((p) => `${p.role} ${p.address} ${p.listening ? 'listening' : 'closed'}`)
      .join(', ');
    return `${i.name}: ${i.running ? `running (pid ${i.pid})` : 'stopped'}; ${ports}`;
  };
  out.line(line(s.apache));
  out.line(line(s.squid));
  out.line(
    `authorizer: ${s.authorizer.healthy ? 'answering' : `not answering (${s.authorizer.error ?? 'unknown'})`} on ${s.authorizer.address}`,
  );
}
