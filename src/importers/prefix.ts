/**
 * Public URL prefix of each repository type: clients see yum and file
 * repositories at `/pulp/repos/<published_path>/` and deb repositories at
 * `/pulp/deb/<published_path>/`; Apache rewrites both to
 * `/pulp/content/<published_path>/`, where the content daemon serves them.
 */
import type { RepoType } from '../db/index.ts';

const PREFIXES: Record<RepoType, string> = {
  file: '/pulp/repos/',
  yum: '/pulp/repos/',
  deb: '/pulp/deb/',
};

/** The public prefix (with both slashes) of a repository type. */
export function publicPrefix(type: RepoType): string {
  return PREFIXES[type];
}

/** Public URL path of a repository: prefix + published path + "/". */
export function publicPath(type: RepoType, publishedPath: string): string {
  return `${publicPrefix(type)}${publishedPath}/`;
}
