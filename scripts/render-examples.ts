/**
 * Regenerates docs/examples/ (`npm run examples`): the Apache and Squid
 * configs rendered from the default config on Debian. test/render-golden.test.ts
 * checks that they match the renderer.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { defaultConfig } from '../src/config.ts';
import { DEBIAN_APACHE, renderAll } from '../src/render/index.ts';

export const EXAMPLES_DIR = path.resolve(import.meta.dirname, '../docs/examples');

for (const [name, text] of Object.entries(renderAll(defaultConfig(), { apache: DEBIAN_APACHE }))) {
  const file = path.join(EXAMPLES_DIR, name);
  writeFileSync(file, text);
  console.log(file);
}
