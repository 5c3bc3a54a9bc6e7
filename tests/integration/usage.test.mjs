// The usage service through the gateway as it is wired today: every request produces one
// record, priced by the usage service from the config file's pricing, and the request log
// shows it. Budget enforcement through the edge (reservations, 429) is tested once the edge
// calls Reserve/Settle.
//
// OMNI_IT_MODES=allinone,distributed picks the modes (default both).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import {
  markFailed, missingBinaries, request, startGateway, startMock, startPostgres, startRedis, waitFor,
} from './lib/index.mjs';

const MODES = (process.env.OMNI_IT_MODES || 'allinone,distributed').split(',').map((s) => s.trim()).filter(Boolean);
const CLIENT_KEY = 'sk-client-usage-0001';
// USD per 1M tokens: large, so that every token shows in the cost.
const PRICE = { input: 1000, output: 4000 };

for (const mode of MODES) {
  const missing = missingBinaries(mode);
  const skip = missing.length && process.env.OMNI_IT_SKIP_MISSING === '1'
    ? `binaries not built: ${missing.join('; ')}` : false;

  describe(`usage (${mode})`, { timeout: 180000, skip }, () => {
    let mock;
    let redis;
    let pg;
    let gw;

    before(async () => {
      try {
        mock = await startMock({ keys: ['sk-a'] });
        if (mode === 'distributed') [redis, pg] = await Promise.all([startRedis(), startPostgres()]);
        gw = await startGateway({
          mode,
          redis,
          postgres: pg,
          config: {
            server: { host: '127.0.0.1', require_api_key: true, threads: 2 },
            nodes: [{ id: 'mock', name: 'Mock', format: 'openai', base_url: mock.baseURL,
              models: ['gpt-4o-mini'] }],
            connections: [{ provider: 'mock', name: 'a', api_key: 'sk-a' }],
            api_keys: [{ name: 'usage', key: CLIENT_KEY }],
            pricing: [{ provider: 'mock', model: 'gpt-4o-*', ...PRICE }],
            budgets: [{ key: 'usage', daily: 100 }],
            usage: { budget_reset_utc: '00:00', metrics_top_keys: 5 },
          },
        });
      } catch (e) {
        markFailed();
        throw e;
      }
    });

    after(async () => {
      await gw?.stop();
      await mock?.stop?.();
      await redis?.stop?.();
      await pg?.stop?.();
    });

    it('each request gets one record, priced by the usage service', async () => {
      const ids = [];
      for (let i = 0; i < 5; i++) {
        const r = await request(`${gw.baseURL}/chat/completions`, {
          method: 'POST',
          headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' },
          body: { model: 'mock/gpt-4o-mini', messages: [{ role: 'user', content: `hello ${i}` }] },
        });
        assert.equal(r.status, 200, r.text);
        ids.push({ id: r.headers.get('x-request-id'), usage: r.json.usage });
      }
      for (const { id, usage } of ids) {
        const rows = await waitFor(`the usage record of ${id}`, async () => {
          const found = await gw.usageRows(id);
          return found.length ? found : null;
        }, { timeoutMs: 15000, intervalMs: 100 });
        assert.equal(rows.length, 1);
        const row = rows[0];
        assert.equal(Number(row.input_tokens), usage.prompt_tokens);
        assert.equal(Number(row.output_tokens), usage.completion_tokens);
        const cached = usage.prompt_tokens_details?.cached_tokens || 0;
        const expected = ((usage.prompt_tokens - cached) * PRICE.input + cached * PRICE.input
          + usage.completion_tokens * PRICE.output) / 1e6;
        assert.ok(Math.abs(Number(row.cost_usd) - expected) < 1e-9,
          `cost ${row.cost_usd}, expected ${expected} for ${JSON.stringify(usage)}`);
      }
    });

    it('the request log shows the costs', async () => {
      const r = await request(`${gw.url}/api/usage/requests?limit=10`,
        { headers: { authorization: `Bearer ${gw.adminKey}` } });
      assert.equal(r.status, 200, r.text);
      assert.ok(r.json.data.length >= 5, r.text.slice(0, 500));
      assert.ok(r.json.total_cost_usd > 0, r.text.slice(0, 500));
    });
  });
}
