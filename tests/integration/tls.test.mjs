// Upstream HTTPS: the gateway verifies the provider's certificate chain and host name.
// A throwaway CA signs a certificate for "localhost"; the gateway trusts it only through
// SSL_CERT_FILE (OpenSSL's default verify paths), as it would trust a public CA.

import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import https from 'node:https';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { missingBinaries, request, startGateway, tempDir } from './lib/index.mjs';

const CLIENT_KEY = 'sk-client-tls-0001';

function openssl(args, cwd) {
  execFileSync('openssl', args, { cwd, stdio: 'pipe' });
}

// A CA, and a server certificate for `host` signed by it.
function makePki(dir, host) {
  openssl(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', '/CN=Omni Test CA',
    '-keyout', 'ca.key', '-out', 'ca.pem'], dir);
  openssl(['req', '-newkey', 'rsa:2048', '-nodes', '-subj', `/CN=${host}`,
    '-keyout', 'server.key', '-out', 'server.csr'], dir);
  fs.writeFileSync(path.join(dir, 'ext.cnf'), `subjectAltName=DNS:${host}\n`);
  openssl(['x509', '-req', '-in', 'server.csr', '-CA', 'ca.pem', '-CAkey', 'ca.key', '-CAcreateserial',
    '-days', '2', '-extfile', 'ext.cnf', '-out', 'server.pem'], dir);
  return { ca: path.join(dir, 'ca.pem'), key: path.join(dir, 'server.key'), cert: path.join(dir, 'server.pem') };
}

function startHttpsUpstream(pki) {
  const server = https.createServer({
    key: fs.readFileSync(pki.key), cert: fs.readFileSync(pki.cert),
  }, (req, res) => {
    let body = '';
    req.on('data', (c) => { body += c; });
    req.on('end', () => {
      const model = JSON.parse(body).model;
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({
        id: 'chatcmpl-tls', object: 'chat.completion', created: 1, model,
        choices: [{ index: 0, message: { role: 'assistant', content: 'over tls' }, finish_reason: 'stop' }],
        usage: { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 },
      }));
    });
  });
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

const skip = missingBinaries('allinone').length ? 'all-in-one binary not built' : false;

describe('upstream TLS (allinone)', { timeout: 120000, skip }, () => {
  let upstream;
  let pki;
  const gateways = [];

  before(async () => {
    pki = makePki(tempDir('tls-pki'), 'localhost');
    upstream = await startHttpsUpstream(pki);
  });
  after(async () => {
    await Promise.all(gateways.map((g) => g.stop().catch(() => {})));
    upstream?.close();
  });

  async function gateway(host, env) {
    const port = upstream.address().port;
    const gw = await startGateway({
      mode: 'allinone',
      env,
      config: {
        server: { require_api_key: true, upstream_connect_timeout_ms: 3000 },
        nodes: [{ id: 'secure', format: 'openai', base_url: `https://${host}:${port}/v1`, models: ['m'] }],
        connections: [{ provider: 'secure', name: 'a', api_key: 'sk-up' }],
        api_keys: [{ name: 'tls', key: CLIENT_KEY }],
      },
    });
    gateways.push(gw);
    return gw;
  }

  const chat = (gw) => request(`${gw.baseURL}/chat/completions`, {
    method: 'POST',
    headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'secure/m', messages: [{ role: 'user', content: 'hi' }] }),
  });

  it('answers through a provider whose certificate chains to a trusted CA', async () => {
    const gw = await gateway('localhost', { SSL_CERT_FILE: pki.ca });
    const res = await chat(gw);
    assert.equal(res.status, 200, res.text);
    assert.equal(res.json.choices[0].message.content, 'over tls');
    assert.equal(res.json.model, 'm');
  });

  it('refuses a certificate from an untrusted CA (502, nothing sent)', async () => {
    const gw = await gateway('localhost', { SSL_CERT_FILE: '/nonexistent-ca.pem' });
    const res = await chat(gw);
    assert.equal(res.status, 502, res.text);
    assert.match(res.json.error.message, /TLS handshake|certificate/i);
  });

  it('refuses a certificate for another host name', async () => {
    // 127.0.0.1 is not in the certificate's names even though the CA is trusted.
    const gw = await gateway('127.0.0.1', { SSL_CERT_FILE: pki.ca });
    const res = await chat(gw);
    assert.equal(res.status, 502, res.text);
  });
});
