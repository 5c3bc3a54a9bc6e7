// Per-connection HTTP proxy: a connection made by POST /api/providers with
// "proxy": "http://[user:pass@]host:port" sends its upstream requests through that proxy,
// in both modes (the all-in-one; the distributed services, where the proxy travels in the
// credential over gRPC):
//   1. a plain http upstream: the request goes to the proxy in absolute form
//      (POST http://host:port/v1/...), with Proxy-Authorization from the URL's user:password;
//   2. an https upstream: a CONNECT tunnel, then TLS with the upstream's own name (SNI and
//      certificate check; the test CA is trusted through SSL_CERT_FILE); a proxy refusing the
//      CONNECT is a 502 naming the proxy;
//   3. a dead proxy: the request fails over to another connection without a proxy, or is a
//      502 naming the proxy (never its password) when that connection is the only one.
// The upstreams use host names only the test proxy knows (*.proxy.test), so an answer proves
// the edge went through it.
//
// OMNI_IT_MODES=allinone,distributed picks the modes (default both).

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  markFailed, missingBinaries, request, sleep, startGateway, startMock, startPostgres, startRedis,
  tempDir, waitFor,
} from './lib/index.mjs';

const MODES = (process.env.OMNI_IT_MODES || 'allinone,distributed').split(',').map((s) => s.trim()).filter(Boolean);
const CLIENT_KEY = 'sk-client-proxy-0001';
const UPSTREAM_HOST = 'upstream.proxy.test';  // resolved by the test proxy only
const BLOCKED_HOST = 'blocked.proxy.test';    // the test proxy refuses CONNECT to it
const PROXY_USER = 'omni';
const PROXY_PASSWORD = 'pa@ss-proxy-secret';

function openssl(args, cwd) {
  execFileSync('openssl', args, { cwd, stdio: 'pipe' });
}

// A CA, and a server certificate for `hosts` signed by it (as in tls.test.mjs).
function makePki(dir, hosts) {
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=Omni Proxy Test CA',
    '-keyout', 'ca.key', '-out', 'ca.pem'], dir);
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${hosts[0]}`,
    '-keyout', 'server.key', '-out', 'server.csr'], dir);
  fs.writeFileSync(path.join(dir, 'ext.cnf'), `subjectAltName=${hosts.map((h) => `DNS:${h}`).join(',')}\n`);
  openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
    '-days', '2', '-extfile', 'ext.cnf', '-out', 'server.pem'], dir);
  return { ca: path.join(dir, 'ca.pem'), key: path.join(dir, 'server.key'), cert: path.join(dir, 'server.pem') };
}

const listen = (server) => new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));

// An OpenAI-format upstream over TLS; counts its requests.
async function startHttpsUpstream(pki) {
  const stats = { requests: 0 };
  const server = https.createServer({ key: fs.readFileSync(pki.key), cert: fs.readFileSync(pki.cert) }, (req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      stats.requests++;
      const { model } = JSON.parse(body);
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({
        id: 'chatcmpl-proxy-tls', object: 'chat.completion', created: 1, model,
        choices: [{ index: 0, message: { role: 'assistant', content: 'tls through the tunnel' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 },
      }));
    });
  });
  await listen(server);
  return { server, stats, port: server.address().port };
}

// A small forward proxy: absolute-form requests (plain http) and CONNECT tunnels, both
// counted, with the Proxy-Authorization each carried. *.proxy.test names resolve to loopback.
async function startProxy() {
  const stats = { absolute: 0, connect: 0, auth: [], targets: [] };
  const resolveHost = (h) => (h.endsWith('.proxy.test') ? '127.0.0.1' : h);
  const server = http.createServer((req, res) => {
    let url;
    try {
      url = new URL(req.url);
    } catch {
      res.writeHead(400, { 'content-type': 'text/plain' });
      res.end('a proxy takes absolute-form requests');
      return;
    }
    stats.absolute++;
    stats.auth.push(req.headers['proxy-authorization'] || '');
    stats.targets.push(`${req.method} ${req.url}`);
    const headers = { ...req.headers };
    delete headers['proxy-authorization'];
    const up = http.request({
      host: resolveHost(url.hostname), port: Number(url.port || 80), method: req.method,
      path: `${url.pathname}${url.search}`, headers, agent: false,
    }, (ur) => {
      res.writeHead(ur.statusCode, ur.headers);
      ur.pipe(res);
    });
    up.on('error', (e) => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'text/plain' });
      res.end(`proxy: ${e.message}`);
    });
    req.pipe(up);
  });
  server.on('connect', (req, socket, head) => {
    stats.connect++;
    stats.auth.push(req.headers['proxy-authorization'] || '');
    stats.targets.push(`CONNECT ${req.url}`);
    const colon = req.url.lastIndexOf(':');
    const host = req.url.slice(0, colon).replace(/^\[|\]$/g, '');
    const port = Number(req.url.slice(colon + 1));
    socket.on('error', () => {});
    if (host === BLOCKED_HOST) {
      socket.end('HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\n\r\n');
      return;
    }
    const up = net.connect(port, resolveHost(host), () => {
      socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      if (head.length) up.write(head);
      up.pipe(socket);
      socket.pipe(up);
    });
    up.on('error', () => socket.destroy());
    socket.on('close', () => up.destroy());
  });
  await listen(server);
  const port = server.address().port;
  return { server, stats, port, url: `http://127.0.0.1:${port}` };
}

