/**
 * One owner per collection (issue #21 §2): every write to a collection is
 * made by the one module that owns it; others call that module. Read from
 * the syntax of every src/**\/*.ts(x) file (the TypeScript parser, no types
 * needed): a call of a driver write method (insertOne, updateMany, bulkWrite,
 * ...) or of a write helper (updateOneById; `new LeaseChain(db, NAME, ...)`
 * writes the chain collection NAME) is attributed to the collection its
 * receiver or argument names: `db.<key>` of COLLECTION_NAMES, a
 * `db.db.collection(NAME)`, or a local variable, property or function that
 * holds one of those. A write this cannot attribute fails, except in the
 * generic helpers of src/db/ that write the collection they are handed.
 * The same table is in docs/ferretdb.md.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import ts from 'typescript';
import { COLLECTION_NAMES } from '../src/db/index.ts';

/**
 * The module that writes each collection: a file, or a folder (ending in
 * `/`) whose files all may. Everything else reads it or calls the owner.
 */
export const COLLECTION_OWNERS: Readonly<Record<string, string>> = {
  deferred_download: 'src/queue/',
  queue_claim_tokens: 'src/queue/tokens.ts',
  unit_leases: 'src/queue/units.ts',
  fetch_leases: 'src/streamer/shared-flight.ts',
  lazy_content_catalog: 'src/catalog/',
  counters: 'src/catalog/index.ts',
  units: 'src/storage/units.ts',
  repos: 'src/repos/index.ts',
  repo_content_units: 'src/repos/associations.ts',
  locks: 'src/repos/index.ts',
  task_runs: 'src/tasks/runs.ts',
  unit_access: 'src/storage/access.ts',
  remote_health: 'src/upstream/health.ts',
};

/** Helpers that write whatever collection they are handed (the caller's write is counted instead). */
const GENERIC_WRITERS = ['src/db/by-id.ts', 'src/db/chain.ts'];

const WRITE_METHODS = new Set([
  'insertOne',
  'insertMany',
  'updateOne',
  'updateMany',
  'replaceOne',
  'deleteOne',
  'deleteMany',
  'findOneAndUpdate',
  'findOneAndDelete',
  'findOneAndReplace',
  'bulkWrite',
]);
/** Functions whose collection argument they write. */
const WRITE_HELPERS = new Set(['updateOneById']);
/** Classes whose constructor's second argument names the collection they write. */
const WRITER_CLASSES = new Set(['LeaseChain']);

const ROOT = path.resolve(import.meta.dirname, '..');
const BY_KEY: Record<string, string> = COLLECTION_NAMES;
/** The collection `db.<key>` is (Database's collections are COLLECTION_NAMES' keys). */
const keyed = (key: string): string | undefined => (Object.hasOwn(BY_KEY, key) ? BY_KEY[key] : undefined);

function sourceFiles(dir: string): string[] {
  return readdirSync(path.join(ROOT, dir), { withFileTypes: true }).flatMap((e) => {
    const rel = `${dir}/${e.name}`;
    if (e.isDirectory()) return sourceFiles(rel);
    return /\.tsx?$/.test(e.name) && !e.name.endsWith('.d.ts') ? [rel] : [];
  });
}

const FILES = new Map(
  sourceFiles('src').map((f) => [
    f,
    ts.createSourceFile(f, readFileSync(path.join(ROOT, f), 'utf8'), ts.ScriptTarget.ES2022, true),
  ]),
);

function walk(node: ts.Node, visit: (n: ts.Node) => void): void {
  visit(node);
  node.forEachChild((c) => walk(c, visit));
}

/** Top-level `const NAME = 'literal'` of every file: collection names given as constants. */
const CONSTANTS = new Map<string, string>();
for (const sf of FILES.values()) {
  for (const st of sf.statements) {
    if (!ts.isVariableStatement(st)) continue;
    for (const d of st.declarationList.declarations)
      if (ts.isIdentifier(d.name) && d.initializer && ts.isStringLiteral(d.initializer))
        CONSTANTS.set(d.name.text, d.initializer.text);
  }
}

/** What a variable, `this.<property>` or function of `sf` is set to (initialisers and assignments). */
function valuesOf(sf: ts.SourceFile, name: string, member: boolean): ts.Expression[] {
  const out: ts.Expression[] = [];
  walk(sf, (n) => {
    if (!member && ts.isVariableDeclaration(n) && ts.isIdentifier(n.name) && n.name.text === name) {
      if (n.initializer) out.push(n.initializer);
    } else if (!member && ts.isFunctionDeclaration(n) && n.name?.text === name) {
      walk(n, (r) => ts.isReturnStatement(r) && r.expression && out.push(r.expression));
    } else if (
      member &&
      ts.isBinaryExpression(n) &&
      n.operatorToken.kind === ts.SyntaxKind.EqualsToken &&
      ts.isPropertyAccessExpression(n.left) &&
      n.left.expression.kind === ts.SyntaxKind.ThisKeyword &&
      n.left.name.text === name
    ) {
      out.push(n.right);
    }
  });
  return out;
}

