// Quota of subscription connections, in both modes: the mock answers with the usage headers
// of Claude Code (anthropic-ratelimit-unified-*) and Codex (x-codex-*) subscriptions;
//   1. the edge reports them to accounts: GET /api/providers/{id} shows the windows within
//      about 2 s;
//   2. a connection whose quota is spent (100 % used, reset ahead) is passed over: the
//      requests go to the other connection, though the spent one has the better priority;
//   3. with every connection spent the gateway answers 503 all_accounts_cooling_down with a
//      Retry-After up to the earliest reset.
//
// OMNI_IT_MODES=allinone,distributed picks the modes (default both).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  markFailed, missingBinaries, request, startGateway, startMock, startPostgres, startRedis, waitFor,
} from './lib/index.mjs';

const MODES = (process.env.OMNI_IT_MODES || 'allinone,distributed').split(',').map((s) => s.trim()).filter(Boolean);

const NODE = 'p-sub';
const KEY_A = 'sk-quota-a';
const KEY_B = 'sk-quota-b';
const CLIENT_KEY = 'sk-client-quota-0001';

function gatewayConfig(mockUrl) {
  return {
    server: { host: '127.0.0.1', require_api_key: true, threads: 2, upstream_connect_timeout_ms: 2000,
      upstream_timeout_ms: 20000 },
    nodes: [{ id: NODE, name: 'subscriptions on the mock', format: 'openai', base_url: `${mockUrl}/v1`,
      models: ['gpt-4o-mini'] }],
    // a goes first while it has quota left.
    connections: [
      { provider: NODE, name: 'a', api_key: KEY_A, priority: 0 },
      { provider: NODE, name: 'b', api_key: KEY_B, priority: 1 },
    ],
    api_keys: [{ name: 'client', key: CLIENT_KEY }],
  };
}

// Both header families, as Claude Code and Codex subscriptions send them.
function quotaHeaders({ fiveHour, sevenDay, primary, secondary, resetS }) {
  const now = Math.floor(Date.now() / 1000);
  return {
    'anthropic-ratelimit-unified-status': fiveHour >= 1 ? 'rejected' : 'allowed',
    'anthropic-ratelimit-unified-representative-claim': 'five_hour',
    'anthropic-ratelimit-unified-5h-utilization': String(fiveHour),
    'anthropic-ratelimit-unified-5h-reset': String(now + resetS),
    'anthropic-ratelimit-unified-7d-utilization': String(sevenDay),
    'anthropic-ratelimit-unified-7d-reset': String(now + 5 * 86400),
    'x-codex-primary-used-percent': String(primary),
    'x-codex-primary-window-minutes': '300',
    'x-codex-primary-reset-after-seconds': String(resetS),
    'x-codex-secondary-used-percent': String(secondary),
    'x-codex-secondary-window-minutes': '10080',
    'x-codex-secondary-reset-after-seconds': String(6 * 86400),
  };
}

const chat = (baseUrl) => request(`${baseUrl}/v1/chat/completions`, {
  method: 'POST',
  headers: { 'content-type': 'application/json', authorization: `Bearer ${CLIENT_KEY}` },
  body: { model: `${NODE}/gpt-4o-mini`, messages: [{ role: 'user', content: 'hello' }], max_tokens: 16 },
});

