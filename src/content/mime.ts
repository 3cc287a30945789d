/**
 * Content-Type from the file name's extension. Compressed files are served
 * as what they are (`.xml.gz` → application/gzip) and never with a
 * Content-Encoding: clients must receive the exact stored bytes (Pulp
 * plan.io #1781).
 */
import path from 'node:path';

export const DEFAULT_CONTENT_TYPE = 'application/octet-stream';

export const TYPES: Readonly<Record<string, string>> = {
  '.rpm': 'application/x-rpm',
  '.drpm': 'application/x-rpm',
  '.srpm': 'application/x-rpm',
  '.deb': 'application/vnd.debian.binary-package',
  '.udeb': 'application/vnd.debian.binary-package',
  '.ddeb': 'application/vnd.debian.binary-package',
  '.dsc': 'text/plain; charset=utf-8',
  '.xml': 'application/xml',
  '.gz': 'application/gzip',
  '.tgz': 'application/gzip',
  '.bz2': 'application/x-bzip2',
  '.xz': 'application/x-xz',
  '.zst': 'application/zstd',
  '.zck': 'application/zchunk',
  '.lz4': 'application/x-lz4',
  '.tar': 'application/x-tar',
  '.zip': 'application/zip',
  '.json': 'application/json',
  '.yaml': 'application/yaml',
  '.yml': 'application/yaml',
  '.txt': 'text/plain; charset=utf-8',
  '.html': 'text/html; charset=utf-8',
  '.htm': 'text/html; charset=utf-8',
  '.asc': 'application/pgp-signature',
  '.sig': 'application/pgp-signature',
  '.gpg': 'application/pgp-signature',
  '.iso': 'application/x-iso9660-image',
  '.img': 'application/octet-stream',
  '.sqlite': 'application/vnd.sqlite3',
};

/** The Content-Type for a file name (case-insensitive extension, octet-stream fallback). */
export function contentTypeFor(name: string): string {
  return TYPES[path.extname(name).toLowerCase()] ?? DEFAULT_CONTENT_TYPE;
}