/** The collection name a string expression stands for. */
function nameOf(e: ts.Expression): string | undefined {
  if (ts.isStringLiteral(e) || ts.isNoSubstitutionTemplateLiteral(e)) return e.text;
  if (ts.isIdentifier(e)) return CONSTANTS.get(e.text);
  if (
    ts.isPropertyAccessExpression(e) &&
    ts.isIdentifier(e.expression) &&
    e.expression.text === 'COLLECTION_NAMES'
  )
    return keyed(e.name.text);
  return undefined;
}

/** The collection `e` (a collection object) is, when the file says. */
function collectionOf(sf: ts.SourceFile, e: ts.Expression, depth = 0): string | undefined {
  if (depth > 8) return undefined;
  if (ts.isParenthesizedExpression(e) || ts.isAsExpression(e) || ts.isNonNullExpression(e))
    return collectionOf(sf, e.expression, depth + 1);
  if (ts.isPropertyAccessExpression(e)) {
    if (e.expression.kind === ts.SyntaxKind.ThisKeyword)
      return first(valuesOf(sf, e.name.text, true), (v) => collectionOf(sf, v, depth + 1));
    return keyed(e.name.text);
  }
  if (ts.isIdentifier(e)) return first(valuesOf(sf, e.text, false), (v) => collectionOf(sf, v, depth + 1));
  if (ts.isArrowFunction(e) || ts.isFunctionExpression(e)) {
    if (!ts.isBlock(e.body)) return collectionOf(sf, e.body, depth + 1);
    const returned: ts.Expression[] = [];
    walk(e.body, (r) => ts.isReturnStatement(r) && r.expression && returned.push(r.expression));
    return first(returned, (v) => collectionOf(sf, v, depth + 1));
  }
  if (ts.isCallExpression(e)) {
    const callee = e.expression;
    if (ts.isPropertyAccessExpression(callee) && callee.name.text === 'collection' && e.arguments[0])
      return nameOf(e.arguments[0]);
    return collectionOf(sf, callee, depth + 1);
  }
  return undefined;
}

function first<T, U>(items: T[], f: (t: T) => U | undefined): U | undefined {
  for (const i of items) {
    const r = f(i);
    if (r !== undefined) return r;
  }
  return undefined;
}

interface Write {
  file: string;
  line: number;
  /** The collection written; undefined when the code does not say which. */
  collection: string | undefined;
  call: string;
}

function writesOf(file: string, sf: ts.SourceFile): Write[] {
  const out: Write[] = [];
  const at = (n: ts.Node, collection: string | undefined, call: string) =>
    out.push({ file, line: sf.getLineAndCharacterOfPosition(n.getStart(sf)).line + 1, collection, call });
  walk(sf, (n) => {
    if (ts.isCallExpression(n)) {
      const callee = n.expression;
      if (ts.isPropertyAccessExpression(callee) && WRITE_METHODS.has(callee.name.text))
        at(n, collectionOf(sf, callee.expression), callee.name.text);
      else if (ts.isIdentifier(callee) && WRITE_HELPERS.has(callee.text))
        at(
          n,
          first([...n.arguments], (a) => collectionOf(sf, a)),
          callee.text,
        );
    } else if (
      ts.isNewExpression(n) &&
      ts.isIdentifier(n.expression) &&
      WRITER_CLASSES.has(n.expression.text)
    ) {
      const arg = n.arguments?.[1];
      at(n, arg && nameOf(arg), `new ${n.expression.text}`);
    }
  });
  return out;
}

const WRITES = [...FILES].flatMap(([file, sf]) => writesOf(file, sf));

function owns(owner: string, file: string): boolean {
  return owner.endsWith('/') ? file.startsWith(owner) : file === owner;
}

const where = (w: Write) => `${w.file}:${w.line} ${w.call}`;

test('the scan finds the writes it checks: every owner writes its collection', () => {
  assert.ok(FILES.size > 50, `only ${FILES.size} files under src/`);
  for (const [collection, owner] of Object.entries(COLLECTION_OWNERS)) {
    const found = WRITES.filter((w) => w.collection === collection && owns(owner, w.file));
    assert.ok(
      found.length > 0,
      `no write of ${collection} found in ${owner}: a stale owner, or the scan is blind`,
    );
  }
});

test('every collection of the database has an owner', () => {
  for (const name of Object.values(COLLECTION_NAMES))
    assert.ok(Object.hasOwn(COLLECTION_OWNERS, name), `${name} has no owner in COLLECTION_OWNERS`);
});

test('every write names its collection (only the generic helpers of src/db/ write what they are handed)', () => {
  const unknown = WRITES.filter((w) => w.collection === undefined && !GENERIC_WRITERS.includes(w.file));
  assert.deepEqual(unknown.map(where), [], 'writes whose collection the scan cannot tell');
});

test('every collection written has an owner, and only its owner writes it', () => {
  const strays = WRITES.filter(
    (w) => w.collection !== undefined && !Object.hasOwn(COLLECTION_OWNERS, w.collection),
  );
  assert.deepEqual(
    strays.map((w) => `${where(w)} writes ${w.collection}`),
    [],
    'collections written without an owner',
  );
  const outside = WRITES.filter((w) => {
    const owner = w.collection === undefined ? undefined : COLLECTION_OWNERS[w.collection];
    return owner !== undefined && !owns(owner, w.file);
  });
  assert.deepEqual(
    outside.map((w) => `${where(w)} writes ${w.collection} (owner: ${COLLECTION_OWNERS[w.collection!]})`),
    [],
    'writes outside the owner module',
  );
});
