// End-to-end tests of the gateway, in both modes: the all-in-one binary, and the five
// services as separate processes with a real redis-server and PostgreSQL. Clients talk to
// it over HTTP on loopback; the mock provider stands in for the upstream.
//
// OMNI_IT_MODES=allinone,distributed picks the modes (default both).
// OMNI_IT_SKIP_MISSING=1 skips a mode whose binaries are not built (default: fail).

import assert from 'node:assert/strict';
import { after, before, beforeEach, describe, it } from 'node:test';
import OpenAI from 'openai';
import {
  assertOpenAIError, freePort, markFailed, missingBinaries, rawRequest, readSSE, request, sleep,
  startGateway, startMock, startPostgres, startRedis, waitFor, withTimeout,
} from './lib/index.mjs';

const MODES = (process.env.OMNI_IT_MODES || 'allinone,distributed').split(',').map((s) => s.trim()).filter(Boolean);
const CLIENT_KEY = 'sk-client-integration-0001';
const MODEL = 'mock/gpt-4o-mini';
const BODY_LIMIT = 65536;

function gatewayConfig({ mockBaseURL, deadPort }) {
  return {
    server: {
      host: '127.0.0.1',
      require_api_key: true,
      threads: 2,
      body_limit_bytes: BODY_LIMIT,
      upstream_connect_timeout_ms: 2000,
      upstream_timeout_ms: 20000,
      drain_timeout_ms: 15000,
    },
    nodes: [
      { id: 'mock', name: 'Mock provider', format: 'openai', base_url: mockBaseURL,
        models: ['gpt-4o-mini', 'gpt-4o'] },
      // Nothing listens there: every request to it fails to connect.
      { id: 'dead', name: 'Unreachable', format: 'openai', base_url: `http://127.0.0.1:${deadPort}/v1`,
        models: ['m'] },
      // Another, so that one test's cooldown on `dead` does not change the next one's answer.
      { id: 'dead2', name: 'Unreachable too', format: 'openai', base_url: `http://127.0.0.1:${deadPort}/v1`,
        models: ['m'] },
    ],
    connections: [
      { provider: 'mock', name: 'acct-a', api_key: 'sk-a', priority: 1 },
      { provider: 'mock', name: 'acct-b', api_key: 'sk-b', priority: 2 },
      { provider: 'dead', name: 'only', api_key: 'sk-dead', priority: 1 },
      { provider: 'dead2', name: 'only', api_key: 'sk-dead', priority: 1 },
    ],
    api_keys: [{ name: 'integration', key: CLIENT_KEY }],
    resilience: { cooldown: { base_ms: 1000, max_ms: 5000, max_backoff_steps: 3 } },
  };
}

