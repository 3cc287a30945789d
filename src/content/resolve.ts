/**
 * The content resolver: maps a safe relative path (src/content/path.ts) onto
 * the published tree and says what to answer. Reused by the content daemon
 * and the all-in-one server.
 *
 * Hit path (no database): on Linux the published path is opened with O_PATH
 * (no read access, no side effects, FIFOs do not block), its real location
 * read from /proc/self/fd and the file fstat'ed: the kernel walks the link
 * chain once, where glibc's realpath lstats every component (elsewhere:
 * realpath + stat). A path whose real location is outside the storage and
 * published roots is forbidden. Only when the path does not
 * resolve (ENOENT) does the resolver walk the link chain by hand
 * (lstat/readlink, at most MAX_HOPS links) to tell a dangling published link
 * (→ `missing`, with the storage path to redirect to) from no link at all
 * (→ `notfound`).
 *
 * These metadata calls run synchronously on the event loop, as nginx does
 * its open/stat: on a local file system they take microseconds, less than
 * one thread-pool round trip (realpath + stat through callbacks: 0.16 of
 * static Apache for small hits; this: 0.24, bench/RESULTS.md; a dangling
 * link resolved in 326-360 us with callbacks, 132-186 us now), and they do
 * not queue behind the bulk reads and writes that share the pool in `serve`.
 * Directory listings stay asynchronous.
 */
import { createHash } from 'node:crypto';
import fs, { type Stats } from 'node:fs';
import path from 'node:path';
import { cacheControlFor } from '../http/cache-control.ts';
import { contentTypeFor } from './mime.ts';
import { type ContentPath, parseContentPath } from './path.ts';

/** Links followed by hand on the miss path before giving up (forbidden). */
export const MAX_HOPS = 8;

export interface DirEntry {
  name: string;
  /** The entry is (or links to) a directory. */
  dir: boolean;
}

export type Resolution =
  /** Present: `file` is the absolute path to hand to X-Sendfile (under a configured root). */
  | {
      kind: 'file';
      file: string;
      stat: Stats;
      contentType: string;
      etag: string;
      lastModified: string;
      /** The Cache-Control of a hit on this path (src/http/cache-control.ts), if any. */
      cacheControl: string | undefined;
    }
  /** Published link whose target is not stored yet: redirect to the streamer for `storagePath`. */
  | {
      kind: 'missing';
      storagePath: string;
      /** The Cache-Control a hit on this path would carry (for `serve`, which streams the miss under its URL). */
      cacheControl: string | undefined;
    }
  | { kind: 'directory'; dir: string; entries: DirEntry[] }
  | { kind: 'notfound' }
  | { kind: 'forbidden'; reason: string };

export interface ContentResolver {
  /** Resolves a parsed path, or a raw (percent-encoded) one, which is parsed first (unsafe → forbidden). */
  resolve(p: ContentPath | string): Promise<Resolution>;
}

interface Root {
  /** As configured (used in X-Sendfile headers and redirect URLs). */
  configured: string;
  /** realpath of the configured root, once it exists. */
  real: string | undefined;
}

const NOT_FOUND: Resolution = { kind: 'notfound' };
const forbidden = (reason: string): Resolution => ({ kind: 'forbidden', reason });

const realpathCb = (p: string) =>
  new Promise<string>((resolve, reject) => fs.realpath.native(p, (e, r) => (e ? reject(e) : resolve(r))));
const statCb = (p: string) =>
  new Promise<Stats>((resolve, reject) => fs.stat(p, (e, s) => (e ? reject(e) : resolve(s))));
const errno = (err: unknown) => (err as NodeJS.ErrnoException).code;

/** Linux open(2) flag O_PATH (not in fs.constants): a handle for fstat/readlink only. */
const O_PATH = 0o10000000;
const PROC_FD = '/proc/self/fd/';
/** What /proc/self/fd adds to the name of a file removed since it was opened. */
const DELETED = ' (deleted)';

const BY_FD = process.platform === 'linux' && fs.existsSync(PROC_FD);

/** The real location and stat of `p`, following every link; throws the fs error (ENOENT, ELOOP...). */
function locate(p: string): { real: string; st: Stats } {
  if (!BY_FD) {
    const real = fs.realpathSync.native(p);
    return { real, st: fs.statSync(real) };
  }
  const fd = fs.openSync(p, O_PATH);
  try {
    // The name first, then the stat: a file or folder removed before the name was read has no
    // links left by the stat (its name from /proc is "<path> (deleted)", which must not be used).
    const real = fs.readlinkSync(PROC_FD + fd);
    const st = fs.fstatSync(fd);
    if (st.nlink === 0 || (real.endsWith(DELETED) && !fs.existsSync(real)))
      throw Object.assign(new Error(`${p}: removed`), { code: 'ENOENT' });
    return { real, st };
  } finally {
    fs.closeSync(fd);
  }
}

