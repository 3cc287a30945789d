/**
 * The upstream matrix with nginx as the upstream: sync of
 * file, yum and deb repositories, misses through serve and through the Apache chain with and
 * without Squid, download-repo and sweep. See test/helpers/upstream-matrix.ts.
 */
import { upstreamMatrix } from './helpers/upstream-matrix.ts';

await upstreamMatrix('nginx');
