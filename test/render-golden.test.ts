/**
 * docs/examples/ holds the configs rendered from the default config; the
 * renderer must still produce them byte for byte. After an intended template
 * change, regenerate them with `npm run examples` and review the diff.
 */
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { defaultConfig } from '../src/config.ts';
import { DEBIAN_APACHE, renderAll } from '../src/render/index.ts';
import { ROOT } from './helpers/cli.ts';

const EXAMPLES = path.join(ROOT, 'docs/examples');

test('docs/examples matches the render of the default config (regenerate: npm run examples)', async () => {
  const rendered = renderAll(defaultConfig(), { apache: DEBIAN_APACHE });
  const files = (await readdir(EXAMPLES)).filter((f) => f.endsWith('.conf')).sort();
  assert.deepEqual(files, Object.keys(rendered).sort());
  for (const [name, text] of Object.entries(rendered)) {
    assert.equal(
      text,
      await readFile(path.join(EXAMPLES, name), 'utf8'),
      `${name} differs: run "npm run examples"`,
    );
  }
});
