/**
 * The import layering of src/ (issue #21 §4, §5), read from the import
 * statements of every src/**\/*.ts(x) file, so that a back-edge fails here
 * rather than in a review: no import cycle between files or between
 * top-level folders, commands/ imported only by the CLI, lifecycle/ never
 * importing init/, and the process helpers free of execa (the streamer
 * daemon loads them).
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

const ROOT = path.resolve(import.meta.dirname, '..');

interface Import {
  /** A path relative to ROOT ("src/db/index.ts") or a package name ("execa"). */
  target: string;
  /** `import type` / `export type`: gone at run time. */
  typeOnly: boolean;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((e) => {
    const rel = path.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(rel);
    return /\.tsx?$/.test(e.name) && !e.name.endsWith('.d.ts') ? [rel] : [];
  });
}

/** Static imports and re-exports (statements at the start of a line), side-effect and dynamic imports. */
const STATEMENT = /(?:^|\n)[ \t]*(?:import|export)[ \t]+(type[ \t]+)?[^;'"]*?from[ \t]*'([^']+)'/g;
const BARE = /(?:^|\n)[ \t]*import[ \t]*'([^']+)'/g;
const DYNAMIC = /\bimport\(\s*'([^']+)'\s*\)/g;

function importsOf(file: string): Import[] {
  const text = readFileSync(path.join(ROOT, file), 'utf8');
  const found: Array<[string, boolean]> = [
    ...[...text.matchAll(STATEMENT)].map((m): [string, boolean] => [m[2]!, m[1] !== undefined]),
    ...[...text.matchAll(BARE)].map((m): [string, boolean] => [m[1]!, false]),
    ...[...text.matchAll(DYNAMIC)].map((m): [string, boolean] => [m[1]!, false]),
  ];
  return found.map(([spec, typeOnly]) => ({
    target: spec.startsWith('.') ? path.join(path.dirname(file), spec) : packageName(spec),
    typeOnly,
  }));
}

function packageName(spec: string): string {
  const parts = spec.split('/');
  return spec.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
}

const FILES = sourceFiles('src');
const IMPORTS = new Map(FILES.map((f) => [f, importsOf(f)]));

/** "src/lifecycle/daemon.ts" → "lifecycle"; a file directly in src/ is its own folder ("cli"). */
function folderOf(file: string): string {
  const parts = path.relative('src', file).split(path.sep);
  return parts.length > 1 ? parts[0]! : parts[0]!.replace(/\.tsx?$/, '');
}

/** Every cycle (strongly connected set of two or more nodes, or a node importing itself). */
function cycles(graph: Map<string, Set<string>>): string[][] {
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: string[][] = [];
  const visit = (v: string) => {
    index.set(v, index.size);
    low.set(v, index.get(v)!);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v)!, index.get(w)!));
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop()!;
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1 || graph.get(v)?.has(v)) out.push(component.sort());
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return out;
}

function edges(keep: (from: string, imp: Import) => boolean): Array<[string, string]> {
  return [...IMPORTS].flatMap(([from, imports]) =>
    imports
      .filter((i) => i.target.startsWith('src/') && keep(from, i))
      .map((i): [string, string] => [from, i.target]),
  );
}

function graphOf(pairs: Array<[string, string]>): Map<string, Set<string>> {
  const g = new Map<string, Set<string>>();
  for (const [a, b] of pairs) {
    if (!g.has(a)) g.set(a, new Set());
    g.get(a)!.add(b);
  }
  return g;
}

test('the scan sees the imports it checks', () => {
  assert.ok(FILES.length > 50, `only ${FILES.length} files under src/`);
  assert.ok(edges(() => true).length > 200, 'too few imports found: the patterns no longer match');
  const daemon = IMPORTS.get(path.join('src', 'lifecycle', 'daemon.ts'));
  assert.ok(daemon?.some((i) => i.target === path.join('src', 'lifecycle', 'components.ts')));
});

test('no import cycle between files (type-only imports aside: they are gone at run time)', () => {
  const found = cycles(graphOf(edges((_from, i) => !i.typeOnly)));
  assert.deepEqual(found, [], `import cycles: ${found.map((c) => c.join(' <-> ')).join('; ')}`);
});

test('no import cycle between the top-level folders of src/ (type-only imports included)', () => {
  const pairs = edges(() => true)
    .map(([a, b]): [string, string] => [folderOf(a), folderOf(b)])
    .filter(([a, b]) => a !== b);
  const found = cycles(graphOf(pairs));
  const why = found.map((c) =>
    edges(() => true)
      .filter(([a, b]) => c.includes(folderOf(a)) && c.includes(folderOf(b)) && folderOf(a) !== folderOf(b))
      .map(([a, b]) => `${a} -> ${b}`)
      .join(', '),
  );
  assert.deepEqual(found, [], `folder cycles: ${why.join('; ')}`);
});

test('only src/commands/ and src/cli.ts import src/commands/ (commands use modules, never the reverse)', () => {
  const bad = edges(
    (from, i) =>
      folderOf(i.target) === 'commands' &&
      folderOf(from) !== 'commands' &&
      from !== path.join('src', 'cli.ts'),
  );
  assert.deepEqual(bad, []);
});

test('src/lifecycle/ does not import src/init/', () => {
  const bad = edges((from, i) => folderOf(from) === 'lifecycle' && folderOf(i.target) === 'init');
  assert.deepEqual(bad, []);
});

test('the process helpers and the streamer daemon load no execa', () => {
  for (const start of [path.join('src', 'util', 'process.ts'), path.join('src', 'daemons', 'streamer.ts')]) {
    assert.ok(IMPORTS.has(start), `${start} is missing`);
    // Runtime imports only, followed through every file they load.
    const seen = new Set([start]);
    const via = new Map<string, string>();
    for (const file of seen) {
      for (const i of IMPORTS.get(file) ?? []) {
        if (i.typeOnly) continue;
        if (i.target === 'execa') assert.fail(`${start} loads execa (${chain(via, file).join(' -> ')})`);
        if (IMPORTS.has(i.target) && !seen.has(i.target)) {
          seen.add(i.target);
          via.set(i.target, file);
        }
      }
    }
  }
});

function chain(via: Map<string, string>, file: string): string[] {
  const out = [file];
  for (let f = via.get(file); f !== undefined; f = via.get(f)) out.unshift(f);
  return out;
}
