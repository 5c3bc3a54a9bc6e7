// Routing through the real services: combos and their strategies, account strategies,
// sticky sessions, cooldowns, lockouts, the provider circuit breaker, pacing,
// wait-for-cooldown, aliases, fallback chains and the routing admin API.
//
// Distributed mode runs two router and two edge processes sharing one real Redis (edge i
// talks to router i), so every shared-state claim is checked across replicas; it also kills
// and restarts Redis mid-test. The all-in-one runs the same cases on its in-memory state.
//
// OMNI_IT_MODES=allinone,distributed picks the modes (default both).

import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import {
  markFailed, missingBinaries, request, sleep, startGateway, startMock, startPostgres, startRedis,
  waitFor,
} from './lib/index.mjs';

const MODES = (process.env.OMNI_IT_MODES || 'allinone,distributed').split(',').map((s) => s.trim()).filter(Boolean);

function routingConfig(mockURL) {
  const node = (id, extra = {}) => ({ id, format: 'openai', base_url: mockURL, ...extra });
  return {
    server: { host: '127.0.0.1', threads: 2, upstream_connect_timeout_ms: 2000, upstream_timeout_ms: 20000 },
    routing: { strategy: 'fill-first', sticky_limit: 3, session_ttl_s: 60 },
    nodes: [
      node('mock', { models: ['gpt-4o-mini', 'both-have'] }),
      node('alt', { models: ['alt-model', 'both-have'] }),
      node('rr', { routing: { strategy: 'round-robin', sticky_limit: 1 } }),
      node('brk'),
      node('paced', { queue: { max_concurrent: 1 } }),
      node('acct'),
    ],
    connections: [
      { provider: 'mock', name: 'a', api_key: 'sk-a', priority: 1 },
      { provider: 'mock', name: 'b', api_key: 'sk-b', priority: 2 },
      { provider: 'alt', name: 'main', api_key: 'sk-alt' },
      { provider: 'rr', name: 'r1', api_key: 'sk-r1' },
      { provider: 'rr', name: 'r2', api_key: 'sk-r2' },
      { provider: 'rr', name: 'r3', api_key: 'sk-r3' },
      { provider: 'brk', name: 'b1', api_key: 'sk-brk1', priority: 1 },
      { provider: 'brk', name: 'b2', api_key: 'sk-brk2', priority: 2 },
      { provider: 'paced', name: 'p1', api_key: 'sk-p1', priority: 1 },
      { provider: 'paced', name: 'p2', api_key: 'sk-p2', priority: 2 },
      { provider: 'acct', name: 'x', api_key: 'sk-x', priority: 1 },
      { provider: 'acct', name: 'y', api_key: 'sk-y', priority: 2 },
    ],
    combos: [
      { name: 'ordered', models: ['mock/m-first', 'alt/m-second'] },
      { name: 'nested', models: ['ordered', 'alt/tail'] },
      { name: 'rotating', strategy: 'round-robin', sticky_limit: 1, models: ['alt/rot-1', 'alt/rot-2'] },
      { name: 'weighted', strategy: 'weighted', models: [{ model: 'alt/heavy', weight: 3 }, { model: 'alt/light', weight: 1 }] },
      { name: 'shuffled', strategy: 'random', models: ['alt/s1', 'alt/s2', 'alt/s3'] },
      { name: 'balanced', strategy: 'least-used', models: ['alt/lu-1', 'alt/lu-2'] },
      { name: 'thrifty', strategy: 'cost-optimized', models: [{ model: 'alt/pricey', cost: 5 }, { model: 'alt/cheap', cost: 1 }] },
    ],
    aliases: [
      { pattern: 'smart-*', target: 'ordered' },
      { pattern: 'smart-exact-?', target: 'alt/specific' },
    ],
    fallback_chains: [{ name: 'safety-net', models: ['brk/chain-first', 'alt/chain-second'] }],
    resilience: {
      cooldown: { base_ms: 300, max_ms: 5000, max_backoff_steps: 3 },
      breaker: { failure_threshold: 4, reset_timeout_ms: 2000, max_reset_multiplier: 2 },
      wait_for_cooldown: { enabled: true, max_wait_ms: 3000 },
    },
  };
}

const CONTEXT_TOO_LONG = { error: { message: "This model's maximum context length is 8192 tokens. However, your messages resulted in 9000 tokens.", type: 'invalid_request_error', param: 'messages', code: 'context_length_exceeded' } };

