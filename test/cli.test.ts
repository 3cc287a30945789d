import assert from 'node:assert/strict';
import { test } from 'node:test';
import { createContext } from '../src/commands/context.ts';
import { commandName, commandsFor } from '../src/commands/index.ts';
import { runCli } from './helpers/cli.ts';

test('--help lists every command with a description', async () => {
  const r = await runCli(['--help']);
  assert.equal(r.code, 0);
  for (const cmd of ['repo', 'sync', 'db', 'devdb'])
    assert.match(r.stdout, new RegExp(`\\n  ${cmd}\\b.*\\S`));
});

test('only the command named on the line is loaded; help and unknown names get them all', async () => {
  assert.equal(commandName(['--config', 'x.toml', 'run', 'streamer']), 'run');
  assert.equal(commandName(['-c', 'run', 'sweep', '--json']), 'sweep');
  assert.equal(commandName(['--help']), undefined);
  const ctx = createContext({ configPath: () => undefined });
  const names = async (argv: string[]) => (await commandsFor(ctx, argv)).map((c) => c.name());
  assert.deepEqual(await names(['run', 'streamer']), ['run']);
  assert.deepEqual(await names(['status', '--json']), ['start', 'stop', 'restart', 'status']);
  assert.deepEqual(await names(['--version']), []);
  const all = await names(['--help']);
  assert.ok(all.length >= 20 && all.includes('devdb') && all.includes('top'), all.join(' '));
  assert.deepEqual(await names(['frobnicate']), all);
});

test('--version prints the package version', async () => {
  const r = await runCli(['--version']);
  assert.equal(r.code, 0);
  assert.match(r.stdout.trim(), /^\d+\.\d+\.\d+$/);
});

test('unknown command and bad option: one-line error, exit 2', async () => {
  for (const args of [
    ['frobnicate'],
    ['sync', '--bogus', 'x'],
    ['repo', 'create', 'x', '--type', 'rpmx', '--feed', 'http://h/'],
  ]) {
    const r = await runCli(args, { env: { ...process.env, PULP_LAZY_CONFIG: '' } });
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
    assert.match(r.stderr, /^pulp-lazy: /);
  }
});

test('bad repository input: one-line usage errors, exit 2', async () => {
  const env = { ...process.env, PULP_LAZY_CONFIG: '' };
  const cases: Array<[string[], RegExp]> = [
    [['repo', 'create', 'x', '--type', 'file', '--feed', 'ftp://h/'], /only http and https/],
    [['repo', 'create', 'x', '--type', 'file', '--feed', 'not a url'], /bad feed URL/],
    [['repo', 'create', 'bad name', '--type', 'file', '--feed', 'http://h/'], /bad repository name/],
    [
      ['repo', 'create', 'x', '--type', 'file', '--feed', 'http://h/', '--ca-cert', '/nonexistent.pem'],
      /cannot read CA certificate/,
    ],
    [
      ['repo', 'create', 'x', '--type', 'file', '--feed', 'http://h/', '--basic-auth', 'nocolon'],
      /USER:PASS/,
    ],
  ];
  for (const [args, re] of cases) {
    const r = await runCli(args, { env });
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, re);
    assert.equal(r.stderr.trim().split('\n').length, 1);
  }
});
