// The accounts service's admin API through the real edge, in both modes (the all-in-one with
// SQLite; the distributed services with PostgreSQL and Redis and two edges):
//   1. client keys made by POST /api/keys: shown once, masked in every listing, usable at once
//      on every edge, refused (401) on every edge within the edge's key cache (5 s) + the
//      accounts sync (1 s) of DELETE; allowedModels refuse other models (403);
//   2. a connection made by POST /api/providers on a node made by POST /api/provider-nodes
//      serves within ~2 s; PATCH enabled:false stops it, enabled:true brings it back, DELETE
//      removes it; /api/providers/{id}/test is ok with the right key, not with a wrong one;
//   3. admin login: the auth_token cookie (HttpOnly) opens /api, logout clears it; 5 failed
//      logins from one client IP → 429 with Retry-After (for that IP only);
//   4. OAuth logins of every subscription provider against mock-oauth.mjs (auth-code flows
//      through the mock's authorize redirect and /exchange, device flows through /poll), the
//      connections listed active with no token in the body; claude-code (its base_url pointed
//      at the mock provider by a `providers:` entry) sends the mock's access token with the
//      OAuth beta header, and 10 concurrent requests on an expiring token refresh it once;
//   5. no provider key, client key or OAuth token in clear in the database (SQLite files /
//      every PostgreSQL table) or in any process log.
//
// OMNI_IT_MODES=allinone,distributed picks the modes (default both).

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  assertClientError, markFailed, missingBinaries, request, sleep, startGateway, startMock,
  startPostgres, startRedis, TEST_SECRETS, waitFor, rawRequest,
} from './lib/index.mjs';
import { startMockOAuth } from './mock-oauth.mjs';

const MODES = (process.env.OMNI_IT_MODES || 'allinone,distributed').split(',').map((s) => s.trim()).filter(Boolean);

// A marker no log or database may hold in clear: part of a provider key set through the API.
const MARKER = `mk${crypto.randomBytes(6).toString('hex')}`;
const SECRET_PROVIDER_KEY = `sk-up-secret-${MARKER}-0001`;
const FILE_NODE = 'p-file';
const FILE_KEY = 'sk-up-accounts-file';  // the config file's connection (in the config in clear)
const NODE_KEY = 'sk-up-accounts-node';
const CLIENT_KEY = 'sk-client-accounts-0001';  // a config-file client key
const CC_MODEL = 'claude-sonnet-4-5-20250929';
const OAUTH_PROVIDERS = ['claude-code', 'codex', 'gemini-cli', 'copilot', 'qwen', 'kiro', 'iflow'];
// Every claude-code token endpoint the accounts service may use.
const CLAUDE_TOKEN_PATHS = ['POST /platform.claude.com/v1/oauth/token', 'POST /console.anthropic.com/v1/oauth/token'];
const REVOKE_LIMIT_MS = 8000;  // key cache 5 s + accounts sync 1 s + margin

function gatewayConfig(mockUrl, ccMockUrl) {
  return {
    server: { host: '127.0.0.1', threads: 2, upstream_connect_timeout_ms: 2000, upstream_timeout_ms: 20000 },
    nodes: [
      { id: FILE_NODE, name: 'openai on the mock', format: 'openai', base_url: `${mockUrl}/v1`,
        models: ['gpt-4o-mini', 'other-model'] },
    ],
    connections: [{ provider: FILE_NODE, name: 'main', api_key: FILE_KEY }],
    api_keys: [{ name: 'client', key: CLIENT_KEY }],
    // The built-in claude-code provider, on a mock provider that takes any key.
    providers: [{ id: 'cc', base_url: `${ccMockUrl}/v1` }],
    resilience: { cooldown: { base_ms: 1, max_ms: 50 } },
  };
}

// A request through node:http from a chosen loopback source address.
const requestFrom = (url, { method = 'GET', body = '', ...rest } = {}) => rawRequest(url, { method, body, ...rest });

const chat = (baseUrl, key, model = `${FILE_NODE}/gpt-4o-mini`) => request(`${baseUrl}/v1/chat/completions`, {
  method: 'POST',
  headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
  body: { model, messages: [{ role: 'user', content: 'hello' }], max_tokens: 16 },
});