function metricValue(text, name, labels = '') {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels}`) && !l.startsWith('#'));
  return line ? Number(line.trim().split(/\s+/).pop()) : 0;
}

for (const mode of MODES) {
  const missing = missingBinaries(mode);
  const skip = missing.length && process.env.OMNI_IT_SKIP_MISSING === '1'
    ? `binaries not built: ${missing.join('; ')}` : false;
  const distributed = mode === 'distributed';

  describe(`routing (${mode}${distributed ? ', 2 routers, 2 edges' : ''})`, { timeout: 600000, skip }, () => {
    let mock;
    let redis;
    let pg;
    let gw;

    const test = (name, fn, opts = {}) => it(name, { timeout: 60000, ...opts }, async (t) => {
      try {
        await fn(t);
        const dead = Object.values(gw.procs).filter((p) => !p.running);
        if (dead.length) throw new Error(`gateway process died: ${dead.map((p) => p.name).join(', ')}`);
      } catch (e) {
        markFailed();
        e.message += `\n===== process logs (${mode}) =====\n${gw ? gw.logs(40) : ''}${mock ? mock.proc.tail(20) : ''}`;
        throw e;
      }
    });

    const edgeCount = () => gw.edges.length;
    const edge = (i) => gw.edges[i % edgeCount()];
    const chat = (i, model, { headers = {}, content = 'hi', stream } = {}) => request(`${edge(i).baseURL}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: { model, messages: [{ role: 'user', content }], ...(stream === undefined ? {} : { stream }) },
    });
    const admin = (method, path, body, i = 0) => request(`${edge(i).url}${path}`, {
      method,
      headers: { authorization: `Bearer ${gw.adminKey}`, 'content-type': 'application/json' },
      body,
    });
    // Waits until every edge's router serves the same routing configuration version.
    const settle = () => waitFor('every router replica to adopt the routing change', async () => {
      const versions = await Promise.all(gw.edges.map((_, i) => admin('GET', '/api/routing', undefined, i)
        .then((r) => r.json?.version)));
      return versions.every((v) => v !== undefined && v === versions[0]);
    }, { timeoutMs: 5000, intervalMs: 100 });
    const since = () => mock.mark();
    const seen = async (from, filter = () => true) => (await mock.requests({ since: from })).filter(filter);

    before(async () => {
      mock = await startMock();
      if (distributed) [redis, pg] = await Promise.all([startRedis(), startPostgres()]);
      try {
        gw = await startGateway({ mode, config: routingConfig(mock.baseURL), redis, postgres: pg,
          routers: 2, edges: 2 });
      } catch (e) {
        markFailed();
        throw e;
      }
    });

    after(async () => {
      await gw?.stop();
      await Promise.all([mock?.stop(), redis?.stop(), pg?.stop()]);
    });

    beforeEach(async () => {
      await mock?.clearFaults();
      // A clean slate: breakers closed, no cooldowns or lockouts (shared by every replica).
      if (gw) {
        const r = await admin('POST', '/api/resilience/reset', { cooldowns: true });
        assert.equal(r.status, 200, r.text);
      }
    });

    // ---- combos and fallback ---------------------------------------------------------

    test('a combo tries each model\'s accounts in order, then the next model', async () => {
      await mock.fault([{ match: { key: 'sk-a' }, status: 503 }, { match: { key: 'sk-b' }, status: 500 }]);
      const from = await since();
      const r = await chat(0, 'ordered', { content: 'fallback order' });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.choices[0].message.content, 'echo: fallback order');
      assert.deepEqual((await seen(from)).map((x) => [x.key, x.model, x.status]),
        [['sk-a', 'm-first', 503], ['sk-b', 'm-first', 500], ['sk-alt', 'm-second', 200]]);
      const m = await request(`${edge(0).url}/metrics`);
      assert.ok(metricValue(m.text, 'omniroute_fallbacks_total', '{provider="mock"}') >= 2, 'fallbacks counted');
      assert.ok(metricValue(m.text, 'omniroute_candidates_tried_count') >= 1, 'candidates tried counted');
    });

    test('nested combos flatten into one ordered list', async () => {
      await mock.fault([{ match: { key: 'sk-a' }, status: 503 }, { match: { key: 'sk-b' }, status: 502 },
        { match: { key: 'sk-alt', model: 'm-second' }, status: 500 }]);
      const from = await since();
      const r = await chat(1, 'nested');
      assert.equal(r.status, 200, r.text);
      assert.deepEqual((await seen(from)).map((x) => `${x.key}/${x.model}`),
        ['sk-a/m-first', 'sk-b/m-first', 'sk-alt/m-second', 'sk-alt/tail']);
    });

    test('a model-specific 400 fails over; a client-fault 400 is passed back', async () => {
      await mock.fault({ match: { model: 'm-first' }, status: 400, times: -1, body: CONTEXT_TOO_LONG });
      let from = await since();
      let r = await chat(0, 'ordered');
      assert.equal(r.status, 200, r.text);
      assert.deepEqual((await seen(from)).map((x) => [x.key, x.status]), [['sk-a', 400], ['sk-b', 400], ['sk-alt', 200]]);
      await mock.clearFaults();
      await mock.fault({ match: { model: 'm-first' }, status: 400, times: -1, body: {
        error: { message: "Invalid value for 'temperature'.", type: 'invalid_request_error', param: 'temperature', code: 'invalid_value' } } });
      from = await since();
      r = await chat(1, 'ordered');
      assert.equal(r.status, 400, r.text);
      assert.match(r.json.error.message, /temperature/);
      assert.deepEqual((await seen(from)).map((x) => x.key), ['sk-a']);
    });

    test('combo strategies: round-robin, weighted, random, least-used, cost-optimized', async () => {
      const served = async (model, n, parallel = 1) => {
        const from = await since();
        for (let i = 0; i < n; i += parallel) {
          const batch = [];
          for (let j = 0; j < parallel && i + j < n; j++) batch.push(chat(i + j, model));
          for (const r of await Promise.all(batch)) assert.equal(r.status, 200, r.text);
        }
        return (await seen(from)).map((x) => x.model);
      };
      // round-robin with sticky limit 1: alternates, across replicas too.
      const rot = await served('rotating', 6);
      for (let i = 1; i < rot.length; i++) assert.notEqual(rot[i], rot[i - 1], `rotating: ${rot}`);
      // weighted 3:1.
      const w = await served('weighted', 40, 4);
      const heavy = w.filter((m) => m === 'heavy').length;
      assert.ok(heavy >= 20 && heavy <= 39, `weighted: heavy served ${heavy} of 40`);
      // random: every model comes first now and then.
      const s = await served('shuffled', 30, 3);
      for (const m of ['s1', 's2', 's3']) assert.ok(s.includes(m), `random never started with ${m}: ${s}`);
      // least-used: the model with fewer recent requests goes first (counters are shared).
      const lu = await served('balanced', 6);
      for (let i = 1; i < lu.length; i++) assert.notEqual(lu[i], lu[i - 1], `least-used: ${lu}`);
      // cost-optimized: the cheapest first.
      assert.deepEqual(await served('thrifty', 3), ['cheap', 'cheap', 'cheap']);
    });

    test('aliases (most specific wins), fallback chains, unknown and ambiguous models', async () => {
      let from = await since();
      let r = await chat(0, 'smart-anything');
      assert.equal(r.status, 200, r.text);
      assert.deepEqual((await seen(from)).map((x) => `${x.key}/${x.model}`), ['sk-a/m-first']);
      from = await since();
      r = await chat(1, 'SMART-EXACT-1');
      assert.equal(r.status, 200, r.text);
      assert.deepEqual((await seen(from)).map((x) => `${x.key}/${x.model}`), ['sk-alt/specific']);

      await mock.fault([{ match: { key: 'sk-brk1' }, status: 503 }, { match: { key: 'sk-brk2' }, status: 503 }]);
      from = await since();
      r = await chat(0, 'brk/chain-first');
      assert.equal(r.status, 200, r.text);
      assert.deepEqual((await seen(from)).map((x) => `${x.key}/${x.model}`),
        ['sk-brk1/chain-first', 'sk-brk2/chain-first', 'sk-alt/chain-second']);

      r = await chat(1, 'no-such-model');
      assert.equal(r.status, 404, r.text);
      assert.match(r.json.error.message, /\/v1\/models/);
      r = await chat(0, 'both-have');
      assert.equal(r.status, 400, r.text);
      assert.match(r.json.error.message, /ambiguous_model/);
      assert.match(r.json.error.message, /mock\/both-have/);
      assert.match(r.json.error.message, /alt\/both-have/);
    });

    // ---- accounts --------------------------------------------------------------------

    test('round-robin spreads requests evenly (within ±1) across replicas', async () => {
      const from = await since();
      const n = 30;
      for (let i = 0; i < n; i += 3) {
        const rs = await Promise.all([0, 1, 2].map((j) => chat(i + j, 'rr/m')));
        for (const r of rs) assert.equal(r.status, 200, r.text);
      }
      const counts = {};
      for (const x of await seen(from)) counts[x.key] = (counts[x.key] || 0) + 1;
      assert.deepEqual(Object.keys(counts).sort(), ['sk-r1', 'sk-r2', 'sk-r3']);
      for (const [k, c] of Object.entries(counts)) assert.ok(Math.abs(c - n / 3) <= 1, `${k}: ${c} of ${n} (${JSON.stringify(counts)})`);
    });

    test('account strategies set at run time reach every replica', async () => {
      const keys = async (n) => {
        const from = await since();
        for (let i = 0; i < n; i++) {
          const r = await chat(i, 'acct/m');
          assert.equal(r.status, 200, r.text);
        }
        return (await seen(from)).map((x) => x.key);
      };
      const set = async (routing) => {
        const r = await admin('PUT', '/api/providers/acct/routing', { routing });
        assert.equal(r.status, 200, r.text);
        assert.equal(r.json.managed, 'api');
        await settle();
      };
      try {
        assert.deepEqual(await keys(4), ['sk-x', 'sk-x', 'sk-x', 'sk-x'], 'fill-first');
        await set({ strategy: 'least-used' });
        const lu = await keys(6);
        for (let i = 1; i < lu.length; i++) assert.notEqual(lu[i], lu[i - 1], `least-used: ${lu}`);
        await set({ strategy: 'round-robin', sticky_limit: 2 });
        const rr = await keys(8);
        assert.equal(rr.filter((k) => k === 'sk-x').length, 4, `round-robin: ${rr}`);
        let run = 1;
        for (let i = 1; i < rr.length; i++) {
          run = rr[i] === rr[i - 1] ? run + 1 : 1;
          assert.ok(run <= 2, `sticky limit 2: ${rr}`);
        }
        await set({ strategy: 'random' });
        assert.deepEqual([...new Set(await keys(20))].sort(), ['sk-x', 'sk-y'], 'random uses both');
        await set({ strategy: 'p2c' });
        assert.deepEqual([...new Set(await keys(10))].sort(), ['sk-x', 'sk-y'], 'p2c uses both');
        await set({ strategy: 'cost-optimized' });
        assert.deepEqual(await keys(3), ['sk-x', 'sk-x', 'sk-x'], 'cost-optimized: lowest priority value');
      } finally {
        await admin('DELETE', '/api/providers/acct/routing');
        await settle();
      }
    });

    test('sticky sessions pin the account across replicas and echo X-OmniRoute-Session-Id', async () => {
      let from = await since();
      let r = await chat(0, 'rr/m', { headers: { 'x-session-id': 'sess-one' } });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.headers.get('x-omniroute-session-id'), 'sess-one');
      const pinned = (await seen(from))[0].key;
      await sleep(100);  // the outcome report pins the session
      from = await since();
      for (let i = 1; i <= 6; i++) {
        r = await chat(i, 'rr/m', { headers: { 'x-session-id': 'sess-one' } });
        assert.equal(r.status, 200, r.text);
      }
      assert.deepEqual([...new Set((await seen(from)).map((x) => x.key))], [pinned]);
      // Without a session the round-robin goes on.
      from = await since();
      for (let i = 0; i < 3; i++) assert.equal((await chat(i, 'rr/m')).status, 200);
      assert.equal(new Set((await seen(from)).map((x) => x.key)).size, 3);
      // The underscore form, streamed.
      r = await chat(1, 'rr/m', { headers: { x_session_id: 'sess-two' }, stream: true });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.headers.get('x-omniroute-session-id'), 'sess-two');
    });

    // ---- cooldowns, lockouts, waiting ------------------------------------------------

    test('a cooldown from an upstream hint is honoured by every replica until its time', async () => {
      // OpenAI's own form: the request budget is spent and resets in 3 s.
      await mock.fault({ match: { key: 'sk-a' }, status: 429,
        headers: { 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '3s' } });
      const t0 = Date.now();
      let from = await since();
      const r = await chat(0, 'mock/gpt-4o-mini');
      assert.equal(r.status, 200, r.text);
      assert.deepEqual((await seen(from)).map((x) => [x.key, x.status]), [['sk-a', 429], ['sk-b', 200]]);
      await sleep(100);  // the outcome report is asynchronous
      from = await since();
      for (let i = 1; Date.now() - t0 < 2500; i++) {
        assert.equal((await chat(i, 'mock/gpt-4o-mini')).status, 200);
        await sleep(100);
      }
      assert.deepEqual([...new Set((await seen(from)).map((x) => x.key))], ['sk-b'], 'sk-a is cooling down');
      // Back, but not before its time.
      const back = await waitFor('sk-a to be used again', async () => {
        const f = await since();
        await chat(0, 'mock/gpt-4o-mini');
        return (await seen(f)).find((x) => x.key === 'sk-a');
      }, { timeoutMs: 6000, intervalMs: 100 });
      assert.ok(back.time >= t0 + 2950, `sk-a used ${back.time - t0} ms after its 3 s cooldown began`);
      const h = await admin('GET', '/api/health');
      assert.equal(h.status, 200, h.text);
      assert.ok(h.json.counters.cooldowns_started >= 1, h.text);
    });

    test('each upstream retry hint is read in its own form', async () => {
      const inThree = () => Date.now() + 3000;
      const forms = {
        'Retry-After HTTP date': { headers: { 'Retry-After': new Date(inThree() + 1000).toUTCString() } },
        'X-RateLimit-Reset epoch': { headers: { 'X-RateLimit-Reset': String(Math.ceil(inThree() / 1000)) } },
        'OpenAI reset duration': { headers: { 'x-ratelimit-remaining-tokens': '0', 'x-ratelimit-reset-tokens': '3s' } },
        'Anthropic RFC 3339 reset': { headers: { 'anthropic-ratelimit-requests-remaining': '0',
          'anthropic-ratelimit-requests-reset': new Date(inThree()).toISOString() } },
        'Gemini RetryInfo': { body: { error: { code: 429, message: 'Resource has been exhausted', status: 'RESOURCE_EXHAUSTED',
          details: [{ '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: '3s' }] } } },
      };
      for (const [form, fault] of Object.entries(forms)) {
        await admin('POST', '/api/resilience/reset', { cooldowns: true });
        await mock.fault({ match: { key: 'sk-a' }, status: 429, ...fault });
        assert.equal((await chat(0, 'mock/gpt-4o-mini')).status, 200, form);
        await sleep(100);
        const h = await admin('GET', '/api/health', undefined, 1);
        const cd = h.json.cooldowns.find((c) => c.connection_id === 'mock:a');
        assert.ok(cd && cd.remaining_ms >= 1500 && cd.remaining_ms <= 4100,
          `${form}: cooldown ${JSON.stringify(cd)} (base 300 ms, hint ~3 s)`);
      }
    });

    test('rate-limit headers saying nothing is left hold the account until their reset', async () => {
      await mock.fault({ match: { key: 'sk-x' }, status: 200,
        headers: { 'x-ratelimit-limit-requests': '100', 'x-ratelimit-remaining-requests': '0', 'x-ratelimit-reset-requests': '2s' },
        body: { id: 'chatcmpl-last', object: 'chat.completion', created: 1, model: 'm',
          choices: [{ index: 0, message: { role: 'assistant', content: 'the last one' }, finish_reason: 'stop' }],
          usage: { prompt_tokens: 1, completion_tokens: 3, total_tokens: 4 } } });
      const t0 = Date.now();
      const r = await chat(0, 'acct/m');
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.choices[0].message.content, 'the last one');
      await sleep(100);
      const from = await since();
      for (let i = 1; Date.now() - t0 < 1600; i++) {
        assert.equal((await chat(i, 'acct/m')).status, 200);
        await sleep(100);
      }
      assert.deepEqual([...new Set((await seen(from)).map((x) => x.key))], ['sk-y'], 'sk-x is held');
      await waitFor('sk-x after its reset', async () => {
        const f = await since();
        await chat(0, 'acct/m');
        return (await seen(f))[0]?.key === 'sk-x';
      }, { timeoutMs: 4000, intervalMs: 100 });
      const h = await admin('GET', '/api/health');
      assert.ok(h.json.counters.rate_limit_holds >= 1, h.text);
    });

    test('every account cooling down: the edge waits and retries, or answers 503 when told not to', async () => {
      const both429 = [{ match: { key: 'sk-a' }, status: 429, headers: { 'Retry-After': '1' } },
        { match: { key: 'sk-b' }, status: 429, headers: { 'Retry-After': '1' } }];
      await mock.fault(both429);
      let r = await chat(0, 'mock/gpt-4o-mini');
      assert.equal(r.status, 429, 'the last account\'s answer');
      await sleep(100);
      const before = metricValue((await request(`${edge(1).url}/metrics`)).text, 'omniroute_cooldown_waits_total');
      const t = Date.now();
      r = await chat(1, 'mock/gpt-4o-mini', { content: 'waited' });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.choices[0].message.content, 'echo: waited');
      assert.ok(Date.now() - t >= 700, `answered after ${Date.now() - t} ms: it should have waited for the cooldown`);
      const afterWaits = metricValue((await request(`${edge(1).url}/metrics`)).text, 'omniroute_cooldown_waits_total');
      assert.ok(afterWaits > before, 'the wait is counted');

      let s = await admin('PUT', '/api/settings/resilience', { wait_for_cooldown: { enabled: false } });
      assert.equal(s.status, 200, s.text);
      await settle();
      try {
        await admin('POST', '/api/resilience/reset', { cooldowns: true });
        await mock.fault(both429);
        assert.equal((await chat(0, 'mock/gpt-4o-mini')).status, 429);
        await sleep(100);
        r = await chat(1, 'mock/gpt-4o-mini');
        assert.equal(r.status, 503, r.text);
        assert.equal(r.json.error.code, 'all_accounts_cooling_down');
        assert.ok(Number(r.headers.get('retry-after')) >= 1, 'Retry-After');
      } finally {
        s = await admin('DELETE', '/api/settings/resilience');
        assert.equal(s.status, 200, s.text);
        await settle();
      }
    });

    test('a 404 or a model-specific 429 locks the model out on that account only', async () => {
      await mock.fault({ match: { key: 'sk-alt', model: 'gone' }, status: 404 });
      let r = await chat(0, 'alt/gone');
      assert.equal(r.status, 404, r.text);
      await sleep(100);
      let from = await since();
      r = await chat(1, 'alt/gone');
      assert.equal(r.status, 503, r.text);
      assert.match(r.json.error.message, /locked out/);
      assert.equal((await seen(from)).length, 0, 'a locked-out model is not tried');
      assert.equal((await chat(1, 'alt/still-here')).status, 200, 'the account itself is fine');
      await mock.fault({ match: { key: 'sk-alt', model: 'busy' }, status: 429,
        body: { error: { message: 'Rate limit for this model exceeded', type: 'rate_limit_error', code: 'model_rate_limit' } } });
      assert.equal((await chat(0, 'alt/busy')).status, 429);
      await sleep(100);
      const h = await admin('GET', '/api/health', undefined, 1);
      const keys = h.json.lockouts.map((l) => l.key).sort();
      assert.deepEqual(keys, ['alt:alt:main:busy', 'alt:alt:main:gone'], h.text);
      for (const l of h.json.lockouts) assert.ok(l.remaining_ms > 100000 && l.remaining_ms <= 120000, h.text);
      assert.deepEqual(h.json.cooldowns, [], 'no connection cooldown');
      from = await since();
      assert.equal((await chat(0, 'alt/busy')).status, 503);
      assert.equal((await seen(from)).length, 0);
    });

    // ---- circuit breaker -------------------------------------------------------------

    // Requests to brk (whose accounts fail) until its breaker answers for it.
    const openBreaker = () => waitFor('the brk breaker to open', async () => {
      const r = await chat(0, 'brk/m');
      await sleep(50);  // the outcome reports are asynchronous
      return r.json?.error?.code === 'provider_circuit_open';
    }, { timeoutMs: 10000, intervalMs: 10 });

    test('the breaker opens after N failures, admits exactly one half-open probe across replicas, then closes', async () => {
      await mock.fault([{ match: { key: 'sk-brk1' }, status: 503, times: -1 },
        { match: { key: 'sk-brk2' }, status: 503, times: -1 }]);
      let from = await since();
      await openBreaker();
      assert.equal((await seen(from)).length, 4, 'opens after failure_threshold (4) upstream failures');
      from = await since();
      let r = await chat(0, 'brk/m');
      assert.equal(r.status, 503, r.text);
      assert.equal(r.json.error.code, 'provider_circuit_open');
      assert.equal(r.headers.get('x-omniroute-provider-breaker'), 'open');
      assert.ok(Number(r.headers.get('retry-after')) >= 1);
      assert.equal((await seen(from)).length, 0, 'an open breaker sends nothing upstream');
      let h = await admin('GET', '/api/health', undefined, 1);
      assert.equal(h.json.providers.find((p) => p.provider === 'brk').breaker.state, 'open', h.text);

      // After the reset timeout, a burst from both edges: one probe goes, it fails.
      await sleep(2200);
      await mock.clearFaults();
      await mock.fault([{ match: { key: 'sk-brk1' }, status: 503, delay_ms: 700, times: -1 },
        { match: { key: 'sk-brk2' }, status: 503, delay_ms: 700, times: -1 }]);
      from = await since();
      let burst = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => chat(i, 'brk/m')));
      assert.equal((await seen(from)).length, 1, 'exactly one half-open probe');
      assert.equal(burst.filter((x) => x.headers.get('x-omniroute-provider-breaker') === 'open').length, 5);
      await sleep(200);  // the probe's outcome report reopens it

      // Open again, for twice the reset timeout (4 s).
      await sleep(2500);
      r = await chat(1, 'brk/m');
      assert.equal(r.json?.error?.code, 'provider_circuit_open', 'still open after 2.5 s of 4');
      await sleep(2000);
      await mock.clearFaults();
      await mock.fault([{ match: { key: 'sk-brk1' }, delay_ms: 700, times: -1 },
        { match: { key: 'sk-brk2' }, delay_ms: 700, times: -1 }]);
      from = await since();
      burst = await Promise.all([0, 1, 2, 3, 4, 5].map((i) => chat(i, 'brk/m')));
      assert.equal((await seen(from)).length, 1, 'exactly one half-open probe');
      assert.equal(burst.filter((x) => x.status === 200).length, 1);
      // The probe succeeded: closed (once its outcome report has landed).
      await mock.clearFaults();
      await sleep(200);
      for (let i = 0; i < 4; i++) assert.equal((await chat(i, 'brk/m')).status, 200);
      h = await admin('GET', '/api/health');
      assert.equal(h.json.providers.find((p) => p.provider === 'brk').breaker.state, 'closed', h.text);
      assert.ok(h.json.counters.breaker_opened >= 2, h.text);
      const m = await request(`${edge(0).url}/metrics`);
      assert.match(m.text, /omniroute_breaker_state\{provider="brk"\} 0/);
      assert.ok(metricValue(m.text, 'omniroute_unavailable_total', '{code="provider_circuit_open"}') >= 1);
    });

    test('POST /api/resilience/reset closes an open breaker', async () => {
      await mock.fault([{ match: { key: 'sk-brk1' }, status: 500, times: -1 },
        { match: { key: 'sk-brk2' }, status: 500, times: -1 }]);
      await openBreaker();
      await mock.clearFaults();
      const r = await admin('POST', '/api/resilience/reset', { provider: 'brk' }, 1);
      assert.equal(r.status, 200, r.text);
      assert.deepEqual(r.json.reset_breakers, ['brk']);
      await admin('POST', '/api/resilience/reset', { cooldowns: true });
      assert.equal((await chat(0, 'brk/m')).status, 200);
    });

    // ---- pacing ----------------------------------------------------------------------

    test('max_concurrent 1: no account ever serves two requests at once, across replicas', async () => {
      await mock.fault([{ match: { key: 'sk-p1' }, delay_ms: 1000, times: -1 },
        { match: { key: 'sk-p2' }, delay_ms: 1000, times: -1 }]);
      const from = await since();
      const rs = await Promise.all([0, 1, 2, 3].map((i) => chat(i, 'paced/m')));
      for (const r of rs) assert.equal(r.status, 200, r.text);
      const reqs = await seen(from);
      assert.equal(reqs.length, 4);
      for (const key of ['sk-p1', 'sk-p2']) {
        const times = reqs.filter((x) => x.key === key).map((x) => x.time).sort((a, b) => a - b);
        assert.ok(times.length >= 1, `${key} used`);
        for (let i = 1; i < times.length; i++) {
          assert.ok(times[i] - times[i - 1] >= 950, `${key} started two requests ${times[i] - times[i - 1]} ms apart`);
        }
      }
    });

    test('a minimum gap and requests per minute per account, across replicas', async () => {
      const keys = async (n) => {
        const from = await since();
        const statuses = [];
        for (let i = 0; i < n; i++) statuses.push((await chat(i, 'acct/m')).status);
        return { statuses, keys: (await seen(from)).map((x) => x.key) };
      };
      try {
        let r = await admin('PUT', '/api/providers/acct/routing', { queue: { min_gap_ms: 600 } });
        assert.equal(r.status, 200, r.text);
        await settle();
        const t = Date.now();
        const gap = await keys(3);
        assert.deepEqual(gap.statuses, [200, 200, 200]);
        assert.deepEqual(gap.keys, ['sk-x', 'sk-y', 'sk-x'], 'the third waits for sk-x\'s gap');
        assert.ok(Date.now() - t >= 400, 'the third request waited');

        r = await admin('PUT', '/api/providers/acct/routing', { queue: { rpm: 1 } }, 1);
        assert.equal(r.status, 200, r.text);
        await settle();
        const rpm = await keys(3);
        assert.deepEqual(rpm.keys, ['sk-x', 'sk-y']);
        assert.deepEqual(rpm.statuses.slice(0, 2), [200, 200]);
        assert.equal(rpm.statuses[2], 503, 'a minute is beyond max_wait_ms: answered at once');
        const last = await chat(0, 'acct/m');
        assert.equal(last.json.error.code, 'all_accounts_rate_limited', last.text);
        assert.ok(Number(last.headers.get('retry-after')) > 30, 'Retry-After: the minute window');
      } finally {
        await admin('DELETE', '/api/providers/acct/routing');
        await settle();
      }
    });

    // ---- admin -----------------------------------------------------------------------

    test('combos created at run time work on every replica; file combos are read-only', async () => {
      let r = await admin('POST', '/api/combos', { name: 'made-at-runtime', strategy: 'priority', models: ['alt/rt-1', 'mock/rt-2'] });
      assert.equal(r.status, 201, r.text);
      await settle();
      for (let i = 0; i < edgeCount(); i++) {
        const from = await since();
        assert.equal((await chat(i, 'made-at-runtime')).status, 200);
        assert.deepEqual((await seen(from)).map((x) => x.model), ['rt-1']);
      }
      r = await admin('PUT', '/api/combos/ordered', { models: ['alt/x'] }, 1);
      assert.equal(r.status, 403, r.text);
      r = await admin('GET', '/api/routing', undefined, 1);
      assert.equal(r.json.combos.find((c) => c.name === 'ordered').managed, 'file');
      assert.equal(r.json.combos.find((c) => c.name === 'made-at-runtime').managed, 'api');
      r = await admin('DELETE', '/api/combos/made-at-runtime', undefined, 1);
      assert.equal(r.status, 200, r.text);
      await settle();
      assert.equal((await chat(0, 'made-at-runtime')).status, 404);
      const models = await request(`${edge(0).baseURL}/models`);
      assert.ok(models.json.data.some((m) => m.id === 'ordered'), 'combos are listed as models');
    });

    // ---- Redis outage ----------------------------------------------------------------

    if (distributed) {
      test('Redis killed mid-test: routing goes on locally, says so, and hands state over when it returns', async () => {
        await redis.kill();
        const r = await chat(0, 'mock/gpt-4o-mini');
        assert.equal(r.status, 200, r.text);
        for (let i = 0; i < edgeCount(); i++) {
          await waitFor(`edge ${i} /readyz to report local routing state`, async () => {
            await chat(i, 'mock/gpt-4o-mini');
            const rz = await request(`${edge(i).url}/readyz`);
            return rz.status === 200 && rz.json?.routing_state === 'local' && rz.json.state_store_healthy === false;
          }, { timeoutMs: 8000, intervalMs: 200 });
        }
        const m = await request(`${edge(0).url}/metrics`);
        assert.match(m.text, /omniroute_router_state_store_up\{store="redis"\} 0/);
        const h = await admin('GET', '/api/health');
        assert.equal(h.json.state_store.healthy, false, h.text);
        assert.equal(h.json.status, 'degraded');

        // Learned while Redis is away, by router 1 only.
        await mock.fault({ match: { key: 'sk-a' }, status: 429, headers: { 'Retry-After': '8' } });
        let from = await since();
        assert.equal((await chat(0, 'mock/gpt-4o-mini')).status, 200);
        assert.deepEqual((await seen(from)).map((x) => x.key), ['sk-a', 'sk-b']);
        await sleep(100);

        await redis.restart();
        for (let i = 0; i < edgeCount(); i++) {
          await waitFor(`edge ${i} /readyz to report shared routing state`, async () => {
            const rz = await request(`${edge(i).url}/readyz`);
            return rz.status === 200 && rz.json?.routing_state === 'shared';
          }, { timeoutMs: 8000, intervalMs: 200 });
        }
        // Router 1 hands its cooldown to Redis (within a maintenance round); router 2 honours it.
        await sleep(1500);
        from = await since();
        for (let i = 0; i < 4; i++) assert.equal((await chat(1, 'mock/gpt-4o-mini')).status, 200);
        assert.deepEqual([...new Set((await seen(from)).map((x) => x.key))], ['sk-b'], 'router 2 sees the cooldown');
        const h2 = await admin('GET', '/api/health', undefined, 1);
        assert.equal(h2.json.state_store.healthy, true, h2.text);
        assert.ok(h2.json.cooldowns.some((c) => c.connection_id === 'mock:a'), h2.text);
        // The routing changes made earlier are shared again too.
        await settle();
      }, { timeout: 90000 });
    }
  });
}
