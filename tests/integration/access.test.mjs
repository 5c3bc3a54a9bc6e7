// Admin sessions, client key policy and client IP access control through the real edge, in
// both modes (the distributed one with two edges sharing the usage service):
//   1. /api needs the admin key or a dashboard session (the auth_token cookie of
//      POST /api/auth/login); login itself is open; a client key opens /api/usage/self only;
//   2. a key's allowedModels refuse other models (403 permission_error naming the model) and
//      filter /v1/models; its team lands in the usage record; its rpmLimit holds across edge
//      replicas (429 rate_limit_error, Retry-After to the next minute); an expired key is
//      refused even while an edge still caches it;
//   3. ipDenylist / ipAllowlist (PUT /api/settings/security) refuse other clients with 403
//      in their own format within a few seconds; /healthz stays open;
//   4. a provider key rotated through the admin API: an upstream 401 on a credential an
//      edge still caches makes it fetch the new one and retry the same connection once.
//
// OMNI_IT_MODES=allinone,distributed picks the modes (default both).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  assertClientError, markFailed, missingBinaries, request, sleep, startGateway, startMock,
  startPostgres, startRedis, TEST_SECRETS, waitFor, rawRequest,
} from './lib/index.mjs';

const MODES = (process.env.OMNI_IT_MODES || 'allinone,distributed').split(',').map((s) => s.trim()).filter(Boolean);

const NODE = 'p-openai';
const ROT = 'p-rot';  // a node whose connection the admin API creates and rotates
const MODELS = ['gpt-4o-mini', 'other-model'];
const CLIENT_KEY = 'sk-client-access-0001';

function gatewayConfig(mockUrl) {
  return {
    server: { host: '127.0.0.1', require_api_key: true, threads: 2, upstream_connect_timeout_ms: 2000,
      upstream_timeout_ms: 20000 },
    nodes: [
      { id: NODE, name: 'openai on the mock', format: 'openai', base_url: `${mockUrl}/v1`, models: MODELS },
      { id: ROT, name: 'rotated key on the mock', format: 'openai', base_url: `${mockUrl}/v1`, models: ['gpt-4o-mini'] },
    ],
    connections: [{ provider: NODE, name: 'main', api_key: 'sk-up-access' }],
    api_keys: [{ name: 'client', key: CLIENT_KEY }],
    resilience: { cooldown: { base_ms: 1, max_ms: 50 } },
  };
}

// A request through node:http from a chosen loopback source address.
const requestFrom = (url, { method = 'GET', body = '', ...rest } = {}) => rawRequest(url, { method, body, ...rest });

const chat = (baseUrl, key, model = `${NODE}/gpt-4o-mini`) => request(`${baseUrl}/v1/chat/completions`, {
  method: 'POST',
  headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
  body: { model, messages: [{ role: 'user', content: 'hello' }], max_tokens: 16 },
});