for (const mode of MODES) {
  const missing = missingBinaries(mode);
  const skip = missing.length && process.env.OMNI_IT_SKIP_MISSING === '1'
    ? `binaries not built: ${missing.join('; ')}` : false;

  describe(`gateway (${mode})`, { timeout: 300000, skip }, () => {
    let mock;
    let redis;
    let pg;
    let gw;
    let sdk;
    // Filled by earlier tests, checked by the usage tests.
    const seen = { plain: null, streamed: null };

    const deadProcs = () => (gw ? Object.values(gw.procs).filter((p) => !p.running) : []);
    const describeDead = (dead) => dead.map((p) => `${p.name} exited ${JSON.stringify(p.exit)}`).join(', ');

    // A test that, when it fails, carries the last lines of every process's log. A gateway
    // process that dies fails the test during which it died; the next test gets a fresh
    // gateway so one crash does not hide the results of everything after it.
    const test = (name, fn, opts = {}) => it(name, { timeout: 30000, ...opts }, async (t) => {
      if (gw && deadProcs().length && !opts.noRestart) {
        const logs = gw.logs(50);
        await gw.stop().catch(() => {});
        gw = null;
        try {
          await startGw();
        } catch (e) {
          e.message = `restarting the gateway after a crash: ${e.message}\n(previous run's logs)\n${logs}`;
          throw e;
        }
      }
      try {
        await fn(t);
        await sleep(100); // lets a crash right after the last answer be noticed here
        const dead = deadProcs();
        if (dead.length && !opts.allowDead) throw new Error(`gateway process died: ${describeDead(dead)}`);
      } catch (e) {
        markFailed();
        await sleep(100);
        const dead = deadProcs();
        if (dead.length && !opts.allowDead && !e.message.startsWith('gateway process died')) {
          e.message = `gateway process died: ${describeDead(dead)}; ${e.message}`;
        }
        e.message += `\n===== process logs (${mode}) =====\n${gw ? gw.logs(50) : ''}${mock ? mock.proc.tail(20) : ''}`;
        throw e;
      }
    });

    const chat = (body, headers = {}) => request(`${gw.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json', ...headers },
      body,
    });

    // Waits until a request goes to sk-a first again (any cooldown on it has run out).
    const firstConnectionBack = () => waitFor('sk-a to be tried first again', async () => {
      const since = await mock.mark();
      await sdk.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'probe' }] });
      return (await mock.requests({ since }))[0]?.key === 'sk-a';
    }, { timeoutMs: 9000, intervalMs: 300 });

    let deadPort;
    const startGw = async () => {
      gw = await startGateway({ mode, config: gatewayConfig({ mockBaseURL: mock.baseURL, deadPort }), redis,
        postgres: pg });
      sdk = new OpenAI({ baseURL: gw.baseURL, apiKey: CLIENT_KEY, maxRetries: 0, timeout: 20000 });
    };

    before(async () => {
      mock = await startMock({ keys: ['sk-a', 'sk-b'] });
      if (mode === 'distributed') [redis, pg] = await Promise.all([startRedis(), startPostgres()]);
      deadPort = await freePort();
      try {
        await startGw();
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
    });

    test('non-streamed chat through the official openai SDK', async () => {
      const since = await mock.mark();
      const { data, response } = await sdk.chat.completions
        .create({ model: MODEL, messages: [{ role: 'user', content: 'hello from the sdk' }] })
        .withResponse();
      assert.equal(data.choices[0].message.content, 'echo: hello from the sdk');
      assert.equal(data.choices[0].finish_reason, 'stop');
      assert.equal(data.object, 'chat.completion');
      const requestId = response.headers.get('x-request-id');
      assert.ok(requestId, 'x-request-id header missing');

      const reqs = await mock.requests({ since });
      assert.equal(reqs.length, 1, `mock saw ${reqs.length} requests`);
      const up = reqs[0];
      assert.equal(up.path, '/v1/chat/completions');
      assert.equal(up.body.model, 'gpt-4o-mini', 'prefix "mock/" should be stripped upstream');
      assert.equal(up.headers.authorization, 'Bearer sk-a');
      assert.deepEqual(up.body.messages, [{ role: 'user', content: 'hello from the sdk' }]);
      assert.notEqual(requestId, up.response_request_id, 'the gateway should give its own request id');
      assert.deepEqual(data.usage.prompt_tokens, up.usage.prompt_tokens, 'usage passed through unchanged');
      assert.deepEqual(data.usage.completion_tokens, up.usage.completion_tokens);
      seen.plain = { requestId, usage: up.usage, key: up.key };
    });

    test('streamed chat through the SDK, with usage', async () => {
      const since = await mock.mark();
      const { data: stream, response } = await sdk.chat.completions.create({
        model: MODEL, stream: true, stream_options: { include_usage: true },
        messages: [{ role: 'user', content: 'stream me please' }],
      }).withResponse();
      let text = '';
      let usage = null;
      let finish = null;
      for await (const chunk of stream) {
        const c = chunk.choices?.[0];
        if (c?.delta?.content) text += c.delta.content;
        if (c?.finish_reason) finish = c.finish_reason;
        if (chunk.usage) usage = chunk.usage;
      }
      assert.equal(text, 'echo: stream me please');
      assert.equal(finish, 'stop');
      const reqs = await mock.requests({ since });
      assert.equal(reqs.length, 1);
      assert.equal(reqs[0].body.stream, true);
      assert.ok(usage, 'no usage chunk reached the client');
      assert.equal(usage.prompt_tokens, reqs[0].usage.prompt_tokens);
      assert.equal(usage.completion_tokens, reqs[0].usage.completion_tokens);
      const requestId = response.headers.get('x-request-id');
      assert.ok(requestId, 'x-request-id header missing on a stream');
      seen.streamed = { requestId, usage: reqs[0].usage, key: reqs[0].key };
    });

    test('a stream reaches the client as it is produced, not buffered', async () => {
      await mock.fault({ chunk_delay_ms: 100 });
      const t0 = Date.now();
      const r = await fetch(`${gw.baseURL}/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: MODEL, stream: true, messages: [{ role: 'user', content: 'one two three four' }] }),
        signal: AbortSignal.timeout(15000),
      });
      assert.equal(r.status, 200);
      assert.match(r.headers.get('content-type') || '', /^text\/event-stream/);
      const { events } = await readSSE(r, { t0 });
      const content = events.filter((e) => e.data?.choices?.[0]?.delta?.content);
      assert.equal(content.map((e) => e.data.choices[0].delta.content).join(''), 'echo: one two three four');
      assert.equal(content.length, 5, 'one event per upstream chunk');
      const spread = content.at(-1).at - content[0].at;
      assert.ok(spread >= 300, `first and last content events arrived ${spread} ms apart (upstream spread ~400 ms): ` +
        `arrival times ${content.map((e) => e.at).join(', ')}`);
      assert.equal(events.at(-1).raw, '[DONE]');
    });

    test('lists the node\'s models as mock/<model>', async () => {
      const r = await request(`${gw.baseURL}/models`, { headers: { authorization: `Bearer ${CLIENT_KEY}` } });
      assert.equal(r.status, 200, r.text);
      assert.equal(r.json.object, 'list');
      const ids = r.json.data.map((m) => m.id);
      for (const id of ['mock/gpt-4o-mini', 'mock/gpt-4o']) assert.ok(ids.includes(id), `${id} not in ${ids}`);
      for (const m of r.json.data) {
        assert.equal(m.object, 'model');
        assert.equal(typeof m.owned_by, 'string');
      }
      const page = await sdk.models.list();
      assert.ok(page.data.some((m) => m.id === MODEL));
    });

    test('health, readiness and metrics', async () => {
      const h = await request(`${gw.url}/healthz`);
      assert.equal(h.status, 200, h.text);
      const rz = await request(`${gw.url}/readyz`);
      assert.equal(rz.status, 200, rz.text);
      const m = await request(`${gw.url}/metrics`);
      assert.equal(m.status, 200);
      assert.match(m.text, /^omniroute_requests_total/m, 'omniroute_requests_total missing from /metrics');
    });

    test('the usage of each request lands in the store', async () => {
      assert.ok(seen.plain && seen.streamed, 'depends on the chat tests above');
      for (const [what, s] of Object.entries(seen)) {
        const rows = await waitFor(`usage row of the ${what} request ${s.requestId}`, async () => {
          const rs = await gw.usageRows(s.requestId);
          return rs.length ? rs : null;
        }, { timeoutMs: 5000, intervalMs: 200 });
        assert.equal(rows.length, 1, `one row per request id (${what})`);
        const row = rows[0];
        const ctx = `${what}: ${JSON.stringify(row)}`;
        assert.equal(row.provider, 'mock', ctx);
        assert.equal(row.connection_id, s.key === 'sk-a' ? 'mock:acct-a' : 'mock:acct-b', ctx);
        assert.equal(Number(row.input_tokens), s.usage.prompt_tokens, ctx);
        assert.equal(Number(row.output_tokens), s.usage.completion_tokens, ctx);
        assert.equal(Number(row.status), 200, ctx);
      }
    });

    test('the admin API lists recent requests', async () => {
      const r = await request(`${gw.url}/api/usage/requests?limit=10`,
        { headers: { authorization: `Bearer ${gw.adminKey}` } });
      assert.equal(r.status, 200, r.text);
      assert.ok(Array.isArray(r.json?.data), r.text.slice(0, 500));
      const row = r.json.data.find((x) => x.request_id === seen.plain?.requestId);
      assert.ok(row, `request ${seen.plain?.requestId} not in ${r.text.slice(0, 1000)}`);
      assert.equal(row.provider, 'mock');
      assert.equal(Number(row.input_tokens), seen.plain.usage.prompt_tokens);
      assert.equal(Number(row.output_tokens), seen.plain.usage.completion_tokens);
      assert.equal(Number(row.status), 200);
    });

    // ---- errors: OpenAI-shaped bodies --------------------------------------------------

    test('invalid JSON → 400', async () => {
      const r = await chat('{"model": "mock/gpt-4o-mini", "messages": [');
      assertOpenAIError(r, 400, { type: 'invalid_request_error' });
    });

    test('missing model → 400', async () => {
      const r = await chat({ messages: [{ role: 'user', content: 'hi' }] });
      assertOpenAIError(r, 400, { type: 'invalid_request_error' });
    });

    test('unknown provider → 404', async () => {
      const since = await mock.mark();
      const r = await chat({ model: 'nope/x', messages: [{ role: 'user', content: 'hi' }] });
      assertOpenAIError(r, 404);
      assert.equal((await mock.requests({ since })).length, 0, 'nothing should reach the provider');
    });

    test('missing client key → 401', async () => {
      const r = await request(`${gw.baseURL}/chat/completions`, { method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: { model: MODEL, messages: [{ role: 'user', content: 'hi' }] } });
      assertOpenAIError(r, 401);
    });

    test('wrong client key → 401 (and the SDK sees an AuthenticationError)', async () => {
      const r = await chat({ model: MODEL, messages: [{ role: 'user', content: 'hi' }] },
        { authorization: 'Bearer sk-client-wrong-0000' });
      assertOpenAIError(r, 401);
      const bad = new OpenAI({ baseURL: gw.baseURL, apiKey: 'sk-client-wrong-0000', maxRetries: 0 });
      await assert.rejects(bad.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'x' }] }),
        (e) => e instanceof OpenAI.AuthenticationError);
    });

    test('unreachable upstream → 502', async () => {
      const r = await chat({ model: 'dead/m', messages: [{ role: 'user', content: 'hi' }] });
      assertOpenAIError(r, 502);
    });

    test('unreachable upstream, streamed → 502 before any byte is sent', async () => {
      const r = await chat({ model: 'dead2/m', stream: true, messages: [{ role: 'user', content: 'hi' }] });
      assertOpenAIError(r, 502);
    });

    test(`body over server.body_limit_bytes (${BODY_LIMIT}) → 413`, async () => {
      const body = JSON.stringify({ model: MODEL, messages: [{ role: 'user', content: 'x'.repeat(BODY_LIMIT * 2) }] });
      const r = await rawRequest(`${gw.baseURL}/chat/completions`, { body,
        headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' } });
      assertOpenAIError({ ...r, headers: new Headers(r.headers) }, 413);
    });

    test('unknown /v1 path → small JSON 404', async () => {
      const r = await request(`${gw.baseURL}/whatever`, { method: 'POST',
        headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' }, body: {} });
      assertOpenAIError(r, 404);
      assert.ok(r.text.length < 4096, `404 body is ${r.text.length} bytes`);
    });

    test('admin API without or with a wrong admin key → 401', async () => {
      const none = await request(`${gw.url}/api/usage/requests?limit=10`);
      assertOpenAIError(none, 401);
      const client = await request(`${gw.url}/api/usage/requests?limit=10`,
        { headers: { authorization: `Bearer ${CLIENT_KEY}` } });
      assertOpenAIError(client, 401);
    });

    // ---- resilience ------------------------------------------------------------------

    test('a 429 on the first connection fails over to the second, which is kept during the cooldown', async () => {
      await mock.fault({ match: { key: 'sk-a' }, status: 429, headers: { 'Retry-After': '2' } });
      let since = await mock.mark();
      const first = await sdk.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'fail over' }] });
      assert.equal(first.choices[0].message.content, 'echo: fail over');
      let reqs = await mock.requests({ since });
      assert.deepEqual(reqs.map((r) => [r.key, r.status]), [['sk-a', 429], ['sk-b', 200]]);

      since = await mock.mark();
      const second = await sdk.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'cooling' }] });
      assert.equal(second.choices[0].message.content, 'echo: cooling');
      reqs = await mock.requests({ since });
      assert.deepEqual(reqs.map((r) => [r.key, r.status]), [['sk-b', 200]], 'sk-a is cooling down');
    });

    test('after the cooldown the first connection is used again', async () => {
      // Retry-After 2 s, cooldown max_ms 5 s: well within 9 s sk-a must be back.
      await firstConnectionBack();
    });

    test('a 503 or a dropped connection on the first connection fails over too', async () => {
      for (const fault of [{ status: 503 }, { drop_connection: true }]) {
        // Wait out any cooldown from the previous round so sk-a is tried first.
        await firstConnectionBack();
        // sk-a keeps failing (a gateway may retry it once, e.g. on a fresh connection).
        await mock.fault({ match: { key: 'sk-a' }, times: -1, ...fault });
        const since = await mock.mark();
        const r = await sdk.chat.completions.create({ model: MODEL, messages: [{ role: 'user', content: 'again' }] });
        assert.equal(r.choices[0].message.content, 'echo: again');
        const keys = (await mock.requests({ since })).map((x) => x.key);
        const ctx = `fault ${JSON.stringify(fault)}: attempts ${JSON.stringify(keys)}`;
        assert.equal(keys[0], 'sk-a', ctx);
        assert.equal(keys.at(-1), 'sk-b', ctx);
        assert.ok(keys.length <= 3, ctx);
        await mock.clearFaults();
      }
    });

    test('an upstream 400 (the client\'s fault) is passed back, not failed over', async () => {
      await firstConnectionBack();
      await mock.fault({ match: { key: 'sk-a' }, status: 400, times: -1, body: {
        error: { message: "Invalid value for 'temperature'.", type: 'invalid_request_error', param: 'temperature',
          code: 'invalid_value' } } });
      const since = await mock.mark();
      const r = await chat({ model: MODEL, temperature: 9, messages: [{ role: 'user', content: 'x' }] });
      const e = assertOpenAIError(r, 400);
      assert.match(e.message, /temperature/);
      assert.deepEqual((await mock.requests({ since })).map((x) => x.key), ['sk-a']);
    });

    test('a stream cut mid-way ends the client\'s stream, and the gateway keeps serving', async () => {
      await mock.fault({ cut_after_chunks: 3 });
      const r = await fetch(`${gw.baseURL}/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: MODEL, stream: true, messages: [{ role: 'user', content: 'one two three four' }] }),
        signal: AbortSignal.timeout(15000),
      });
      assert.equal(r.status, 200, 'bytes were sent before the cut: no failover, status already 200');
      let text = '';
      try {
        const { events } = await readSSE(r);
        text = events.map((e) => e.data?.choices?.[0]?.delta?.content || '').join('');
      } catch {
        // a reset connection is an acceptable way to end it
      }
      assert.ok(!text.includes('four'), 'the client cannot have received what the upstream never sent');
      const ok = await chat({ model: MODEL, messages: [{ role: 'user', content: 'still alive' }] });
      assert.equal(ok.status, 200, ok.text);
      assert.equal(ok.json.choices[0].message.content, 'echo: still alive');
    });

    // ---- last: shutdown ----------------------------------------------------------------

    test('SIGTERM drains: a stream in flight completes, the process exits 0', async () => {
      await mock.fault({ chunk_delay_ms: 300 });
      const edge = gw.edge;
      const r = await fetch(`${gw.baseURL}/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' },
        body: JSON.stringify({ model: MODEL, stream: true, messages: [{ role: 'user', content: 'slow one two three' }] }),
        signal: AbortSignal.timeout(20000),
      });
      assert.equal(r.status, 200);
      const reader = r.body.getReader();
      const decoder = new TextDecoder();
      let raw = '';
      // Wait until the stream is under way, then ask the gateway to stop.
      while (!raw.includes('"content"')) {
        const { value, done } = await reader.read();
        if (done) break;
        raw += decoder.decode(value, { stream: true });
      }
      edge.signal('SIGTERM');
      const tSig = Date.now();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        raw += decoder.decode(value, { stream: true });
      }
      const text = raw.split('\n').filter((l) => l.startsWith('data: {'))
        .map((l) => JSON.parse(l.slice(6)).choices?.[0]?.delta?.content || '').join('');
      assert.equal(text, 'echo: slow one two three', 'the stream should complete during the drain');
      assert.match(raw, /data: \[DONE\]/);
      assert.ok(Date.now() - tSig >= 500, 'the stream went on after SIGTERM');
      const exit = await withTimeout(edge.exited, 15000);
      assert.ok(exit, `${edge.name} did not exit within 15 s of SIGTERM`);
      assert.equal(exit.code, 0, `${edge.name} exit: ${JSON.stringify(exit)}`);
    }, { timeout: 45000, allowDead: true });

    if (mode === 'distributed') {
      test('the four services exit 0 on SIGTERM', async () => {
        const exits = {};
        await Promise.all(['router', 'translator', 'accounts', 'usage'].map(async (name) => {
          const p = gw.procs[name];
          p.signal('SIGTERM');
          exits[name] = await withTimeout(p.exited, 15000);
        }));
        for (const [name, exit] of Object.entries(exits)) {
          assert.ok(exit, `${name} did not exit within 15 s of SIGTERM`);
          assert.equal(exit.code, 0, `${name} exit: ${JSON.stringify(exit)}`);
        }
      }, { allowDead: true, noRestart: true });
    }
  });
}
