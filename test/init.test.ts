/** `pulp-lazy init`: layout, keys, config, indexes, rendered files; idempotent; refuses changes without --force. */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, readdir, readFile, rm, stat } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { connect } from '../src/db/index.ts';
import { runCli } from './helpers/cli.ts';
import { mongoUrl } from './helpers/db.ts';

const dbName = `t_init_${process.pid}`;
after(async () => {
  const d = await connect(mongoUrl(), dbName);
  await d.db.dropDatabase();
  await d.close();
});

async function tmpRoot(): Promise<string> {
  const root = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-init-'));
  after(() => rm(root, { recursive: true, force: true }));
  return root;
}

const base = (root: string) => [
  'init',
  '--root',
  root,
  '--yes',
  '--mongodb-url',
  mongoUrl(),
  '--database-name',
  dbName,
  '--content-port',
  '28180',
  '--streamer-port',
  '28181',
  '--skip-check',
];

test('init --root --yes twice: the second run changes nothing and says so; keys are kept', async () => {
  const root = await tmpRoot();
  const first = await runCli(base(root));
  assert.equal(first.code, 0, first.stderr);
  assert.match(first.stdout, /init: done/);
  assert.match(first.stdout, /signing keys: created/);
  const cfgPath = path.join(root, 'etc/pulp-lazy/config.toml');
  const cfg = await readFile(cfgPath, 'utf8');
  assert.match(cfg, /content_port = 28180/);
  assert.match(cfg, new RegExp(`name = "${dbName}"`));
  for (const d of [
    'var/lib/pulp-lazy/content',
    'var/lib/pulp-lazy/published',
    'var/lib/pulp-lazy/work',
    'etc/pulp-lazy/keys',
    'var/cache/pulp-lazy',
    'var/log/pulp-lazy',
    'run/pulp-lazy',
  ])
    assert.ok((await stat(path.join(root, d))).isDirectory(), d);
  const rendered = path.join(root, 'etc/pulp-lazy/rendered');
  assert.match(await readFile(path.join(rendered, 'httpd.conf'), 'utf8'), /28180/);
  assert.match(await readFile(path.join(rendered, 'squid.conf'), 'utf8'), /http_port/);
  const unit = await readFile(path.join(rendered, 'systemd/pulp-lazy-streamer.service'), 'utf8');
  assert.match(unit, new RegExp(`--config ${cfgPath} run streamer`));
  assert.match(unit, /^ExecStart=\S+ --max-semi-space-size=2 \S+\/bin\/pulp-lazy /m);
  const scheduler = await readFile(path.join(rendered, 'systemd/pulp-lazy-scheduler.service'), 'utf8');
  assert.match(scheduler, new RegExp(`--config ${cfgPath} run scheduler`));
  // systemd restarts a daemon that crashed (a fatal error exits 1).
  for (const name of ['content', 'streamer', 'authorizer', 'scheduler']) {
    const daemon = await readFile(path.join(rendered, `systemd/pulp-lazy-${name}.service`), 'utf8');
    assert.match(daemon, /^Restart=on-failure$/m, name);
  }
  // The next steps say where the units go and what to enable (every unit named exists).
  assert.match(first.stdout, new RegExp(`cp ${rendered}/systemd/pulp-lazy-\\* /etc/systemd/system/`));
  const enable = /systemctl enable --now (.+)/.exec(first.stdout)?.[1]?.split(' ') ?? [];
  assert.ok(enable.length >= 5, first.stdout);
  for (const name of enable) await stat(path.join(rendered, 'systemd', `${name}.service`));
  const timer = await readFile(path.join(rendered, 'systemd/pulp-lazy-sweep.timer'), 'utf8');
  assert.match(timer, /OnUnitInactiveSec=1800s/);
  assert.doesNotMatch(timer, /Persistent=/, 'Persistent= only acts on OnCalendar= timers');
  const key = await readFile(path.join(root, 'etc/pulp-lazy/keys/signing.key'), 'utf8');
  assert.equal((await stat(path.join(root, 'etc/pulp-lazy/keys/signing.key'))).mode & 0o777, 0o600);

  // The indexes exist in the named database.
  const d = await connect(mongoUrl(), dbName);
  const idx = await d.deferred.indexes();
  await d.close();
  assert.ok(idx.length > 1, 'deferred_download has indexes besides _id');

  const second = await runCli(base(root));
  assert.equal(second.code, 0, second.stderr);
  assert.match(second.stdout, /init: nothing changed/);
  assert.match(second.stdout, /signing keys: kept/);
  assert.doesNotMatch(second.stdout, /wrote/);
  assert.equal(await readFile(path.join(root, 'etc/pulp-lazy/keys/signing.key'), 'utf8'), key);
  assert.equal(await readFile(cfgPath, 'utf8'), cfg);
});

test('a different answer without --force is refused and lists the change; with --force it applies, keys kept', async () => {
  const root = await tmpRoot();
  assert.equal((await runCli(base(root))).code, 0);
  const cfgPath = path.join(root, 'etc/pulp-lazy/config.toml');
  const before = await readFile(cfgPath, 'utf8');
  const key = await readFile(path.join(root, 'etc/pulp-lazy/keys/signing.key'), 'utf8');
  const changed = [...base(root), '--content-port', '28190'];
  const refused = await runCli(changed);
  assert.equal(refused.code, 1);
  assert.match(refused.stderr, /apache\.content_port: 28180 → 28190/);
  assert.match(refused.stderr, /--force/);
  assert.equal(refused.stderr.split('\n').filter((l) => l.includes('at ')).length, 0, 'no stack trace');
  assert.equal(await readFile(cfgPath, 'utf8'), before);

  const forced = await runCli([...changed, '--force']);
  assert.equal(forced.code, 0, forced.stderr);
  assert.match(forced.stdout, /rewrote .*config\.toml/);
  assert.match(await readFile(cfgPath, 'utf8'), /content_port = 28190/);
  assert.equal(await readFile(path.join(root, 'etc/pulp-lazy/keys/signing.key'), 'utf8'), key);
});

test('refuses a port already taken, an unreachable database, and an unwritable path', async () => {
  const busy = net.createServer().listen(0, '127.0.0.1');
  await once(busy, 'listening');
  after(() => busy.close());
  const port = (busy.address() as net.AddressInfo).port;
  const root = await tmpRoot();
  const taken = await runCli([...base(root), '--content-listen', `127.0.0.1:${port}`]);
  assert.equal(taken.code, 1);
  assert.match(taken.stderr, new RegExp(`port already in use: content.listen \\(127.0.0.1:${port}\\)`));

  const root2 = await tmpRoot();
  const env = { ...process.env, MONGODB_URL: '' };
  const noDb = await runCli(
    [
      ...base(root2)
        .filter((a) => a !== mongoUrl())
        .filter((a) => a !== '--mongodb-url'),
      '--mongodb-url',
      `mongodb://127.0.0.1:${port}/`,
    ],
    { env },
  );
  assert.equal(noDb.code, 1);
  assert.match(noDb.stderr, /cannot reach MongoDB/);
  assert.match(noDb.stderr, /--skip-db/);
  assert.deepEqual(await readdir(root2), [], 'a refused init writes nothing');

  const root3 = await tmpRoot();
  const blocker = path.join(root3, 'file');
  await (await import('node:fs/promises')).writeFile(blocker, 'x');
  const unwritable = await runCli([...base(blocker), '--skip-db']);
  assert.equal(unwritable.code, 1);
  assert.match(unwritable.stderr, /cannot (create|write) .*ENOTDIR/);
});
