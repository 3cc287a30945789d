/**
 * The bench's pass-through reference, in its own process: a minimal undici
 * `request` + `pipeline` proxy to the origin (no save, no hash, no database),
 * the ceiling a Node proxy reaches on this machine in the same run
 * (perf-anchors.md §3, §5). Plain JavaScript, so that it runs without the
 * TypeScript loader and its memory is comparable with a compiled daemon's:
 * `node bench/passthrough.mjs <origin base>` prints `{"port":N}` once
 * listening; exits on SIGTERM.
 */
import http from 'node:http';
import { pipeline } from 'node:stream/promises';
import { Agent, request } from 'undici';

const originBase = process.argv[2];
const agent = new Agent({ keepAliveTimeout: 30_000 });

const server = http.createServer((req, res) => {
  request(`${originBase}${req.url ?? '/'}`, { dispatcher: agent, method: 'GET' })
    .then(async (up) => {
      const length = up.headers['content-length'];
      res.writeHead(up.statusCode, typeof length === 'string' ? { 'content-length': length } : {});
      await pipeline(up.body, res);
    })
    .catch(() => res.destroy());
});
server.keepAliveTimeout = 65_000;
server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});
process.on('SIGTERM', () => {
  server.closeAllConnections();
  server.close(() => {
    void agent.close().finally(() => process.exit(0));
  });
});