// A "proxy" that accepts and at once closes every connection; counts them.
async function startClosingProxy() {
  const stats = { accepted: 0 };
  const server = net.createServer((s) => {
    stats.accepted++;
    s.on('error', () => {});
    s.destroy();
  });
  await listen(server);
  return { server, stats, url: `http://127.0.0.1:${server.address().port}` };
}

// A loopback port nothing listens on.
async function deadPort() {
  const s = await listen(net.createServer());
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

const basic = (user, password) => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

for (const mode of MODES) {
  const missing = missingBinaries(mode);
  const skip = missing.length && process.env.OMNI_IT_SKIP_MISSING === '1'
    ? `binaries not built: ${missing.join('; ')}` : false;

  describe(`per-connection proxy (${mode})`, { timeout: 180000, skip }, () => {
    let mock;
    let tlsUp;
    let proxy;
    let closing;
    let redis;
    let pg;
    let gw;

    const test = (name, fn) => it(name, { timeout: 60000 }, async (t) => {
      try {
        await fn(t);
      } catch (e) {
        markFailed();
        const err = e instanceof assert.AssertionError ? e : new Error(`${e.name}: ${e.message}\n${e.stack}`);
        err.message += `\n===== process logs (${mode}) =====\n${gw ? gw.logs(40) : ''}`;
        throw err;
      }
    });
    const admin = (p, body) => request(`${gw.url}${p}`, {
      method: 'POST', body, headers: { authorization: `Bearer ${gw.adminKey}`, 'content-type': 'application/json' },
    });
    const makeNode = async (id, baseUrl) => {
      const r = await admin('/api/provider-nodes', { id, format: 'openai', baseUrl, models: ['gpt-4o-mini'] });
      assert.equal(r.status, 201, r.text);
    };
    const makeConnection = async (provider, name, extra = {}) => {
      const r = await admin('/api/providers', { provider, name, apiKey: `sk-up-${name}`, ...extra });
      assert.equal(r.status, 201, r.text);
    };
    const chat = (node) => request(`${gw.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' },
      body: { model: `${node}/gpt-4o-mini`, messages: [{ role: 'user', content: 'hi' }] },
    });
    // The first answer once the router knows the node's connections (the catalog poll).
    const firstAnswer = async (node, done) => {
      let last;
      await waitFor(`${node} to be served`, async () => {
        last = await chat(node);
        return done(last);
      }, { timeoutMs: 15000, intervalMs: 200 });
      return last;
    };

    before(async () => {
      try {
        const pki = makePki(tempDir('proxy-pki'), [UPSTREAM_HOST, BLOCKED_HOST]);
        [mock, tlsUp, proxy, closing] = await Promise.all([
          startMock(), startHttpsUpstream(pki), startProxy(), startClosingProxy(),
        ]);
        if (mode === 'distributed') [redis, pg] = await Promise.all([startRedis(), startPostgres()]);
        gw = await startGateway({
          mode, redis, postgres: pg,
          config: {
            server: { require_api_key: true, upstream_connect_timeout_ms: 3000, upstream_timeout_ms: 20000 },
            api_keys: [{ name: 'client', key: CLIENT_KEY }],
            resilience: { cooldown: { base_ms: 1, max_ms: 50 } },
          },
          env: { SSL_CERT_FILE: pki.ca },
        });
      } catch (e) {
        markFailed();
        throw e;
      }
    });

    after(async () => {
      await gw?.stop();
      await Promise.all([mock?.stop(), redis?.stop(), pg?.stop()]);
      for (const s of [tlsUp?.server, proxy?.server, closing?.server]) {
        s?.closeAllConnections?.();
        s?.close();
      }
    });

    test('a plain http upstream is reached through the proxy in absolute form, with Basic credentials', async () => {
      const port = mock.port;
      await makeNode('via-proxy', `http://${UPSTREAM_HOST}:${port}/v1`);
      const auth = `${PROXY_USER}:${encodeURIComponent(PROXY_PASSWORD)}`;
      await makeConnection('via-proxy', 'a', { proxy: `http://${auth}@127.0.0.1:${proxy.port}` });
      const since = await mock.mark();
      const before = proxy.stats.absolute;
      const res = await firstAnswer('via-proxy', (r) => r.status === 200);
      assert.equal(res.json.object, 'chat.completion', res.text);
      assert.ok(proxy.stats.absolute > before, `the proxy saw no request: ${JSON.stringify(proxy.stats)}`);
      assert.ok(proxy.stats.targets.includes(`POST http://${UPSTREAM_HOST}:${port}/v1/chat/completions`),
        JSON.stringify(proxy.stats.targets));
      assert.equal(proxy.stats.auth.at(-1), basic(PROXY_USER, PROXY_PASSWORD));
      // The mock got it with the connection's key, in origin form (the proxy forwarded it).
      const got = await mock.requests({ since, path: '/v1/chat/completions' });
      assert.ok(got.length >= 1, 'the mock saw no request');
      assert.equal(got.at(-1).headers.authorization, 'Bearer sk-up-a');

      // Every request goes through it.
      const n = proxy.stats.absolute;
      for (let i = 0; i < 3; i++) assert.equal((await chat('via-proxy')).status, 200);
      assert.equal(proxy.stats.absolute, n + 3);
    });

    test('an https upstream is reached through a CONNECT tunnel, verified by its own name', async () => {
      await makeNode('tls-proxy', `https://${UPSTREAM_HOST}:${tlsUp.port}/v1`);
      await makeConnection('tls-proxy', 'a', { proxy: proxy.url });
      const connects = proxy.stats.connect;
      const upstream = tlsUp.stats.requests;
      const res = await firstAnswer('tls-proxy', (r) => r.status === 200);
      assert.equal(res.json.choices[0].message.content, 'tls through the tunnel', res.text);
      assert.ok(proxy.stats.connect > connects, JSON.stringify(proxy.stats));
      assert.ok(proxy.stats.targets.includes(`CONNECT ${UPSTREAM_HOST}:${tlsUp.port}`), JSON.stringify(proxy.stats.targets));
      assert.equal(proxy.stats.auth.at(-1), '');  // no credentials in this proxy URL
      assert.ok(tlsUp.stats.requests > upstream);
      // Kept alive: more requests ride the same tunnel.
      const c = proxy.stats.connect;
      for (let i = 0; i < 3; i++) assert.equal((await chat('tls-proxy')).status, 200);
      assert.ok(proxy.stats.connect <= c + 1, `${proxy.stats.connect - c} new tunnels for 3 requests`);
    });

    test('a proxy refusing the CONNECT is a 502 naming the proxy', async () => {
      await makeNode('tls-blocked', `https://${BLOCKED_HOST}:${tlsUp.port}/v1`);
      await makeConnection('tls-blocked', 'a', { proxy: proxy.url });
      const res = await firstAnswer('tls-blocked', (r) => r.status === 502);
      assert.match(res.json.error.message, /refused CONNECT/, res.text);
      assert.ok(res.json.error.message.includes(`127.0.0.1:${proxy.port}`), res.text);
      assert.match(res.json.error.message, /403/, res.text);
    });

    test('a dead proxy fails over to a connection without one', async () => {
      await makeNode('failover', `${mock.url}/v1`);
      await makeConnection('failover', 'dead', { proxy: closing.url, priority: 1 });
      await makeConnection('failover', 'direct', { priority: 2 });
      await firstAnswer('failover', (r) => r.status === 200);
      await sleep(100);  // past the dead connection's cooldown (max 50 ms)
      const accepted = closing.stats.accepted;
      const since = await mock.mark();
      const res = await chat('failover');
      assert.equal(res.status, 200, res.text);
      assert.ok(closing.stats.accepted > accepted, 'the proxied connection was not tried first');
      const got = await mock.requests({ since, path: '/v1/chat/completions' });
      assert.equal(got.at(-1).headers.authorization, 'Bearer sk-up-direct');
    });

    test('a dead proxy on the only connection is a 502 naming the proxy, never its password', async () => {
      const port = await deadPort();
      await makeNode('dead-only', `${mock.url}/v1`);
      await makeConnection('dead-only', 'a', { proxy: `http://${PROXY_USER}:hunter2-secret@127.0.0.1:${port}` });
      const res = await firstAnswer('dead-only', (r) => r.status === 502);
      assert.match(res.json.error.message, new RegExp(`proxy 127\\.0\\.0\\.1:${port}`), res.text);
      assert.ok(!res.text.includes('hunter2'), res.text);
      assert.ok(!gw.logs(200).includes('hunter2-secret'), 'a process log holds the proxy password');
    });
  });
}