for (const mode of MODES) {
  const missing = missingBinaries(mode);
  const skip = missing.length && process.env.OMNI_IT_SKIP_MISSING === '1'
    ? `binaries not built: ${missing.join('; ')}` : false;

  describe(`quota (${mode})`, { timeout: 300000, skip }, () => {
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
    const admin = (p) => request(`${gw.url}${p}`, { headers: { authorization: `Bearer ${gw.adminKey}` } });
    const quotaOf = async (id) => (await admin(`/api/providers/${encodeURIComponent(id)}`)).json?.quota;
    // The provider keys of the upstream requests after `since`.
    const keysSince = async (since) => (await mock.requests({ since })).map((r) => r.key);

    before(async () => {
      try {
        mock = await startMock({ keys: [KEY_A, KEY_B] });
        if (mode === 'distributed') [redis, pg] = await Promise.all([startRedis(), startPostgres()]);
        gw = await startGateway({ mode, redis, postgres: pg, config: gatewayConfig(mock.url) });
      } catch (e) {
        markFailed();
        throw e;
      }
    });

    after(async () => {
      await gw?.stop();
      await Promise.all([mock?.stop(), redis?.stop(), pg?.stop()]);
    });

    test('the quota windows a provider announces show in the admin API', async () => {
      await mock.fault({ match: { key: KEY_A }, times: -1,
        headers: quotaHeaders({ fiveHour: 0.25, sevenDay: 0.6, primary: 12.5, secondary: 40, resetS: 3600 }) });
      const since = await mock.mark();
      const t0 = Date.now();
      const res = await chat(gw.url);
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(await keysSince(since), [KEY_A]);

      const quota = await waitFor('the quota of connection a', async () => {
        const q = await quotaOf(`${NODE}:a`);
        return q?.windows?.length === 4 ? q : null;
      }, { timeoutMs: 3000 });
      assert.ok(Date.now() - t0 < 3000, `shown after ${Date.now() - t0} ms`);
      const byName = Object.fromEntries(quota.windows.map((w) => [w.name, w]));
      assert.deepEqual(Object.keys(byName).sort(), ['5h', '7d', 'primary', 'secondary']);
      assert.equal(byName['5h'].usedPercent, 25);
      assert.equal(byName['5h'].windowMinutes, 300);
      assert.ok(Math.abs(byName['5h'].resetsAt - (Date.now() + 3600_000)) < 120_000, JSON.stringify(byName['5h']));
      assert.equal(byName['7d'].usedPercent, 60);
      assert.equal(byName['7d'].windowMinutes, 10080);
      assert.equal(byName.primary.usedPercent, 12.5);
      assert.equal(byName.primary.windowMinutes, 300);
      assert.ok(Math.abs(byName.primary.resetsAt - (Date.now() + 3600_000)) < 120_000, JSON.stringify(byName.primary));
      assert.equal(byName.secondary.usedPercent, 40);
      // The 7d window limits it.
      assert.equal(quota.remainingPercent, 40);
      assert.equal(quota.resetsAt, byName['7d'].resetsAt);
      assert.ok(Math.abs(quota.reportedAt - Date.now()) < 60_000, JSON.stringify(quota));
      // b has answered nothing yet: no quota.
      assert.equal(await quotaOf(`${NODE}:b`), undefined);
      // Listed with the connections as well.
      const list = await admin(`/api/providers?provider=${NODE}`);
      assert.equal(list.status, 200, list.text);
      const a = list.json.connections.find((c) => c.id === `${NODE}:a`);
      assert.equal(a?.quota?.windows?.length, 4, list.text);
    });

    test('a connection whose quota is spent is passed over until its reset', async () => {
      await mock.clearFaults();
      await mock.fault({ match: { key: KEY_A }, times: -1,
        headers: quotaHeaders({ fiveHour: 1, sevenDay: 0.61, primary: 100, secondary: 41, resetS: 3600 }) });
      // a still goes first: it reports its quota spent.
      const since = await mock.mark();
      const res = await chat(gw.url);
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(await keysSince(since), [KEY_A]);
      const spent = await waitFor('connection a spent', async () => {
        const q = await quotaOf(`${NODE}:a`);
        return q?.remainingPercent === 0 ? q : null;
      }, { timeoutMs: 3000 });
      assert.ok(spent.resetsAt > Date.now() + 3000_000, JSON.stringify(spent));

      // Once the router has the news, b serves though a has the better priority.
      await waitFor('a request served by b', async () => {
        const mark = await mock.mark();
        const r = await chat(gw.url);
        assert.equal(r.status, 200, r.text);
        const keys = await keysSince(mark);
        return keys.length === 1 && keys[0] === KEY_B;
      }, { timeoutMs: 10000, intervalMs: 200 });
      const mark = await mock.mark();
      for (let i = 0; i < 5; i++) {
        const r = await chat(gw.url);
        assert.equal(r.status, 200, r.text);
      }
      assert.deepEqual(await keysSince(mark), [KEY_B, KEY_B, KEY_B, KEY_B, KEY_B]);
    });

    test('with every connection spent the answer is a 503 until the earliest reset', async () => {
      await mock.fault({ match: { key: KEY_B }, times: -1,
        headers: quotaHeaders({ fiveHour: 0.2, sevenDay: 0.3, primary: 100, secondary: 10, resetS: 1800 }) });
      const since = await mock.mark();
      const res = await chat(gw.url);
      assert.equal(res.status, 200, res.text);
      assert.deepEqual(await keysSince(since), [KEY_B]);

      const refused = await waitFor('a 503 for every connection spent', async () => {
        const r = await chat(gw.url);
        return r.status === 503 ? r : null;
      }, { timeoutMs: 10000, intervalMs: 200 });
      assert.equal(refused.json?.error?.code, 'all_accounts_cooling_down', refused.text);
      assert.match(refused.json.error.message, /quota/);
      const retryAfter = Number(refused.headers.get('retry-after'));
      // b's primary window resets first, in about 30 minutes.
      assert.ok(retryAfter > 1700 && retryAfter <= 1800, `retry-after ${retryAfter}`);
    });
  });
}
