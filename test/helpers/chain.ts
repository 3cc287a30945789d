/**
 * Fixtures for the end-to-end chain test (test/e2e-chain.test.ts): the real
 * curl binary as the client, a plain HTTP(S) request with a method and a
 * source address, Squid access-log lines, and a throwaway PKI made with
 * openssl (a CA, a server certificate for 127.0.0.1, a client certificate),
 * and the top-level set-up of a chain test file.
 */
import { execFile } from 'node:child_process';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);

/**
 * Runs a chain test file's set-up at its top level. When it fails: `cleanup`, then a test named
 * 'set-up' failing with the error, so that the summary at the end of a run names the cause (the
 * file's tests fail too, without a chain).
 */
export async function setUpChain<T>(setup: () => Promise<T>, cleanup: () => Promise<void>): Promise<T> {
  try {
    return await setup();
  } catch (err) {
    await cleanup();
    test('set-up', () => {
      throw err;
    });
    return undefined as T;
  }
}

export interface CurlResult {
  /** curl's exit code (0 = transfer done, whatever the HTTP status). */
  exit: number;
  /** Status of the last response (0 when none arrived). */
  status: number;
  body: Buffer;
  /** curl's `%{json}` write-out: url_effective, num_redirects, redirect_url, errormsg, ... */
  info: Record<string, unknown>;
  /** Headers of the last response (`%{header_json}`), names lowercased. */
  headers: Record<string, string[]>;
  stderr: string;
}

const JSON_MARK = '@@pulp-lazy-json@@';
const HEADERS_MARK = '@@pulp-lazy-headers@@';

/** Runs `curl -sS [args] url`; the body comes from stdout, the write-out from stderr. */
export function curl(url: string, args: string[] = []): Promise<CurlResult> {
  return new Promise((resolve, reject) => {
    execFile(
      'curl',
      [
        '-sS',
        '--max-time',
        '30',
        '-w',
        `%{stderr}\n${JSON_MARK}%{json}${HEADERS_MARK}%{header_json}`,
        ...args,
        url,
      ],
      { encoding: 'buffer', maxBuffer: 256 << 20 },
      (err, stdout, stderrBuf) => {
        const stderr = stderrBuf.toString('utf8');
        const j = stderr.lastIndexOf(JSON_MARK);
        const h = stderr.lastIndexOf(HEADERS_MARK);
        if (j < 0 || h < j) {
          reject(new Error(`curl ${url}: no write-out (${err?.message ?? ''}): ${stderr.slice(0, 300)}`));
          return;
        }
        const info = JSON.parse(stderr.slice(j + JSON_MARK.length, h)) as Record<string, unknown>;
        const raw = stderr.slice(h + HEADERS_MARK.length).trim();
        const headers: Record<string, string[]> = {};
        for (const [k, v] of Object.entries(raw ? (JSON.parse(raw) as Record<string, string[]>) : {})) {
          headers[k.toLowerCase()] = v;
        }
        resolve({
          exit: typeof info.exitcode === 'number' ? info.exitcode : err ? 1 : 0,
          status: Number(info.response_code ?? 0),
          body: stdout,
          info,
          headers,
          stderr: stderr.slice(0, j).trim(),
        });
      },
    );
  });
}

export { type Reply, type RequestOptions, request } from './http.ts';

/** Squid access-log lines (native format) whose URL ends with `urlSuffix`. */
export async function squidLines(accessLog: string, urlSuffix: string): Promise<string[]> {
  const text = await readFile(accessLog, 'utf8').catch(() => '');
  return text.split('\n').filter((l) => {
    const url = l.trim().split(/\s+/)[6];
    return url?.endsWith(urlSuffix) ?? false;
  });
}

export interface Pki {
  ca: string;
  serverCert: string;
  serverKey: string;
  clientCert: string;
  clientKey: string;
}

/** A CA, a server certificate for IP 127.0.0.1 and a client certificate, all issued by the CA. */
/** A self-signed certificate and key for CN `name` (P-256), as `<dir>/<name>.pem` and `.key`. */
export async function selfSigned(dir: string, name: string): Promise<{ cert: string; key: string }> {
  const cert = path.join(dir, `${name}.pem`);
  const key = path.join(dir, `${name}.key`);
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  await run('openssl', [
    'req',
    '-x509',
    ...ec,
    '-days',
    '2',
    '-subj',
    `/CN=${name}`,
    '-keyout',
    key,
    '-out',
    cert,
  ]);
  return { cert, key };
}

export async function makePki(dir: string): Promise<Pki> {
  const ossl = (...args: string[]) => run('openssl', args, { cwd: dir });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  await writeFile(path.join(dir, 'server.ext'), 'basicConstraints=CA:FALSE\nsubjectAltName=IP:127.0.0.1\n');
  await writeFile(path.join(dir, 'client.ext'), 'basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n');
  await ossl(
    'req',
    '-x509',
    ...ec,
    '-keyout',
    'ca.key',
    '-out',
    'ca.crt',
    '-days',
    '2',
    '-subj',
    '/CN=pulp-lazy e2e CA',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  );
  for (const name of ['server', 'client']) {
    await ossl('req', '-new', ...ec, '-keyout', `${name}.key`, '-out', `${name}.csr`, '-subj', `/CN=${name}`);
    await ossl(
      'x509',
      '-req',
      '-in',
      `${name}.csr`,
      '-CA',
      'ca.crt',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      `${name}.crt`,
      '-days',
      '2',
      '-extfile',
      `${name}.ext`,
    );
  }
  const p = (f: string) => path.join(dir, f);
  return {
    ca: p('ca.crt'),
    serverCert: p('server.crt'),
    serverKey: p('server.key'),
    clientCert: p('client.crt'),
    clientKey: p('client.key'),
  };
}