/** Per real path, what the hit headers derive from the file (kept while size, mtime and inode stay). */
interface FileMeta {
  ino: number;
  size: number;
  mtimeMs: number;
  contentType: string;
  etag: string;
  lastModified: string;
}
/** Entries kept before the memo starts again (a few MB at most). */
const META_LIMIT = 16_384;

/** Filesystem errors that mean "nothing there" rather than "not allowed". */
const ABSENT = new Set(['ENOENT', 'ENOTDIR', 'ENAMETOOLONG']);

export function createContentResolver(paths: { storage: string; published: string }): ContentResolver {
  const storage: Root = { configured: path.resolve(paths.storage), real: undefined };
  const published: Root = { configured: path.resolve(paths.published), real: undefined };
  const roots = [storage, published];
  const metas = new Map<string, FileMeta>();
  const metaOf = (real: string, st: Stats): FileMeta => {
    const known = metas.get(real);
    if (known && known.ino === st.ino && known.size === st.size && known.mtimeMs === st.mtimeMs) return known;
    if (metas.size >= META_LIMIT) metas.clear();
    const meta: FileMeta = {
      ino: st.ino,
      size: st.size,
      mtimeMs: st.mtimeMs,
      contentType: contentTypeFor(real),
      etag: etagFor(real, st, realOf(storage)),
      lastModified: st.mtime.toUTCString(),
    };
    metas.set(real, meta);
    return meta;
  };

  const ensureRoots = async () => {
    for (const r of roots) {
      if (r.real === undefined) r.real = await realpathCb(r.configured).catch(() => undefined);
    }
  };
  const realOf = (r: Root) => r.real ?? r.configured;
  const rootOf = (real: string): Root | undefined => roots.find((r) => isWithin(real, realOf(r)));
  const toConfigured = (real: string, r: Root) =>
    realOf(r) === r.configured ? real : path.join(r.configured, path.relative(realOf(r), real));

  const resolveFast = async (cp: ContentPath, retried: boolean): Promise<Resolution> => {
    const full = cp.rel ? path.join(published.configured, cp.rel) : published.configured;
    let real: string;
    let st: Stats;
    try {
      ({ real, st } = locate(full));
    } catch (err) {
      const code = errno(err);
      if (code === 'ENOENT') return resolveMissing(cp, full, retried);
      if (code && ABSENT.has(code)) return NOT_FOUND;
      if (code === 'ELOOP' || code === 'EACCES') return forbidden(code);
      throw err;
    }
    const root = rootOf(real);
    if (!root) return forbidden('outside the storage and published roots');
    if (st.isFile()) {
      if (cp.trailingSlash) return NOT_FOUND;
      const meta = metaOf(real, st);
      return {
        kind: 'file',
        file: toConfigured(real, root),
        stat: st,
        contentType: meta.contentType,
        etag: meta.etag,
        lastModified: meta.lastModified,
        cacheControl: cacheControlFor(cp.rel),
      };
    }
    if (st.isDirectory()) {
      let entries = await listDirectory(real);
      if (cp.segments.length === 0) entries = entries.filter((e) => !e.name.startsWith('.'));
      return { kind: 'directory', dir: toConfigured(real, root), entries };
    }
    return forbidden('not a regular file');
  };

  /** `missing` for a link chain ending at `final`, when that lies in storage. */
  const storageTarget = (cp: ContentPath, final: string): Resolution | undefined => {
    const storageReal = realOf(storage);
    if (!isWithin(final, storageReal) || final === storageReal) return undefined;
    return {
      kind: 'missing',
      storagePath: toConfigured(final, storage),
      cacheControl: cacheControlFor(cp.rel),
    };
  };

  /** realpath said ENOENT: follow the chain by hand to find a dangling link's storage target. */
  const resolveMissing = async (cp: ContentPath, full: string, retried: boolean): Promise<Resolution> => {
    let target = full;
    for (let hops = 0; ; hops++) {
      // Deepest existing ancestor of `target`, resolved; `tail` is what lies below it.
      const tail: string[] = [];
      let dir = target;
      let realParent: string | undefined;
      while (realParent === undefined) {
        const parent = path.dirname(dir);
        if (parent === dir) return NOT_FOUND;
        tail.unshift(path.basename(dir));
        try {
          realParent = locate(parent).real;
        } catch (err) {
          const code = errno(err);
          if (code === 'ENOENT') dir = parent;
          else if (code && ABSENT.has(code)) return NOT_FOUND;
          else if (code === 'ELOOP' || code === 'EACCES') return forbidden(code);
          else throw err;
        }
      }
      if (!rootOf(realParent)) return forbidden('link leads outside the storage and published roots');
      const first = path.join(realParent, tail[0]!);
      let lst: Stats;
      try {
        lst = fs.lstatSync(first);
      } catch (err) {
        const code = errno(err);
        if (code === 'EACCES') return forbidden(code);
        if (!code || !ABSENT.has(code)) throw err;
        // Nothing there: the end of the chain.
        if (hops === 0) return NOT_FOUND;
        return storageTarget(cp, path.join(realParent, ...tail)) ?? NOT_FOUND;
      }
      if (!lst.isSymbolicLink()) {
        // It appeared meanwhile (a download or publish finished): look again once.
        if (!retried) return resolveFast(cp, true);
        // It changed under us twice (a reclaim racing a save removes and makes the folders):
        // a link's storage target is known, and the streamer answers for it either way.
        return (hops > 0 ? storageTarget(cp, path.join(realParent, ...tail)) : undefined) ?? NOT_FOUND;
      }
      if (hops >= MAX_HOPS) return forbidden('too many links');
      const link = fs.readlinkSync(first);
      target = path.resolve(realParent, link, ...tail.slice(1));
    }
  };

  return {
    async resolve(p) {
      const cp = typeof p === 'string' ? parseContentPath(p) : p;
      if (!cp) return forbidden('unsafe path');
      // Top-level dot entries (.versions) are publication internals, not repositories.
      if (cp.segments[0]?.startsWith('.')) return NOT_FOUND;
      if (storage.real === undefined || published.real === undefined) await ensureRoots();
      return resolveFast(cp, false);
    },
  };
}

