/**
 * Public URL prefixes and the repository types served under them: the
 * content vhost's rewrites (index.ts) and the fast path's (fastpath.ts).
 */
export const PUBLIC_PREFIXES: ReadonlyArray<{ prefix: string; types: readonly string[] }> = [
  { prefix: '/pulp/repos/', types: ['yum', 'file'] },
  { prefix: '/pulp/deb/', types: ['deb'] },
];