// Every file under `dir` (recursively).
function filesUnder(dir) {
  const out = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...filesUnder(p));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

for (const mode of MODES) {
  const missing = missingBinaries(mode);
  const skip = missing.length && process.env.OMNI_IT_SKIP_MISSING === '1'
    ? `binaries not built: ${missing.join('; ')}` : false;

  describe(`accounts (${mode})`, { timeout: 180000, skip }, () => {
    let mock;     // the API-key nodes' provider: checks keys
    let ccMock;   // claude-code's provider: any key
    let oauth;    // the OAuth servers (in this process)
    let redis;
    let pg;
    let gw;
    let createdClientKey = null;  // a key the API made (the secrets case looks for it)

    const test = (name, fn, opts = {}) => it(name, { timeout: 60000, ...opts }, async (t) => {
      try {
        await fn(t);
      } catch (e) {
        markFailed();
        const err = e instanceof assert.AssertionError ? e : new Error(`${e.name}: ${e.message}\n${e.stack}`);
        err.message += `\n===== process logs (${mode}) =====\n${gw ? gw.logs(40) : ''}${mock ? mock.proc.tail(10) : ''}`;
        throw err;
      }
    });
    const admin = (p, { method = 'GET', body, url = gw.url } = {}) => request(`${url}${p}`, {
      method, body, headers: { authorization: `Bearer ${gw.adminKey}`, 'content-type': 'application/json' },
    });
    // A node on the mock (POST /api/provider-nodes) and a connection on it (POST /api/providers).
    const makeNode = async (id, models) => {
      const r = await admin('/api/provider-nodes', {
        method: 'POST', body: { id, format: 'openai', baseUrl: `${mock.url}/v1`, models },
      });
      assert.equal(r.status, 201, r.text);
      return r.json;
    };
    const makeConnection = async (provider, name, apiKey, extra = {}) => {
      const r = await admin('/api/providers', { method: 'POST', body: { provider, name, apiKey, ...extra } });
      assert.equal(r.status, 201, r.text);
      assert.ok(!r.text.includes(apiKey), `the created connection shows its key: ${r.text}`);
      assert.equal(r.json.id, `${provider}:${name}`);
      return r.json;
    };

    before(async () => {
      try {
        [mock, ccMock, oauth] = await Promise.all([
          startMock({ keys: [FILE_KEY, NODE_KEY, SECRET_PROVIDER_KEY] }), startMock(), startMockOAuth({ port: 0 }),
        ]);
        if (mode === 'distributed') [redis, pg] = await Promise.all([startRedis(), startPostgres()]);
        gw = await startGateway({
          mode, redis, postgres: pg, edges: 2, config: gatewayConfig(mock.url, ccMock.url),
          env: { REQUIRE_API_KEY: 'true', OMNIROUTE_OAUTH_BASE: oauth.url },
        });
      } catch (e) {
        markFailed();
        throw e;
      }
    });

    after(async () => {
      await gw?.stop();
      await Promise.all([mock?.stop(), ccMock?.stop(), oauth?.close(), redis?.stop(), pg?.stop()]);
    });

    test('a created client key works at once, is masked in lists and is refused within seconds of DELETE', async (t) => {
      const created = await admin('/api/keys', { method: 'POST', body: { name: 'it-revoke', team: 'it' } });
      assert.equal(created.status, 201, created.text);
      const { key, id } = created.json;
      assert.ok(typeof key === 'string' && key.length >= 20, created.text);
      assert.ok(id, created.text);
      assert.ok(!('hash' in created.json), created.text);
      createdClientKey = key;
      for (const e of gw.edges) {
        const r = await chat(e.url, key);
        assert.equal(r.status, 200, r.text);
      }
      // Shown once: never again in full.
      const list = await admin('/api/keys');
      assert.equal(list.status, 200, list.text);
      assert.ok(!list.text.includes(key), 'GET /api/keys shows a full key');
      const entry = list.json.keys.find((k) => k.id === id);
      assert.ok(entry, list.text);
      assert.equal(entry.managedBy, 'api');
      assert.ok(entry.prefix && !entry.key && !entry.hash, JSON.stringify(entry));
      assert.ok(key.startsWith(entry.prefix.replace(/[.*…]+.*$/, '')), `${entry.prefix} masks ${key.slice(0, 6)}…`);
      assert.ok(list.json.keys.some((k) => k.id === 'cfg:client' && k.managedBy === 'file'), list.text);
      const one = await admin(`/api/keys/${encodeURIComponent(id)}`);
      assert.equal(one.status, 200, one.text);
      assert.ok(!one.text.includes(key));
      const reveal = await admin(`/api/keys/${encodeURIComponent(id)}/reveal`);
      assert.equal(reveal.status, 403, reveal.text);
      assert.ok(!reveal.text.includes(key));

      // Revoked: every edge refuses it within the cache TTL + the sync interval.
      const del = await admin(`/api/keys/${encodeURIComponent(id)}`, { method: 'DELETE' });
      assert.equal(del.status, 200, del.text);
      const t0 = Date.now();
      const took = await Promise.all(gw.edges.map(async (e) => {
        let last;
        await waitFor(`edge ${e.port} to refuse the revoked key`, async () => {
          last = await chat(e.url, key);
          return last.status === 401;
        }, { timeoutMs: REVOKE_LIMIT_MS + 4000, intervalMs: 100 });
        const ms = Date.now() - t0;
        assertClientError('openai', last, 401);
        return ms;
      }));
      t.diagnostic(`revoked key refused after ${took.join(' ms, ')} ms (per edge)`);
      for (const ms of took) assert.ok(ms <= REVOKE_LIMIT_MS, `refused after ${ms} ms (limit ${REVOKE_LIMIT_MS})`);
      for (const e of gw.edges) assert.equal((await chat(e.url, key)).status, 401);
      assert.equal((await admin(`/api/keys/${encodeURIComponent(id)}`, { method: 'DELETE' })).status, 404);
      assert.equal((await chat(gw.url, CLIENT_KEY)).status, 200);
    });

    test('a created key\'s allowedModels refuse other models with 403', async () => {
      const created = await admin('/api/keys', {
        method: 'POST', body: { name: 'it-limited', allowedModels: [`${FILE_NODE}/gpt-4o-mini`] },
      });
      assert.equal(created.status, 201, created.text);
      const { key } = created.json;
      for (const e of gw.edges) {
        const ok = await chat(e.url, key);
        assert.equal(ok.status, 200, ok.text);
        const refused = await chat(e.url, key, `${FILE_NODE}/other-model`);
        const err = assertClientError('openai', refused, 403);
        assert.equal(err.type, 'permission_error');
        assert.match(err.message, /other-model/);
      }
      // The file key has no such limit.
      assert.equal((await chat(gw.url, CLIENT_KEY, `${FILE_NODE}/other-model`)).status, 200);
      // Bad bodies are refused.
      const bad = await admin('/api/keys', { method: 'POST', body: { name: 'x', allowedModels: 'gpt' } });
      assert.equal(bad.status, 400, bad.text);
      const unknown = await admin('/api/keys', { method: 'POST', body: { name: 'x', color: 'red' } });
      assert.equal(unknown.status, 400, unknown.text);
    });

    test('a connection added through the API serves within seconds; disable, enable, delete, test', async (t) => {
      const NODE = 'it-node';
      const MODEL = `${NODE}/node-model`;
      const node = await makeNode(NODE, ['node-model']);
      assert.equal(node.id, NODE);
      assert.equal(node.managedBy, 'api');
      // Known to every edge's router, but no connection yet.
      for (const e of gw.edges) {
        await waitFor('the node to reach the router', async () => {
          const r = await chat(e.url, CLIENT_KEY, MODEL);
          return r.status !== 400 && /connection/i.test(r.text);
        }, { timeoutMs: 10000, intervalMs: 200 });
      }
      const conn = await makeConnection(NODE, 'a', NODE_KEY);
      assert.equal(conn.status, 'active');
      assert.equal(conn.authType, 'api_key');
      assert.ok(conn.apiKey && conn.apiKey !== NODE_KEY, JSON.stringify(conn));
      const id = conn.id;
      // Serves within ~2 s on every edge (the router polls accounts every ~1 s).
      // Polls every edge until `want(status)`; the statuses seen on the way are returned.
      const served = async (what, want) => {
        const t0 = Date.now();
        let last;
        const seen = new Set();
        for (const e of gw.edges) {
          await waitFor(what, async () => {
            last = await chat(e.url, CLIENT_KEY, MODEL);
            seen.add(last.status);
            return want(last.status);
          }, { timeoutMs: 10000, intervalMs: 100 });
        }
        return { ms: Date.now() - t0, last, seen: [...seen] };
      };
      const noConnection = (s) => s === 404 || s === 503;
      const on = await served('the new connection to serve', (s) => s === 200);
      t.diagnostic(`new connection served after ${on.ms} ms`);
      assert.ok(on.ms <= 3500, `served after ${on.ms} ms`);
      const since = await mock.mark();
      assert.equal((await chat(gw.url, CLIENT_KEY, MODEL)).status, 200);
      const up = await mock.requests({ since });
      assert.equal(up.length, 1);
      assert.equal(up[0].key, NODE_KEY);
      assert.equal(up[0].model, 'node-model');

      // The connection test: the mock's model list with the connection's key.
      const tested = await admin(`/api/providers/${encodeURIComponent(id)}/test`, { method: 'POST' });
      assert.equal(tested.status, 200, tested.text);
      assert.equal(tested.json.ok, true, tested.text);
      assert.equal(tested.json.status, 200, tested.text);
      const lastUp = (await mock.requests({ path: '/v1/models' })).at(-1);
      assert.equal(lastUp.key, NODE_KEY);
      // A wrong key (on another node, so that routing is not affected).
      await makeNode('it-node-wrong', ['node-model']);
      const wrong = await makeConnection('it-node-wrong', 'a', 'sk-up-wrong-key');
      const bad = await admin(`/api/providers/${encodeURIComponent(wrong.id)}/test`, { method: 'POST' });
      assert.equal(bad.status, 200, bad.text);
      assert.equal(bad.json.ok, false, bad.text);
      assert.equal(bad.json.status, 401, bad.text);
      assert.ok(!bad.text.includes('sk-up-wrong-key'), bad.text);
      const missingConn = await admin('/api/providers/it-node:nope/test', { method: 'POST' });
      assert.equal(missingConn.status, 404, missingConn.text);

      // Disabled: no connection serves the model any more.
      const patched = await admin(`/api/providers/${encodeURIComponent(id)}`, { method: 'PATCH', body: { enabled: false } });
      assert.equal(patched.status, 200, patched.text);
      assert.equal(patched.json.enabled, false);
      const off = await served('the disabled connection to stop serving', noConnection);
      t.diagnostic(`disabled connection stopped after ${off.ms} ms (statuses seen: ${off.seen.join(', ')})`);
      assert.deepEqual(off.seen.filter((s) => s !== 200 && !noConnection(s)), [], `statuses on the way: ${off.seen}`);
      assertClientError('openai', off.last, off.last.status);
      assert.match(off.last.json.error.message, /connection/i);
      assert.ok(off.ms <= 3500, `stopped after ${off.ms} ms`);
      const back = await admin(`/api/providers/${encodeURIComponent(id)}`, { method: 'PATCH', body: { enabled: true } });
      assert.equal(back.status, 200, back.text);
      await served('the enabled connection to serve again', (s) => s === 200);

      // The node cannot go while it has a connection; a file connection cannot change.
      assert.equal((await admin(`/api/provider-nodes/${NODE}`, { method: 'DELETE' })).status, 409);
      const fileConn = await admin(`/api/providers/${encodeURIComponent(`${FILE_NODE}:main`)}`, {
        method: 'PATCH', body: { enabled: false },
      });
      assert.equal(fileConn.status, 403, fileConn.text);

      // Deleted: gone from the list and from routing.
      const del = await admin(`/api/providers/${encodeURIComponent(id)}`, { method: 'DELETE' });
      assert.equal(del.status, 200, del.text);
      const gone = await served('the deleted connection to stop serving', noConnection);
      // Until the router drops it (~1 s) a request may still pick the deleted connection; the
      // edge then answers 503 (the connection cannot be used), never a 502.
      t.diagnostic(`deleted connection stopped after ${gone.ms} ms (statuses seen: ${gone.seen.join(', ')})`);
      assert.deepEqual(gone.seen.filter((s) => s !== 200 && !noConnection(s)), [], `statuses: ${gone.seen}`);
      assertClientError('openai', gone.last, gone.last.status);
      assert.ok(gone.ms <= 3500, `stopped after ${gone.ms} ms`);
      assert.equal((await admin(`/api/providers/${encodeURIComponent(id)}`)).status, 404);
      const list = await admin('/api/providers');
      assert.ok(!list.json.connections.some((c) => c.id === id), list.text);
      assert.ok(!list.text.includes(NODE_KEY) && !list.text.includes(FILE_KEY), 'a key in GET /api/providers');
      for (const [c, n] of [[wrong.id, 'it-node-wrong'], [null, NODE]]) {
        if (c) assert.equal((await admin(`/api/providers/${encodeURIComponent(c)}`, { method: 'DELETE' })).status, 200);
        assert.equal((await admin(`/api/provider-nodes/${n}`, { method: 'DELETE' })).status, 200);
      }
    });

    test('admin login: a session cookie, logout, and 429 after 5 failures from one IP', async () => {
      const login = (password, { localAddress = '127.0.0.1', url = gw.url } = {}) => requestFrom(`${url}/api/auth/login`, {
        localAddress, method: 'POST', headers: { 'content-type': 'application/json' }, body: { password },
      });
      const ok = await login(TEST_SECRETS.INITIAL_PASSWORD);
      assert.equal(ok.status, 200, ok.text);
      const setCookie = [].concat(ok.headers['set-cookie'] || []).join('\n');
      const token = /auth_token=([^;]+)/.exec(setCookie)?.[1];
      assert.ok(token, `a session cookie: ${setCookie}`);
      assert.match(setCookie, /HttpOnly/i);
      assert.match(setCookie, /Path=\//i);
      for (const e of gw.edges) {
        const keys = await request(`${e.url}/api/keys`, { headers: { cookie: `auth_token=${token}` } });
        assert.equal(keys.status, 200, keys.text);
        assert.ok(Array.isArray(keys.json.keys));
      }
      const none = await request(`${gw.url}/api/keys`);
      assert.equal(none.status, 401, none.text);
      const out = await request(`${gw.url}/api/auth/logout`, { method: 'POST', headers: { cookie: `auth_token=${token}` } });
      assert.equal(out.status, 200, out.text);
      assert.match(out.headers.get('set-cookie') || '', /auth_token=;.*Max-Age=0/i);

      // Failures from another client IP: 401 × 5 (spread over the edges), then 429.
      const edges = gw.edges;
      const bad = '127.0.0.9';
      for (let i = 0; i < 5; i++) {
        const r = await login(`wrong-${i}`, { localAddress: bad, url: edges[i % edges.length].url });
        assert.equal(r.status, 401, `failure ${i + 1}: ${r.status} ${r.text}`);
        assert.ok(!r.headers['set-cookie'], 'a failed login sets no cookie');
      }
      for (const e of edges) {
        // Even the right password: the IP is locked out for the window.
        const locked = await login(TEST_SECRETS.INITIAL_PASSWORD, { localAddress: bad, url: e.url });
        assert.equal(locked.status, 429, locked.text);
        const retry = Number(locked.headers['retry-after']);
        assert.ok(retry >= 1 && retry <= 15 * 60, `Retry-After ${locked.headers['retry-after']}`);
        assert.ok(!locked.headers['set-cookie']);
      }
      // Other clients are not affected.
      assert.equal((await login(TEST_SECRETS.INITIAL_PASSWORD)).status, 200);
    });

    test('OAuth logins of every subscription provider; connections listed active without tokens', async (t) => {
      oauth.config({ onboardPolls: 0 });  // gemini-cli: onboarding answers at once (no 5 s wait)
      const listed = await admin('/api/oauth/providers');
      assert.equal(listed.status, 200, listed.text);
      assert.deepEqual([...listed.json.providers].sort(), [...OAUTH_PROVIDERS].sort());
      for (const p of listed.json.providers) {
        // claude-code's first token lives 30 s: the next request must refresh it (below).
        oauth.config({ accessTokenTtlS: p === 'claude-code' ? 30 : 3600 });
        const start = await admin(`/api/oauth/${p}/start`, { method: 'POST', body: { name: 'it' } });
        assert.equal(start.status, 200, `${p}: ${start.text}`);
        const { state } = start.json;
        assert.ok(state, start.text);
        let done;
        if (start.json.flow === 'authorization_code') {
          assert.ok(start.json.authUrl.startsWith(`${oauth.url}/`), `${p}: ${start.json.authUrl}`);
          const page = await fetch(start.json.authUrl, { redirect: 'manual' });
          await page.arrayBuffer();
          assert.equal(page.status, 302, `${p}: authorize page ${page.status}`);
          const location = page.headers.get('location');
          assert.equal(new URL(location).searchParams.get('state'), state, `${p}: ${location}`);
          done = await admin(`/api/oauth/${p}/exchange`, { method: 'POST', body: { state, callbackUrl: location } });
          // A finished flow cannot be used again.
          const again = await admin(`/api/oauth/${p}/exchange`, { method: 'POST', body: { state, callbackUrl: location } });
          assert.equal(again.status, 404, `${p}: ${again.text}`);
        } else {
          assert.equal(start.json.flow, 'device_code', start.text);
          assert.ok(start.json.userCode && start.json.verificationUri, start.text);
          const pending = await admin(`/api/oauth/${p}/poll`, { method: 'POST', body: { state } });
          assert.equal(pending.status, 200, `${p}: ${pending.text}`);
          assert.equal(pending.json.status, 'pending', `${p}: ${pending.text}`);
          assert.ok(oauth.approve(start.json.userCode), `${p}: the mock knows user code ${start.json.userCode}`);
          done = await admin(`/api/oauth/${p}/poll`, { method: 'POST', body: { state } });
        }
        assert.equal(done.status, 201, `${p}: ${done.text}`);
        assert.equal(done.json.status, 'connected', done.text);
        assert.equal(done.json.connection.id, `${p}:it`);
        assert.equal(done.json.connection.status, 'active', done.text);
        for (const s of oauth.secrets()) assert.ok(!done.text.includes(s), `${p}: a token in the answer`);
      }
      oauth.config({ accessTokenTtlS: 3600 });
      t.diagnostic(`mock OAuth calls: ${JSON.stringify(oauth.calls())}`);

      const list = await admin('/api/providers');
      assert.equal(list.status, 200, list.text);
      for (const p of OAUTH_PROVIDERS) {
        const c = list.json.connections.find((x) => x.id === `${p}:it`);
        assert.ok(c, `${p}:it not listed: ${list.text}`);
        assert.equal(c.status, 'active', JSON.stringify(c));
        assert.equal(c.authType, 'oauth', JSON.stringify(c));
        assert.equal(c.provider, p);
        assert.ok(!('apiKey' in c), JSON.stringify(c));
      }
      const secrets = oauth.secrets();
      assert.ok(secrets.length >= OAUTH_PROVIDERS.length, secrets.length);
      for (const s of secrets) assert.ok(!list.text.includes(s), `a token in GET /api/providers: ${s.slice(0, 12)}…`);
      // An OAuth provider cannot take an API key connection.
      const refused = await admin('/api/providers', { method: 'POST', body: { provider: 'codex', name: 'k', apiKey: 'sk-x' } });
      assert.equal(refused.status, 400, refused.text);
    });

    test('claude-code: refreshed once before expiry without a request; the mock\'s token upstream with the OAuth beta', async () => {
      const model = `cc/${CC_MODEL}`;
      // Every edge's router knows the connection (from the catalog) before any request.
      for (const e of gw.edges) {
        await waitFor('the claude-code connection to reach the router', async () => {
          const r = await request(`${e.url}/v1/models`, { headers: { authorization: `Bearer ${CLIENT_KEY}` } });
          // Listed under the provider's first prefix (its id): claude-code/<model>.
          return r.status === 200 && r.json.data.some((m) => m.owned_by === 'claude-code' && m.id.endsWith(`/${CC_MODEL}`));
        }, { timeoutMs: 10000, intervalMs: 200 });
      }
      const tokenCalls = () => CLAUDE_TOKEN_PATHS.reduce((n, k) => n + (oauth.calls()[k] || 0), 0);
      // The login token lives 30 s, inside the 5-minute refresh margin: the accounts service
      // refreshes it by itself, once, before any request needs it.
      const loginToken = oauth.accessTokens('claude-code')[0];
      assert.ok(loginToken && loginToken.expiresAt - Date.now() < 31000, 'the login token expires within 30 s');
      await waitFor('the proactive refresh', () => oauth.accessTokens('claude-code').length >= 2,
        { timeoutMs: 10000, intervalMs: 100 });
      const before = tokenCalls();
      const since = await ccMock.mark();
      const edges = gw.edges;
      const results = await Promise.all(Array.from({ length: 10 }, (_, i) => (i % 2
        ? chat(edges[i % edges.length].url, CLIENT_KEY, model)
        : request(`${edges[i % edges.length].url}/v1/messages`, {
          method: 'POST',
          headers: { 'content-type': 'application/json', 'x-api-key': CLIENT_KEY, 'anthropic-version': '2023-06-01' },
          body: { model, max_tokens: 16, messages: [{ role: 'user', content: `hi ${i}` }] },
        }))));
      results.forEach((r, i) => assert.equal(r.status, 200, `request ${i}: ${r.text}`));
      assert.equal(oauth.accessTokens('claude-code').length, 2, 'exactly one refresh');
      assert.equal(tokenCalls() - before, 0, `refresh calls: ${JSON.stringify(oauth.calls())}`);
      const fresh = oauth.accessTokens('claude-code').at(-1);
      assert.notEqual(fresh.token, loginToken.token);
      const up = await ccMock.requests({ since });
      assert.equal(up.length, 10, up.map((u) => u.path).join(', '));
      for (const u of up) {
        assert.equal(u.path, '/v1/messages');
        assert.equal(u.headers.authorization, `Bearer ${fresh.token}`);
        assert.match(u.headers['anthropic-beta'] || '', /oauth/);
        assert.equal(u.model, CC_MODEL);
        assert.ok(!JSON.stringify(u.headers).includes(CLIENT_KEY), 'the client key went upstream');
        assert.ok(!('x-api-key' in u.headers), 'x-api-key upstream');
      }
      // The refreshed token serves the next request without another refresh.
      const since2 = await ccMock.mark();
      assert.equal((await chat(gw.url, CLIENT_KEY, model)).status, 200);
      assert.equal(tokenCalls() - before, 0);
      const [next] = await ccMock.requests({ since: since2 });
      assert.equal(next.headers.authorization, `Bearer ${fresh.token}`);
      const conn = await admin(`/api/providers/${encodeURIComponent('claude-code:it')}`);
      assert.equal(conn.status, 200, conn.text);
      assert.equal(conn.json.status, 'active');
      assert.ok(conn.json.expiresAt > Date.now() + 30 * 60000, conn.text);
      assert.ok(!conn.text.includes(fresh.token));
    });

    test('secrets are neither stored nor logged in clear', async () => {
      const NODE = 'it-secret';
      await makeNode(NODE, ['secret-model']);
      const conn = await makeConnection(NODE, 'a', SECRET_PROVIDER_KEY);
      const created = await admin('/api/keys', { method: 'POST', body: { name: 'it-secret-key' } });
      assert.equal(created.status, 201, created.text);
      const clientKey = created.json.key;
      // The secrets travel the whole path: the client key on every edge, the provider key
      // upstream and in the connection test.
      for (const e of gw.edges) {
        await waitFor('the secret connection to serve', async () => (await chat(e.url, clientKey, `${NODE}/secret-model`)).status === 200,
          { timeoutMs: 10000, intervalMs: 200 });
      }
      const tested = await admin(`/api/providers/${encodeURIComponent(conn.id)}/test`, { method: 'POST' });
      assert.equal(tested.json?.ok, true, tested.text);
      const up = (await mock.requests()).filter((r) => r.key === SECRET_PROVIDER_KEY);
      assert.ok(up.length >= 2, 'the provider key went upstream');
      // A dashboard session used once (its token must not be logged either).
      const login = await request(`${gw.url}/api/auth/login`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: { password: TEST_SECRETS.INITIAL_PASSWORD },
      });
      assert.equal(login.status, 200, login.text);
      const session = /auth_token=([^;]+)/.exec(login.headers.get('set-cookie') || '')?.[1];
      assert.ok(session);
      assert.equal((await request(`${gw.url}/api/providers`, { headers: { cookie: `auth_token=${session}` } })).status, 200);
      await sleep(300);  // log lines written

      const needles = [
        ['the provider key marker', MARKER],
        ['a created client key', clientKey],
        ...(createdClientKey ? [['a created (revoked) client key', createdClientKey]] : []),
        ...oauth.secrets().map((s) => [`an OAuth secret ${s.slice(0, 14)}…`, s]),
        ['a session token', session],
        // The environment's secrets (the admin key is sent with every admin call above).
        ...Object.entries(TEST_SECRETS).map(([k, v]) => [k, v]),
      ];
      // Every file of the data dir: SQLite database (+ WAL), keyring, every process's log.
      const files = filesUnder(gw.dataDir);
      assert.ok(files.some((f) => f.endsWith('.log')), files.join(', '));
      if (mode === 'allinone') {
        assert.ok(fs.existsSync(gw.sqlitePath), `no database at ${gw.sqlitePath}`);
        // Sanity: the database does hold the connection (so the search below means something).
        const db = Buffer.concat(files.filter((f) => f.startsWith(gw.sqlitePath)).map((f) => fs.readFileSync(f)));
        assert.ok(db.includes(`${NODE}:a`), 'the connection is not in the SQLite files');
      }
      for (const f of files) {
        const buf = fs.readFileSync(f);
        for (const [what, s] of needles) assert.ok(!buf.includes(s), `${what} in clear in ${f}`);
      }
      if (mode === 'distributed') {
        const objects = await pg.rows('select * from accounts_objects');
        const text = JSON.stringify(objects);
        assert.ok(text.includes(`${NODE}:a`), 'the connection is not in accounts_objects');
        const row = objects.find((o) => o.kind === 'connection' && o.id === `${NODE}:a`);
        assert.ok(row && row.secret.length > 20, JSON.stringify(row));
        for (const [what, s] of needles) assert.ok(!text.includes(s), `${what} in clear in accounts_objects`);
        // Every other table too (usage records, router state, ...).
        const tables = (await pg.query("select table_name from information_schema.tables where table_schema = 'public'"))
          .trim().split('\n').filter(Boolean);
        for (const tbl of tables) {
          const all = JSON.stringify(await pg.rows(`select * from "${tbl}"`));
          for (const [what, s] of needles) assert.ok(!all.includes(s), `${what} in clear in table ${tbl}`);
        }
        // And Redis (routing state, revocations, budgets): a snapshot without compression.
        const dirReply = await redis.command('CONFIG', 'GET', 'dir');
        const dir = dirReply.split('\r\n')[4];
        assert.ok(dir && fs.existsSync(dir), `redis dir from ${JSON.stringify(dirReply)}`);
        assert.match(await redis.command('CONFIG', 'SET', 'rdbcompression', 'no'), /^\+OK/);
        assert.match(await redis.command('SAVE'), /^\+OK/);
        const rdb = fs.readFileSync(path.join(dir, 'dump.rdb'));
        assert.ok(rdb.length > 0);
        for (const [what, s] of needles) assert.ok(!rdb.includes(s), `${what} in clear in Redis`);
      }
    });
  });
}
