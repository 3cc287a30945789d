import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, test } from 'node:test';
import { defaultConfig, loadConfig } from '../src/config.ts';

async function configFile(text: string): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'pulp-lazy-config-'));
  after(() => rm(dir, { recursive: true, force: true }));
  const file = path.join(dir, 'config.toml');
  await writeFile(file, text);
  return file;
}

test('every key has a default', () => {
  const c = defaultConfig();
  assert.equal(c.database.name, 'pulp_lazy');
  assert.equal(c.signing.ttl, 90_000);
  assert.equal(c.redirect.path, '/streamer/');
  assert.equal(c.tasks.sweep_interval, 30 * 60_000);
  assert.equal(c.tasks.concurrency, 5);
  assert.equal(c.streamer.cache_timeout, 86_400_000);
  assert.ok(Object.isFrozen(c.paths));
});

test('a missing default file means defaults, a missing explicit file is an error', async () => {
  const c = loadConfig({ env: {} });
  assert.equal(c.source === null || typeof c.source === 'string', true);
  assert.throws(() => loadConfig({ path: '/nonexistent/pulp-lazy.toml', env: {} }), {
    code: 'PL_CONFIG',
    message: /cannot read config file \/nonexistent\/pulp-lazy.toml: ENOENT/,
  });
});

test('values are read, durations and sizes parsed, MONGODB_URL overrides the file', async () => {
  const file = await configFile(
    '[database]\nurl = "mongodb://db.example:27017/"\n[tasks]\nsweep_interval = "5m"\nbatch_size = 7\n[signing]\nttl = 30\n',
  );
  const c = loadConfig({ path: file, env: {} });
  assert.equal(c.streamer.direct_io_min_size, 32 << 20, 'default');
  for (const [v, bytes] of [
    ['"off"', undefined],
    ['0', 0],
    ['4096', 4096],
    ['"512KiB"', 512 << 10],
    ['"64M"', 64 << 20],
    ['"2GiB"', 2 ** 31],
  ] as const) {
    const f = await configFile(`[streamer]\ndirect_io_min_size = ${v}\n`);
    assert.equal(loadConfig({ path: f, env: {} }).streamer.direct_io_min_size, bytes, v);
  }
  assert.equal(c.database.url, 'mongodb://db.example:27017/');
  assert.equal(c.tasks.sweep_interval, 300_000);
  assert.equal(c.tasks.batch_size, 7);
  assert.equal(c.signing.ttl, 30_000);
  const o = loadConfig({ path: file, env: { MONGODB_URL: 'mongodb://127.0.0.1:1/' } });
  assert.equal(o.database.url, 'mongodb://127.0.0.1:1/');
  const viaEnv = loadConfig({ env: { PULP_LAZY_CONFIG: file } });
  assert.equal(viaEnv.source, file);
});

test('errors name the file and the key', async () => {
  const cases: Array<[string, RegExp]> = [
    ['[tasks]\nconcurrency = "five"\n', /config\.toml: tasks\.concurrency: expected number/],
    ['[tasks]\nsweep_interval = "soon"\n', /tasks\.sweep_interval: "soon" is not a duration/],
    ['[streamer]\ndirect_io_min_size = "big"\n', /streamer\.direct_io_min_size: "big" is not a size/],
    ['[streamer]\ndirect_io_min_size = -1\n', /streamer\.direct_io_min_size: "-1" is not a size/],
    ['[paths]\nstorage = "relative/dir"\n', /paths\.storage: must be an absolute path/],
    ['[streamer]\nlisten = "nowhere"\n', /streamer\.listen: must be "host:port"/],
    ['[tasks]\nbogus = 1\n', /unknown key tasks\.bogus/],
    ['[nosuch]\n', /unknown key nosuch/],
    ['[redirect]\npath = "streamer"\n', /redirect\.path: must start and end with "\/"/],
    ['[database]\nurl = "postgres://x"\n', /database\.url: must start with mongodb:\/\//],
    ['[apache]\nmax_request_workers = 10\n', /apache\.max_request_workers: .*64/],
    ['this is = = not toml', /not valid TOML \(line 1/],
  ];
  for (const [text, re] of cases) {
    const file = await configFile(text);
    assert.throws(
      () => loadConfig({ path: file, env: {} }),
      (err: Error & { code?: string }) => {
        assert.equal(err.code, 'PL_CONFIG');
        assert.match(err.message, re);
        assert.ok(err.message.includes(file), `message names the file: ${err.message}`);
        assert.ok(!err.message.includes('\n'), 'one line');
        return true;
      },
    );
  }
});
