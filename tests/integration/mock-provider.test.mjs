// Self-test of the mock provider: it must be faithful enough that the official OpenAI SDK
// talks to it unchanged, and its fault injection must do what the gateway tests rely on.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import { readSSE, request, sleep, startMock } from './lib/index.mjs';

describe('mock provider', { timeout: 60000 }, () => {
  let mock;
  let sdk;

  before(async () => {
    mock = await startMock({ keys: ['sk-a', 'sk-b'] });
    sdk = new OpenAI({ baseURL: mock.baseURL, apiKey: 'sk-a', maxRetries: 0, timeout: 10000 });
  });
  after(async () => {
    await mock?.stop();
  });

  it('answers a chat completion the SDK accepts, and records it', async () => {
    await mock.reset();
    const { data, response } = await sdk.chat.completions
      .create({ model: 'gpt-4o-mini', messages: [{ role: 'system', content: 'be brief' },
        { role: 'user', content: 'hello there' }] })
      .withResponse();
    assert.equal(data.object, 'chat.completion');
    assert.match(data.id, /^chatcmpl-/);
    assert.equal(data.model, 'gpt-4o-mini');
    assert.equal(data.choices[0].message.role, 'assistant');
    assert.equal(data.choices[0].message.content, 'echo: hello there');
    assert.equal(data.choices[0].finish_reason, 'stop');
    assert.equal(data.usage.completion_tokens, 3);
    assert.equal(data.usage.total_tokens, data.usage.prompt_tokens + data.usage.completion_tokens);
    assert.ok(response.headers.get('x-request-id'));
    const reqs = await mock.requests();
    assert.equal(reqs.length, 1);
    assert.equal(reqs[0].path, '/v1/chat/completions');
    assert.equal(reqs[0].key, 'sk-a');
    assert.equal(reqs[0].headers.authorization, 'Bearer sk-a');
    assert.equal(reqs[0].body.model, 'gpt-4o-mini');
    assert.deepEqual(reqs[0].usage, data.usage);
    assert.equal(reqs[0].status, 200);
  });

  it('streams chunks the SDK accepts, with usage when asked', async () => {
    const stream = await sdk.chat.completions.create({
      model: 'gpt-4o-mini', stream: true, stream_options: { include_usage: true },
      messages: [{ role: 'user', content: 'one two three' }],
    });
    let text = '';
    let usage = null;
    let finish = null;
    let n = 0;
    for await (const chunk of stream) {
      n++;
      assert.equal(chunk.object, 'chat.completion.chunk');
      if (chunk.choices[0]?.delta?.content) text += chunk.choices[0].delta.content;
      if (chunk.choices[0]?.finish_reason) finish = chunk.choices[0].finish_reason;
      if (chunk.usage) usage = chunk.usage;
    }
    assert.equal(text, 'echo: one two three');
    assert.equal(finish, 'stop');
    assert.equal(n, 1 + 4 + 1 + 1);
    assert.equal(usage.completion_tokens, 4);
  });

  it('sends OpenAI-exact SSE framing', async () => {
    const t0 = Date.now();
    const r = await fetch(`${mock.baseURL}/chat/completions`, {
      method: 'POST', headers: { authorization: 'Bearer sk-b', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: 'x' }] }),
    });
    assert.match(r.headers.get('content-type'), /^text\/event-stream/);
    const { events } = await readSSE(r, { t0 });
    assert.deepEqual(events[0].data.choices[0].delta, { role: 'assistant', content: '', refusal: null });
    assert.equal(events.at(-1).raw, '[DONE]');
    assert.equal(events.at(-2).data.choices[0].finish_reason, 'stop');
    assert.ok(!('usage' in events[1].data), 'no usage field without include_usage');
  });

  it('refuses a wrong key with OpenAI\'s 401', async () => {
    const bad = new OpenAI({ baseURL: mock.baseURL, apiKey: 'sk-wrong', maxRetries: 0 });
    await assert.rejects(bad.chat.completions.create({ model: 'm', messages: [] }), (e) => {
      assert.equal(e.status, 401);
      assert.equal(e.code, 'invalid_api_key');
      assert.equal(e.type, 'invalid_request_error');
      return true;
    });
  });

  it('lists models in OpenAI\'s shape', async () => {
    const page = await sdk.models.list();
    assert.ok(page.data.some((m) => m.id === 'gpt-4o-mini' && m.object === 'model'));
  });

  it('injects a 429 with Retry-After for one key only, once', async () => {
    await mock.fault({ match: { key: 'sk-a' }, status: 429, headers: { 'Retry-After': '2' } });
    const sdkB = new OpenAI({ baseURL: mock.baseURL, apiKey: 'sk-b', maxRetries: 0 });
    const b = await sdkB.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }] });
    assert.equal(b.choices[0].message.content, 'echo: hi');
    await assert.rejects(sdk.chat.completions.create({ model: 'm', messages: [] }), (e) => {
      assert.equal(e.status, 429);
      assert.equal(e.headers.get('retry-after'), '2');
      assert.equal(e.code, 'rate_limit_exceeded');
      return true;
    });
    const a = await sdk.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'again' }] });
    assert.equal(a.choices[0].message.content, 'echo: again');
    const reqs = await mock.requests();
    const faulted = reqs.filter((r) => r.fault);
    assert.equal(faulted.at(-1).status, 429);
    assert.equal(faulted.at(-1).key, 'sk-a');
  });

  it('applies faults in order, `times` each', async () => {
    await mock.fault([{ status: 500, times: 2 }, { status: 503 }]);
    const codes = [];
    for (let i = 0; i < 4; i++) {
      const r = await request(`${mock.baseURL}/chat/completions`, { method: 'POST',
        headers: { authorization: 'Bearer sk-a' }, body: { model: 'm', messages: [] } });
      codes.push(r.status);
    }
    assert.deepEqual(codes, [500, 500, 503, 200]);
    assert.deepEqual(await mock.faults(), []);
  });

  it('answers slowly with delay_ms', async () => {
    await mock.fault({ delay_ms: 300 });
    const t0 = Date.now();
    const r = await request(`${mock.baseURL}/chat/completions`, { method: 'POST',
      headers: { authorization: 'Bearer sk-a' }, body: { model: 'm', messages: [] } });
    assert.equal(r.status, 200);
    assert.ok(Date.now() - t0 >= 280);
  });

  it('drips tokens with chunk_delay_ms', async () => {
    await mock.fault({ chunk_delay_ms: 100 });
    const t0 = Date.now();
    const r = await fetch(`${mock.baseURL}/chat/completions`, { method: 'POST',
      headers: { authorization: 'Bearer sk-a', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: 'one two three four' }] }) });
    const { events } = await readSSE(r, { t0 });
    const content = events.filter((e) => e.data?.choices?.[0]?.delta?.content);
    assert.equal(content.length, 5);
    assert.ok(content.at(-1).at - content[0].at >= 350, `spread ${content.at(-1).at - content[0].at} ms`);
  });

  it('cuts a stream mid-way with cut_after_chunks', async () => {
    await mock.fault({ cut_after_chunks: 2 });
    const r = await fetch(`${mock.baseURL}/chat/completions`, { method: 'POST',
      headers: { authorization: 'Bearer sk-a', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: 'one two three four' }] }) });
    assert.equal(r.status, 200);
    let text = '';
    await assert.rejects((async () => {
      const reader = r.body.getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        text += new TextDecoder().decode(value);
      }
    })());
    assert.equal((text.match(/^data: /gm) || []).length, 2);
    assert.ok(!text.includes('[DONE]'));
  });

  it('drops the connection with drop_connection', async () => {
    await mock.fault({ drop_connection: true });
    await assert.rejects(fetch(`${mock.baseURL}/chat/completions`, { method: 'POST',
      headers: { authorization: 'Bearer sk-a', 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', messages: [] }) }));
  });

  it('answers invalid JSON with OpenAI\'s 400', async () => {
    const r = await request(`${mock.baseURL}/chat/completions`, { method: 'POST',
      headers: { authorization: 'Bearer sk-a', 'content-type': 'application/json' }, body: '{nope' });
    assert.equal(r.status, 400);
    assert.equal(r.json.error.type, 'invalid_request_error');
  });

  it('speaks the Anthropic Messages API', async () => {
    const h = { 'x-api-key': 'sk-a', 'anthropic-version': '2023-06-01', 'content-type': 'application/json' };
    const body = { model: 'claude-sonnet-4-5', max_tokens: 100, messages: [{ role: 'user', content: 'hi there' }] };
    const r = await request(`${mock.url}/v1/messages`, { method: 'POST', headers: h, body });
    assert.equal(r.status, 200);
    assert.equal(r.json.type, 'message');
    assert.deepEqual(r.json.content, [{ type: 'text', text: 'echo: hi there' }]);
    assert.equal(r.json.stop_reason, 'end_turn');
    const s = await fetch(`${mock.url}/v1/messages`, { method: 'POST', headers: h,
      body: JSON.stringify({ ...body, stream: true }) });
    const { events } = await readSSE(s);
    assert.deepEqual(events.map((e) => e.event), ['message_start', 'content_block_start', 'ping',
      'content_block_delta', 'content_block_delta', 'content_block_delta', 'content_block_stop', 'message_delta',
      'message_stop']);
    const bad = await request(`${mock.url}/v1/messages`, { method: 'POST', headers: { ...h, 'x-api-key': 'no' }, body });
    assert.equal(bad.status, 401);
    assert.equal(bad.json.error.type, 'authentication_error');
  });

  it('speaks Gemini generateContent', async () => {
    const body = { contents: [{ role: 'user', parts: [{ text: 'hola amigo' }] }] };
    const h = { 'x-goog-api-key': 'sk-a', 'content-type': 'application/json' };
    const r = await request(`${mock.url}/v1beta/models/gemini-2.5-flash:generateContent`, { method: 'POST',
      headers: h, body });
    assert.equal(r.status, 200);
    assert.equal(r.json.candidates[0].content.parts[0].text, 'echo: hola amigo');
    assert.equal(r.json.candidates[0].finishReason, 'STOP');
    assert.equal(r.json.usageMetadata.candidatesTokenCount, 3);
    const s = await fetch(`${mock.url}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse`, {
      method: 'POST', headers: h, body: JSON.stringify(body) });
    const { events } = await readSSE(s);
    assert.equal(events.map((e) => e.data.candidates[0].content.parts[0].text).join(''), 'echo: hola amigo');
    assert.equal(events.at(-1).data.candidates[0].finishReason, 'STOP');
  });

  it('speaks the Responses API (the SDK parses it)', async () => {
    const resp = await sdk.responses.create({ model: 'gpt-4o-mini', input: 'good morning' });
    assert.equal(resp.output_text, 'echo: good morning');
    const stream = await sdk.responses.create({ model: 'gpt-4o-mini', input: 'good morning', stream: true });
    const types = [];
    let text = '';
    for await (const ev of stream) {
      types.push(ev.type);
      if (ev.type === 'response.output_text.delta') text += ev.delta;
    }
    assert.equal(text, 'echo: good morning');
    assert.equal(types[0], 'response.created');
    assert.equal(types.at(-1), 'response.completed');
  });

  it('keeps up: 200 requests over kept-alive connections quickly', async () => {
    await mock.config({ keys: null });
    await sleep(0);
    const t0 = Date.now();
    await Promise.all(Array.from({ length: 8 }, async () => {
      for (let i = 0; i < 25; i++) {
        const r = await request(`${mock.baseURL}/chat/completions`, { method: 'POST',
          body: { model: 'm', messages: [{ role: 'user', content: 'x' }] } });
        assert.equal(r.status, 200);
      }
    }));
    assert.ok(Date.now() - t0 < 10000);
    await mock.config({ keys: ['sk-a', 'sk-b'] });
  });
});
