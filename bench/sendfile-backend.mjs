/**
 * The bench's X-Sendfile reference, in its own process: a minimal Node
 * backend behind the same rendered Apache config as the content daemon. It
 * answers each known path with 200 + X-Sendfile (and the daemon's other hit
 * headers) from a map read at start: no file system work, no checks per
 * request. What the Apache → Node → X-Sendfile topology reaches on this
 * machine in the same run (perf-anchors.md §1, "backend does no fs work").
 * Plain JavaScript, like bench/passthrough.mjs.
 *
 * `node bench/sendfile-backend.mjs <map.json> <port>`: the map is
 * `{ "<request path>": "<absolute file>" }`; prints `{"port":N}` once
 * listening; exits on SIGTERM.
 */
import { readFileSync, statSync } from 'node:fs';
import http from 'node:http';

const [mapFile, port] = process.argv.slice(2);
const answers = new Map();
for (const [url, file] of Object.entries(JSON.parse(readFileSync(mapFile, 'utf8')))) {
  const st = statSync(file);
  answers.set(url, {
    'Content-Type': 'application/octet-stream',
    ETag: `"${st.size.toString(16)}-${Math.trunc(st.mtimeMs).toString(16)}"`,
    'Last-Modified': st.mtime.toUTCString(),
    'Content-Length': 0,
    'X-Sendfile': file,
  });
}

const server = http.createServer((req, res) => {
  const headers = answers.get(req.url);
  if (headers) res.writeHead(200, headers);
  else res.writeHead(404, { 'Content-Length': 0 });
  res.end();
});
server.keepAliveTimeout = 65_000;
server.listen(Number(port), '127.0.0.1', () => {
  process.stdout.write(`${JSON.stringify({ port: server.address().port })}\n`);
});
process.on('SIGTERM', () => {
  server.close();
  server.closeAllConnections();
});