/** `p` is `root` or below it (both absolute and normalised). */
export function isWithin(p: string, root: string): boolean {
  const r = trimSlash(root);
  return p === root || p === r || p.startsWith(`${r}/`);
}

function trimSlash(p: string): string {
  return p.length > 1 && p.endsWith('/') ? p.slice(0, -1) : p;
}

/**
 * A strong ETag that stays the same across requests and restarts. Files in
 * unit storage (`units/<type>/<ab>/<digest rest>/<file...>`) take it from the
 * content digest in their path plus a short hash of type and file name (a
 * unit directory can hold several files); anything else from size + mtime.
 */
export function etagFor(real: string, st: Stats, storageReal: string): string {
  const prefix = `${trimSlash(storageReal)}/units/`;
  if (real.startsWith(prefix)) {
    const parts = real.slice(prefix.length).split('/');
    const [type, ab, rest, ...file] = parts;
    if (
      type &&
      ab &&
      rest &&
      file.length > 0 &&
      /^[0-9a-f]{2}$/.test(ab) &&
      /^[0-9a-f]{30,126}$/.test(rest)
    ) {
      const which = createHash('sha1')
        .update(`${type}/${file.join('/')}`)
        .digest('hex')
        .slice(0, 12);
      return `"${ab}${rest}-${which}"`;
    }
  }
  return `"${st.size.toString(16)}-${Math.trunc(st.mtimeMs).toString(16)}"`;
}

async function listDirectory(dir: string): Promise<DirEntry[]> {
  const dirents = await new Promise<fs.Dirent[]>((resolve, reject) =>
    fs.readdir(dir, { withFileTypes: true }, (e, d) => (e ? reject(e) : resolve(d))),
  );
  const entries: DirEntry[] = [];
  // Links are stat'ed (in small batches) so that linked directories, such as repositories, end in '/'.
  for (let i = 0; i < dirents.length; i += 64) {
    const batch = dirents.slice(i, i + 64);
    const resolved = await Promise.all(
      batch.map(async (d) => {
        if (!d.isSymbolicLink()) return { name: d.name, dir: d.isDirectory() };
        const st = await statCb(path.join(dir, d.name)).catch(() => undefined);
        return { name: d.name, dir: st?.isDirectory() ?? false };
      }),
    );
    entries.push(...resolved);
  }
  return entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
}
