/** The `{{name}}` renderer and the values computed from the config. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { defaultConfig, parseConfig } from '../src/config.ts';
import { DEBIAN_APACHE, renderAll, renderTemplate, templateValues } from '../src/render/index.ts';

test('placeholders are replaced; a missing key throws PL_TEMPLATE naming it', () => {
  assert.equal(renderTemplate('a {{x}} b {{ y }}', { x: 1, y: 'two' }), 'a 1 b two');
  assert.throws(() => renderTemplate('a {{x}} {{nope}}', { x: 1 }, 'f.tmpl'), {
    code: 'PL_TEMPLATE',
    message: 'f.tmpl: no value for {{nope}}',
  });
  assert.throws(() => renderTemplate('{{ bad key }}', {}), {
    code: 'PL_TEMPLATE',
    message: /bad placeholder/,
  });
});

test('a placeholder alone on its line indents multi-line values and vanishes when empty', () => {
  const tmpl = '<X>\n    {{block}}\n    {{empty}}\n    tail {{v}}\n</X>\n';
  assert.equal(
    renderTemplate(tmpl, { block: 'one\ntwo\n\nthree', empty: '', v: 'z' }),
    '<X>\n    one\n    two\n\n    three\n    tail z\n</X>\n',
  );
});

test('text from a value is never scanned for placeholders', () => {
  assert.equal(renderTemplate('{{a}} {{b}}', { a: '{{b}}', b: 'x' }), '{{b}} x');
});

test('rendering is deterministic and has no placeholders left', () => {
  const a = renderAll(defaultConfig(), { apache: DEBIAN_APACHE });
  const b = renderAll(defaultConfig(), { apache: DEBIAN_APACHE });
  assert.deepEqual(a, b);
  assert.deepEqual(Object.keys(a).sort(), ['httpd.conf', 'squid.conf']);
  for (const text of Object.values(a)) assert.doesNotMatch(text, /\{\{|\}\}/);
});

test('proxy.cache = "none": no squid.conf, Apache proxies straight to the streamer (unix socket syntax)', () => {
  const config = parseConfig(
    {
      proxy: { cache: 'none' },
      streamer: { listen: 'unix:/run/pulp-lazy/streamer.sock' },
      content: { listen: 'unix:/run/c.sock' },
    },
    't',
    {},
  );
  const out = renderAll(config);
  assert.deepEqual(Object.keys(out), ['httpd.conf']);
  const httpd = out['httpd.conf']!;
  assert.match(
    httpd,
    /RewriteRule "\^\/streamer\/" "unix:\/run\/pulp-lazy\/streamer\.sock\|http:\/\/localhost\/%1" \[P,QSD,NE\]/,
  );
  assert.match(httpd, /<Proxy "unix:\/run\/pulp-lazy\/streamer\.sock\|http:\/\/localhost\/">/);
  assert.match(
    httpd,
    /ProxyPass \/pulp\/content\/ "unix:\/run\/c\.sock\|http:\/\/localhost\/pulp\/content\/"/,
  );
});

test('configs the proxies cannot run with are refused with PL_RENDER', () => {
  const bad = [
    [{ streamer: { listen: 'unix:/run/s.sock' } }, /Squid reaches the streamer over TCP only/],
    [{ apache: { authorizer_listen: 'unix:/run/a.sock' } }, /TCP only/],
    [{ squid: { maximum_object_size: 'huge' } }, /maximum_object_size/],
    [{ apache: { tls_cert: '/etc/c.pem' } }, /must be set together/],
  ] as const;
  for (const [raw, message] of bad) {
    assert.throws(() => renderAll(parseConfig(raw, 't', {})), { code: 'PL_RENDER', message });
  }
});

test('timeouts: Squid waits longer than the streamer, Apache longer than Squid, pools close before the daemons do', () => {
  const config = parseConfig(
    {
      streamer: {
        connect_timeout: '10s',
        headers_timeout: '20s',
        body_idle_timeout: '30s',
        keep_alive_timeout: '65s',
      },
      content: { keep_alive_timeout: '30s' },
      squid: { shutdown_lifetime: '1500ms' },
    },
    't',
    {},
  );
  const v = templateValues(config, DEBIAN_APACHE);
  assert.equal(v.read_timeout, 10 + 20 + 30 + 60);
  assert.ok(Number(v.streamer_timeout) > Number(v.read_timeout));
  assert.equal(v.server_idle_pconn_timeout, 60);
  assert.equal(v.content_ttl, 25);
  assert.equal(v.shutdown_lifetime, 2);
});

test('apache.max_request_workers sizes the event MPM in children of 64 threads', () => {
  const mpm = (workers?: number) =>
    String(
      templateValues(
        parseConfig(workers ? { apache: { max_request_workers: workers } } : {}, 't', {}),
        DEBIAN_APACHE,
      ).mpm,
    );
  assert.match(mpm(), /^ThreadsPerChild 64$/m);
  assert.match(mpm(), /^ServerLimit 4$/m);
  assert.match(mpm(), /^MaxRequestWorkers 256$/m);
  // Rounded up to whole children (Apache itself would round down, with a warning).
  assert.match(mpm(300), /^ServerLimit 5$/m);
  assert.match(mpm(300), /^MaxRequestWorkers 320$/m);
  assert.match(mpm(300), /^MaxSpareThreads 320$/m);
  assert.match(renderAll(defaultConfig(), { apache: DEBIAN_APACHE })['httpd.conf']!, /^StartServers 2$/m);
});

test('TLS: both vhosts terminate TLS, the client certificate header is unset first and then set from mod_ssl', () => {
  const withCa = renderAll(
    parseConfig({ apache: { tls_cert: '/c.pem', tls_key: '/k.pem', tls_ca: '/ca.pem' } }, 't', {}),
  )['httpd.conf']!;
  assert.equal(withCa.match(/SSLEngine on/g)?.length, 2);
  assert.match(withCa, /SSLVerifyClient optional\n/);
  assert.match(withCa, /SSLCACertificateFile "\/ca\.pem"/);
  assert.match(withCa, /SSLOptions \+ExportCertData/);
  assert.match(withCa, /RequestHeader set X-Forwarded-Proto https early/);
  const unset = withCa.indexOf('RequestHeader unset X-Pulp-Client-Cert early');
  const set = withCa.indexOf('RequestHeader set X-Pulp-Client-Cert "%{SSL_CLIENT_CERT}s"');
  assert.ok(unset > 0 && set > unset);
  const noCa = renderAll(parseConfig({ apache: { tls_cert: '/c.pem', tls_key: '/k.pem' } }, 't', {}))[
    'httpd.conf'
  ]!;
  assert.match(noCa, /SSLVerifyClient optional_no_ca/);
  const plain = renderAll(defaultConfig())['httpd.conf']!;
  assert.doesNotMatch(plain, /SSL/);
  assert.match(plain, /RequestHeader unset X-Pulp-Client-Cert early/);
  assert.doesNotMatch(plain, /RequestHeader set X-Pulp-Client-Cert/);
});
