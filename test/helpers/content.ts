/**
 * Fixtures for the content daemon tests: a temp root with storage and a
 * published tree of symlinks (per-repository directories are links into
 * `.versions/`, as an atomic republish leaves them), signing keys, a test
 * database and an in-process daemon on 127.0.0.1:0.
 */
import { createHash, type KeyObject } from 'node:crypto';
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import type http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after } from 'node:test';
import { type Config, parseConfig, rootedPaths } from '../../src/config.ts';
import { type ContentDaemon, createContentDaemon } from '../../src/daemons/content.ts';
import type { Database, RepoDoc } from '../../src/db/index.ts';
import { silentLogger } from '../../src/log.ts';
import { generateKeys, loadPrivateKey, loadPublicKey } from '../../src/signing/index.ts';
import { unitStoragePath } from '../../src/storage/index.ts';
import { request as send } from './http.ts';

export interface Tree {
  root: string;
  paths: Config['paths'];
  privateKey: KeyObject;
  publicKey: KeyObject;
  /** Absolute storage path of a unit file (not created). */
  storagePath(type: string, digest: string, basename: string): string;
  /** Writes a unit file into storage and returns its path. */
  store(type: string, digest: string, basename: string, data: string | Buffer): Promise<string>;
  /** Creates `<published>/.versions/<dir>` and the per-repo link `<published>/<publishedPath>` to it. */
  repo(publishedPath: string): Promise<string>;
  /** A symlink `<published>/<publishedPath>/<rel>` → `target` (parents created). */
  link(publishedPath: string, rel: string, target: string): Promise<string>;
}

let repoCounter = 0;

export async function makeTree(label: string): Promise<Tree> {
  const root = await mkdtemp(path.join(tmpdir(), `pulp-lazy-${label}-`));
  after(() => rm(root, { recursive: true, force: true }));
  const paths = rootedPaths(root);
  await mkdir(paths.storage, { recursive: true });
  await mkdir(paths.published, { recursive: true });
  await generateKeys(paths.keys);
  const tree: Tree = {
    root,
    paths,
    privateKey: loadPrivateKey(paths.keys),
    publicKey: loadPublicKey(paths.keys),
    storagePath: (type, digest, basename) => unitStoragePath(paths.storage, type, digest, basename),
    async store(type, digest, basename, data) {
      const p = tree.storagePath(type, digest, basename);
      await mkdir(path.dirname(p), { recursive: true });
      await writeFile(p, data);
      return p;
    },
    async repo(publishedPath) {
      const versioned = path.join(
        paths.published,
        '.versions',
        `${publishedPath.replace(/\//g, '_')}-${repoCounter++}`,
      );
      await mkdir(versioned, { recursive: true });
      const linkPath = path.join(paths.published, publishedPath);
      await mkdir(path.dirname(linkPath), { recursive: true });
      await symlink(path.relative(path.dirname(linkPath), versioned), linkPath);
      return versioned;
    },
    async link(publishedPath, rel, target) {
      const p = path.join(paths.published, publishedPath, rel);
      await mkdir(path.dirname(p), { recursive: true });
      await symlink(target, p);
      return p;
    },
  };
  return tree;
}

/** A validated config whose paths are the tree's; `extra` overrides sections. */
export function contentConfig(tree: Tree, extra: Record<string, Record<string, unknown>> = {}): Config {
  const raw: Record<string, Record<string, unknown>> = {
    paths: { ...tree.paths },
    content: { listen: '127.0.0.1:0' },
  };
  for (const [k, v] of Object.entries(extra)) raw[k] = { ...(raw[k] ?? {}), ...v };
  return parseConfig(raw, 'test', { MONGODB_URL: 'mongodb://127.0.0.1:1/' });
}

export interface Running {
  daemon: ContentDaemon;
  port: number;
  get(p: string, headers?: http.OutgoingHttpHeaders): Promise<Reply>;
  head(p: string, headers?: http.OutgoingHttpHeaders): Promise<Reply>;
}

/** Starts a daemon (closed after the file). */
export async function startDaemon(
  config: Config,
  deps: { db: Database; clock?: () => number; protectionRefreshMs?: number },
): Promise<Running> {
  const daemon = createContentDaemon(config, {
    db: deps.db,
    logger: silentLogger,
    ...(deps.clock ? { clock: deps.clock } : {}),
    ...(deps.protectionRefreshMs ? { protectionRefreshMs: deps.protectionRefreshMs } : {}),
  });
  const addr = (await daemon.listen()) as AddressInfo;
  after(() => daemon.close({ deadlineMs: 1000 }));
  return {
    daemon,
    port: addr.port,
    get: (p, headers) => request(addr.port, 'GET', p, headers),
    head: (p, headers) => request(addr.port, 'HEAD', p, headers),
  };
}

export interface Reply {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** Sends the request target exactly as given (no URL normalisation, unlike fetch); the body as text. */
export async function request(
  port: number,
  method: string,
  target: string,
  headers: http.OutgoingHttpHeaders = {},
): Promise<Reply> {
  const r = await send(`http://127.0.0.1:${port}${target}`, { method, headers });
  return { ...r, body: r.body.toString('utf8') };
}

/** Inserts a repository document (only the fields the content daemon reads matter). */
export async function insertRepo(
  db: Database,
  name: string,
  publishedPath: string,
  caPem?: string,
): Promise<void> {
  const doc: RepoDoc = {
    _id: name,
    type: 'file',
    feed: 'http://127.0.0.1:1/feed/',
    importer_id: `imp-${name}`,
    upstream: { tls_verify: true },
    published_path: publishedPath,
    created_at: new Date(),
    ...(caPem ? { protection: { ca_cert: caPem } } : {}),
  };
  await db.repos.insertOne(doc);
}

/** A hex digest derived from a label (fake but well-formed). */
export function digestOf(label: string): string {
  return createHash('sha256').update(label).digest('hex');
}
