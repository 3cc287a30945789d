/** @jsxRuntime automatic */
/** @jsxImportSource react */
/** `pulp-lazy top` shows each repository's download policy (issue #22), read from the real database. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { render } from 'ink-testing-library';
import { connect } from '../src/db/index.ts';
import { RepoList } from '../src/tui/components.tsx';
import { repoProgress } from '../src/tui/data.ts';
import { runCli } from './helpers/cli.ts';
import { mongoUrl } from './helpers/db.ts';
import { testEnv } from './helpers/env.ts';

test('top lists each repository with its policy (on_demand when none was given), within 80 columns', async (t) => {
  const env = await testEnv('policy-top');
  for (const [name, policy] of [
    ['lazy', undefined],
    ['mirror-with-a-rather-long-name', 'background'],
    ['passthrough', 'streamed'],
  ] as const) {
    const args = ['repo', 'create', name, '--type', 'file', '--feed', 'http://127.0.0.1:9/x/'];
    const r = await runCli(policy ? [...args, '--policy', policy] : args, { env: env.env });
    assert.equal(r.code, 0, r.stderr);
  }
  const db = await connect(mongoUrl(), env.dbName);
  t.after(() => db.close());
  const repos = await repoProgress(db);
  assert.deepEqual(
    repos.map((r) => [r.name, r.policy]),
    [
      ['lazy', 'on_demand'],
      ['mirror-with-a-rather-long-name', 'background'],
      ['passthrough', 'streamed'],
    ],
  );
  // Up to 10,000-unit repositories the policy fits in 80 columns (beyond, the row is cut at the width).
  const wide = repos.map((r) => ({ ...r, downloaded: 4_500, total: 10_000 }));
  const app = render(<RepoList repos={wide} rows={5} color={false} />);
  const frame = app.lastFrame() ?? '';
  app.unmount();
  assert.match(frame, /repositories \(downloaded\/total units, policy\)/);
  assert.match(frame, /lazy .* 4500\/10000 on_demand$/m);
  assert.match(frame, /mirror-with-a-rather-lon .* background$/m);
  assert.match(frame, /passthrough .* streamed$/m);
  for (const line of frame.split('\n')) assert.ok(line.length <= 80, `too wide: ${line}`);
});
