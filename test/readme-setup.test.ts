/**
 * The README's two set-up commands stay true: exactly two, the first runs the
 * demo (test/demo.test.ts runs it), the second is the very line CI runs on a
 * fresh machine (.ci/run), and every script it names exists and is executable.
 */
import assert from 'node:assert/strict';
import { access, constants, readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';

const root = path.resolve(import.meta.dirname, '..');

async function setUpCommands(): Promise<string[]> {
  const readme = await readFile(path.join(root, 'README.md'), 'utf8');
  const section = readme.split(/^## /m).find((s) => s.startsWith('Set up\n'));
  assert.ok(section, 'README has a "## Set up" section');
  return [...section.matchAll(/^```sh\n([\s\S]*?)\n```$/gm)].map((m) => m[1]!.trim());
}

test('README: exactly two set-up commands; the first runs the demo, the second is what CI runs', async () => {
  const commands = await setUpCommands();
  assert.equal(commands.length, 2, `two set-up commands, found: ${JSON.stringify(commands)}`);
  const [main, tests] = commands as [string, string];
  assert.ok(!main.includes('\n') && !tests.includes('\n'), 'each is one line to paste');
  assert.match(main, /\.\/bin\/pulp-lazy demo$/);
  assert.match(tests, /npm test$/);
  const ci = (await readFile(path.join(root, '.ci/run'), 'utf8')).split('\n').map((l) => l.trim());
  assert.ok(ci.includes(tests), `.ci/run runs the README's test command verbatim: ${tests}`);
  for (const script of tests.split('&&').map((s) => s.trim().split(/\s+/)[0]!)) {
    if (script.includes('/')) await access(path.join(root, script), constants.X_OK);
  }
});