for (const mode of MODES) {
  const missing = missingBinaries(mode);
  const skip = missing.length && process.env.OMNI_IT_SKIP_MISSING === '1'
    ? `binaries not built: ${missing.join('; ')}` : false;

  describe(`access (${mode})`, { timeout: 300000, skip }, () => {
    let mock;
    let redis;
    let pg;
    let gw;

    const test = (name, fn, opts = {}) => it(name, { timeout: 90000, ...opts }, async (t) => {
      try {
        await fn(t);
      } catch (e) {
        markFailed();
        const err = e instanceof assert.AssertionError ? e : new Error(`${e.name}: ${e.message}\n${e.stack}`);
        err.message += `\n===== process logs (${mode}) =====\n${gw ? gw.logs(40) : ''}${mock ? mock.proc.tail(10) : ''}`;
        throw err;
      }
    });
    const admin = (p, { method = 'GET', body } = {}) => request(`${gw.url}${p}`, {
      method, body, headers: { authorization: `Bearer ${gw.adminKey}`, 'content-type': 'application/json' },
    });

    before(async () => {
      try {
        mock = await startMock({ keys: ['sk-up-access', 'sk-rot-a'] });
        if (mode === 'distributed') [redis, pg] = await Promise.all([startRedis(), startPostgres()]);
        gw = await startGateway({ mode, redis, postgres: pg, config: gatewayConfig(mock.url), edges: 2 });
      } catch (e) {
        markFailed();
        throw e;
      }
    });

    after(async () => {
      await gw?.stop();
      await Promise.all([mock?.stop(), redis?.stop(), pg?.stop()]);
    });

    test('the admin API takes the admin key or a dashboard session; login is open', async () => {
      const none = await request(`${gw.url}/api/keys`);
      assert.equal(none.status, 401, none.text);
      const withClientKey = await request(`${gw.url}/api/keys`, { headers: { authorization: `Bearer ${CLIENT_KEY}` } });
      assert.equal(withClientKey.status, 401, withClientKey.text);
      const self = await request(`${gw.url}/api/usage/self`, { headers: { authorization: `Bearer ${CLIENT_KEY}` } });
      assert.equal(self.status, 200, self.text);
      assert.equal((await admin('/api/keys')).status, 200);

      const login = (password) => request(`${gw.url}/api/auth/login`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: { password },
      });
      const wrong = await login('not-the-password');
      assert.equal(wrong.status, 401, wrong.text);
      const ok = await login(TEST_SECRETS.INITIAL_PASSWORD);
      assert.equal(ok.status, 200, ok.text);
      const setCookie = ok.headers.get('set-cookie') || '';
      const token = /auth_token=([^;]+)/.exec(setCookie)?.[1];
      assert.ok(token, `a session cookie: ${setCookie}`);
      assert.match(setCookie, /HttpOnly/i);

      for (const e of gw.edges) {
        const cookie = `theme=dark; auth_token=${token}`;
        const me = await request(`${e.url}/api/auth/me`, { headers: { cookie } });
        assert.equal(me.status, 200, me.text);
        assert.equal(me.json.actor, 'session:admin');
        const keys = await request(`${e.url}/api/keys`, { headers: { cookie } });
        assert.equal(keys.status, 200, keys.text);
        // The router's and the usage service's admin APIs take the session too.
        const combos = await request(`${e.url}/api/combos`, { headers: { cookie } });
        assert.equal(combos.status, 200, combos.text);
        const pricing = await request(`${e.url}/api/pricing`, { headers: { cookie } });
        assert.equal(pricing.status, 200, pricing.text);
      }
      // A token signed with another secret, or tampered with, opens nothing.
      const [h, p] = token.split('.');
      const forged = `${h}.${p}.${Buffer.from('x'.repeat(32)).toString('base64url')}`;
      const bad = await request(`${gw.url}/api/keys`, { headers: { cookie: `auth_token=${forged}` } });
      assert.equal(bad.status, 401, bad.text);
      // Logout answers with a cookie that clears the session.
      const out = await request(`${gw.url}/api/auth/logout`, { method: 'POST', headers: { cookie: `auth_token=${token}` } });
      assert.equal(out.status, 200, out.text);
      assert.match(out.headers.get('set-cookie') || '', /auth_token=;/);
    });

    test('a key\'s allowed models, team and expiry', async () => {
      const created = await admin('/api/keys', {
        method: 'POST', body: { name: 'limited', allowedModels: [`${NODE}/gpt-4o*`], team: 'research' },
      });
      assert.equal(created.status, 201, created.text);
      const key = created.json.key;
      assert.ok(key);
      const ok = await chat(gw.url, key);
      assert.equal(ok.status, 200, ok.text);
      const refused = await chat(gw.url, key, `${NODE}/other-model`);
      const err = assertClientError('openai', refused, 403);
      assert.equal(err.type, 'permission_error');
      assert.match(err.message, /other-model/);
      const anthropic = await request(`${gw.url}/v1/messages`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-api-key': key, 'anthropic-version': '2023-06-01' },
        body: { model: `${NODE}/other-model`, max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] },
      });
      assertClientError('anthropic', anthropic, 403);
      const models = await request(`${gw.url}/v1/models`, { headers: { authorization: `Bearer ${key}` } });
      assert.equal(models.status, 200, models.text);
      const ids = models.json.data.map((m) => m.id);
      assert.ok(ids.includes(`${NODE}/gpt-4o-mini`), ids.join(', '));
      assert.ok(!ids.some((id) => id.includes('other-model')), ids.join(', '));
      // The team label reaches the usage record.
      const id = ok.headers.get('x-request-id');
      let rows = [];
      await waitFor('the usage row', async () => {
        rows = await gw.usageRows(id);
        return rows.length > 0;
      }, { timeoutMs: 20000, intervalMs: 200 });
      assert.equal(rows[0].team, 'research');

      // Expiry: refused once past it, even by an edge that cached the key.
      const expiring = await admin('/api/keys', {
        method: 'POST', body: { name: 'expiring', expiresAt: Date.now() + 3000 },
      });
      assert.equal(expiring.status, 201, expiring.text);
      const ek = expiring.json.key;
      assert.equal((await chat(gw.url, ek)).status, 200);
      await sleep(Math.max(0, expiring.json.expiresAt - Date.now()) + 500);
      const expired = await chat(gw.url, ek);
      const e2 = assertClientError('openai', expired, 401);
      assert.equal(e2.code, 'invalid_api_key');
    });

    test('a key\'s requests per minute hold across edges', async () => {
      // Not too close to the end of a minute: the window must not turn over mid-test.
      while (new Date().getSeconds() > 45) await sleep(500);
      const created = await admin('/api/keys', { method: 'POST', body: { name: 'rpm', rpmLimit: 3 } });
      assert.equal(created.status, 201, created.text);
      const key = created.json.key;
      const edges = gw.edges;
      for (let i = 0; i < 3; i++) {
        const r = await chat(edges[i % edges.length].url, key);
        assert.equal(r.status, 200, `request ${i}: ${r.text}`);
      }
      for (const e of edges) {
        const r = await chat(e.url, key);
        const err = assertClientError('openai', r, 429);
        assert.equal(err.type, 'rate_limit_error');
        assert.equal(err.code, 'rate_limit_exceeded');
        const retry = Number(r.headers.get('retry-after'));
        assert.ok(retry >= 1 && retry <= 60, `Retry-After ${retry}`);
      }
      // Another key is not affected.
      assert.equal((await chat(gw.url, CLIENT_KEY)).status, 200);
    });

    test('client IP deny and allow lists, within seconds, in the client\'s format', async () => {
      const setSecurity = async (body) => {
        const r = await admin('/api/settings/security', { method: 'PUT', body });
        assert.equal(r.status, 200, r.text);
      };
      const chatFrom = (url, localAddress) => requestFrom(`${url}/v1/chat/completions`, {
        localAddress, method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${CLIENT_KEY}` },
        body: { model: `${NODE}/gpt-4o-mini`, messages: [{ role: 'user', content: 'hi' }], max_tokens: 8 },
      });
      try {
        await setSecurity({ ipDenylist: ['127.0.0.2/32'], ipAllowlist: [] });
        for (const e of gw.edges) {
          await waitFor('the denylist to reach the edge', async () => (await chatFrom(e.url, '127.0.0.2')).status === 403,
            { timeoutMs: 10000, intervalMs: 200 });
          const denied = await chatFrom(e.url, '127.0.0.2');
          const err = assertClientError('openai', denied, 403);
          assert.equal(err.message, 'Your IP address is not allowed');
          const anthropic = await requestFrom(`${e.url}/v1/messages`, {
            localAddress: '127.0.0.2', method: 'POST',
            headers: { 'content-type': 'application/json', 'anthropic-version': '2023-06-01', 'x-api-key': CLIENT_KEY },
            body: { model: `${NODE}/gpt-4o-mini`, max_tokens: 8, messages: [{ role: 'user', content: 'hi' }] },
          });
          assertClientError('anthropic', anthropic, 403);
          const gemini = await requestFrom(`${e.url}/v1beta/models/${NODE}/gpt-4o-mini:generateContent`, {
            localAddress: '127.0.0.2', method: 'POST',
            headers: { 'content-type': 'application/json', 'x-goog-api-key': CLIENT_KEY },
            body: { contents: [{ role: 'user', parts: [{ text: 'hi' }] }] },
          });
          assertClientError('gemini', gemini, 403);
          const health = await requestFrom(`${e.url}/healthz`, { localAddress: '127.0.0.2' });
          assert.equal(health.status, 200);
          const readyz = await requestFrom(`${e.url}/readyz`, { localAddress: '127.0.0.2' });
          assert.equal(readyz.status, 200);
          const adminDenied = await requestFrom(`${e.url}/api/keys`, {
            localAddress: '127.0.0.2', headers: { authorization: `Bearer ${gw.adminKey}` },
          });
          assert.equal(adminDenied.status, 403);
          assert.equal((await chatFrom(e.url, '127.0.0.1')).status, 200);
        }
        // An allowlist: only 127.0.0.1 (written as an IPv4 network) passes.
        await setSecurity({ ipDenylist: [], ipAllowlist: ['127.0.0.1/32'] });
        for (const e of gw.edges) {
          await waitFor('the allowlist to reach the edge', async () => (await chatFrom(e.url, '127.0.0.3')).status === 403,
            { timeoutMs: 10000, intervalMs: 200 });
          assert.equal((await chatFrom(e.url, '127.0.0.1')).status, 200);
        }
      } finally {
        await setSecurity({ ipDenylist: [], ipAllowlist: [] });
      }
      for (const e of gw.edges) {
        await waitFor('the lists to be lifted', async () => (await chatFrom(e.url, '127.0.0.3')).status === 200,
          { timeoutMs: 10000, intervalMs: 200 });
      }
    });

    test('an upstream 401 fetches the rotated credential and retries the connection once', async () => {
      const created = await admin('/api/providers', {
        method: 'POST', body: { provider: ROT, name: 'main', apiKey: 'sk-rot-a' },
      });
      assert.equal(created.status, 201, created.text);
      const connectionId = created.json.id || `${ROT}:main`;
      // Every edge learns the connection (the router's catalog) and caches its credential.
      for (const e of gw.edges) {
        await waitFor('the new connection to serve', async () => (await chat(e.url, CLIENT_KEY, `${ROT}/gpt-4o-mini`)).status === 200,
          { timeoutMs: 15000, intervalMs: 200 });
      }
      await mock.config({ keys: ['sk-up-access', 'sk-rot-b'] });
      const put = await admin(`/api/providers/${encodeURIComponent(connectionId)}`, {
        method: 'PUT', body: { apiKey: 'sk-rot-b' },
      });
      assert.equal(put.status, 200, put.text);
      for (const e of gw.edges) {
        const since = await mock.mark();
        const r = await chat(e.url, CLIENT_KEY, `${ROT}/gpt-4o-mini`);
        assert.equal(r.status, 200, r.text);
        const up = await mock.requests({ since });
        // The distributed edge cached the old key: a 401, then the retry; the all-in-one
        // edge asks accounts every time.
        assert.equal(up.length, mode === 'distributed' ? 2 : 1, up.map((u) => `${u.key} ${u.status}`).join(', '));
        assert.equal(up[up.length - 1].key, 'sk-rot-b');
        if (up.length === 2) assert.equal(up[0].key, 'sk-rot-a');
      }
    });
  });
}
