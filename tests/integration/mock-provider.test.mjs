// Self-test of the mock provider: it must be faithful enough that the official OpenAI SDK
// talks to it unchanged, and its fault injection must do what the gateway tests rely on.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import { GoogleGenAI } from '@google/genai';
import OpenAI from 'openai';
import {
  checkAnthropicStream, checkChatStream, checkGeminiStream, checkResponsesStream, normalizeUsage, parseSSE, readSSE,
  request, sleep, startMock,
} from './lib/index.mjs';

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

  // ---- scripted tool calls and reasoning ------------------------------------------------

  const ARGS = { city: 'Paris', days: [1, 2] };
  const ASK = `call tool get_weather ${JSON.stringify(ARGS)} [think]`;
  const H = {
    openai: { authorization: 'Bearer sk-a', 'content-type': 'application/json' },
    anthropic: { 'x-api-key': 'sk-a', 'anthropic-version': '2023-06-01', 'content-type': 'application/json' },
    gemini: { 'x-goog-api-key': 'sk-a', 'content-type': 'application/json' },
  };
  const post = (p, headers, body) => request(`${mock.url}${p}`, { method: 'POST', headers, body });
  const postSSE = async (p, headers, body) => parseSSE(await (await fetch(`${mock.url}${p}`, { method: 'POST', headers,
    body: JSON.stringify(body) })).text());

  it('scripts a tool call with reasoning in every format, and the SDKs accept it', async () => {
    await mock.config({ answer: { cached_tokens: 2 } });
    try {
      // OpenAI Chat: reasoning_content and tool_calls.
      const chat = { model: 'm', messages: [{ role: 'user', content: ASK }] };
      const c = await sdk.chat.completions.create(chat);
      const m = c.choices[0].message;
      assert.equal(c.choices[0].finish_reason, 'tool_calls');
      assert.equal(m.content, null);
      assert.match(m.reasoning_content, /^Thinking about: call tool/);
      assert.equal(m.tool_calls[0].function.name, 'get_weather');
      assert.deepEqual(JSON.parse(m.tool_calls[0].function.arguments), ARGS);
      assert.deepEqual(normalizeUsage('openai', c.usage).cached, 2);
      const cs = checkChatStream(await postSSE('/v1/chat/completions', H.openai,
        { ...chat, stream: true, stream_options: { include_usage: true } }));
      assert.equal(cs.finish_reason, 'tool_calls');
      assert.equal(cs.reasoning_content, m.reasoning_content);
      assert.deepEqual(JSON.parse(cs.tool_calls[0].function.arguments), ARGS);
      assert.equal(cs.tool_calls[0].id, m.tool_calls[0].id, 'ids are deterministic');

      // Responses: a reasoning item (summary and encrypted_content only when asked) and a call.
      const rq = { model: 'm', input: ASK, reasoning: { summary: 'auto' }, include: ['reasoning.encrypted_content'] };
      const r = await sdk.responses.create(rq);
      assert.deepEqual(r.output.map((o) => o.type), ['reasoning', 'function_call']);
      assert.match(r.output[0].encrypted_content, /^gAAAAAB/);
      assert.equal(r.output[0].summary[0].text, m.reasoning_content);
      assert.deepEqual(JSON.parse(r.output[1].arguments), ARGS);
      const bare = await sdk.responses.create({ model: 'm', input: ASK });
      assert.deepEqual(bare.output[0].summary, []);
      assert.equal(bare.output[0].encrypted_content, undefined);
      const rs = checkResponsesStream(await postSSE('/v1/responses', H.openai, { ...rq, stream: true }));
      assert.deepEqual(rs.items.map((o) => o.type), ['reasoning', 'function_call']);
      const types = [];
      for await (const ev of await sdk.responses.create({ ...rq, stream: true })) types.push(ev.type);
      assert.ok(types.includes('response.reasoning_summary_text.delta') && types.includes('response.function_call_arguments.done'));

      // Anthropic: a signed thinking block (only with thinking on) and tool_use.
      const an = new Anthropic({ baseURL: mock.url, apiKey: 'sk-a', maxRetries: 0 });
      const aq = { model: 'claude', max_tokens: 4096, thinking: { type: 'enabled', budget_tokens: 1024 },
        messages: [{ role: 'user', content: ASK }] };
      const a = await an.messages.create(aq);
      assert.deepEqual(a.content.map((b) => b.type), ['thinking', 'tool_use']);
      assert.ok(a.content[0].signature);
      assert.deepEqual(a.content[1].input, ARGS);
      assert.equal(a.stop_reason, 'tool_use');
      assert.equal(a.usage.cache_read_input_tokens, 2);
      const fin = await an.messages.stream(aq).finalMessage();
      assert.deepEqual(fin.content.map((b) => [b.type, b.signature ?? b.input]),
        a.content.map((b) => [b.type, b.signature ?? b.input]));
      checkAnthropicStream(await postSSE('/v1/messages', H.anthropic, { ...aq, stream: true }));
      const off = await an.messages.create({ ...aq, thinking: undefined });
      assert.deepEqual(off.content.map((b) => b.type), ['tool_use'], 'no thinking unless enabled');

      // Gemini: thought parts (with includeThoughts) and the signature on the call.
      const gm = new GoogleGenAI({ apiKey: 'sk-a', httpOptions: { baseUrl: mock.url } });
      const g = await gm.models.generateContent({ model: 'gemini-2.5-pro', contents: ASK,
        config: { thinkingConfig: { includeThoughts: true } } });
      const parts = g.candidates[0].content.parts;
      assert.equal(parts[0].thought, true);
      assert.deepEqual(parts[1].functionCall, { name: 'get_weather', args: ARGS });
      assert.ok(parts[1].thoughtSignature);
      assert.equal(g.usageMetadata.cachedContentTokenCount, 2);
      assert.ok(g.usageMetadata.thoughtsTokenCount > 0);
      const gs = checkGeminiStream(await postSSE('/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse', H.gemini,
        { contents: [{ role: 'user', parts: [{ text: ASK }] }] }));
      assert.ok(!gs.parts.some((x) => x.thought), 'no thought parts without includeThoughts');
      assert.equal(gs.parts.find((x) => x.functionCall).thoughtSignature, parts[1].thoughtSignature);
    } finally {
      await mock.config({ answer: {} });
    }
  });

  it('refuses tampered reasoning tokens and unpaired tool results, as the providers do', async () => {
    // Anthropic: the signature vouches for the thinking text.
    const aq = { model: 'claude', max_tokens: 4096, thinking: { type: 'enabled', budget_tokens: 1024 },
      messages: [{ role: 'user', content: ASK }] };
    const a = (await post('/v1/messages', H.anthropic, aq)).json;
    const history = (content) => ({ ...aq, messages: [...aq.messages, { role: 'assistant', content },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: a.content[1].id, content: '21C' }] }] });
    const ok = await post('/v1/messages', H.anthropic, history(a.content));
    assert.equal(ok.status, 200, ok.text);
    assert.equal(ok.json.content.find((b) => b.type === 'text').text, 'result: 21C');
    const forged = [{ ...a.content[0], thinking: `${a.content[0].thinking}!` }, a.content[1]];
    const bad = await post('/v1/messages', H.anthropic, history(forged));
    assert.equal(bad.status, 400);
    assert.match(bad.json.error.message, /Invalid `signature` in `thinking` block/);
    const noThinking = await post('/v1/messages', H.anthropic, history([a.content[1]]));
    assert.equal(noThinking.status, 400);
    assert.match(noThinking.json.error.message, /must start with a thinking block/);
    const stray = await post('/v1/messages', H.anthropic, { model: 'c', max_tokens: 10, messages: [
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_x', content: 'r' }] }] });
    assert.equal(stray.status, 400);

    // Gemini: signatures verified; Gemini 3 calls need one (or Google's skip value).
    const gq = { contents: [{ role: 'user', parts: [{ text: ASK }] }] };
    const g = (await post('/v1beta/models/gemini-2.5-pro:generateContent', H.gemini, gq)).json;
    const call = g.candidates[0].content.parts[0];
    const turn = (part) => ({ contents: [...gq.contents, { role: 'model', parts: [part] },
      { role: 'user', parts: [{ functionResponse: { name: 'get_weather', response: { t: 21 } } }] }] });
    const gok = await post('/v1beta/models/gemini-3-pro-preview:generateContent', H.gemini, turn(call));
    assert.equal(gok.status, 200, gok.text);
    assert.equal(gok.json.candidates[0].content.parts[0].text, 'result: {"t":21}');
    const corrupted = await post('/v1beta/models/gemini-2.5-pro:generateContent', H.gemini,
      turn({ ...call, thoughtSignature: `A${call.thoughtSignature.slice(1)}` }));
    assert.equal(corrupted.status, 400);
    assert.deepEqual(corrupted.json, { error: { code: 400, message: 'Corrupted thought signature.',
      status: 'INVALID_ARGUMENT' } });
    const { thoughtSignature, ...unsigned } = call;
    assert.equal((await post('/v1beta/models/gemini-2.5-pro:generateContent', H.gemini, turn(unsigned))).status, 200);
    const missing = await post('/v1beta/models/gemini-3-pro-preview:generateContent', H.gemini, turn(unsigned));
    assert.equal(missing.status, 400);
    assert.match(missing.json.error.message, /missing a thought_signature/);
    const skipped = await post('/v1beta/models/gemini-3-pro-preview:generateContent', H.gemini,
      turn({ ...unsigned, thoughtSignature: 'skip_thought_signature_validator' }));
    assert.equal(skipped.status, 200, skipped.text);

    // Responses: encrypted_content verified; outputs need their call.
    const rq = { model: 'm', input: [{ role: 'user', content: ASK }], store: false,
      include: ['reasoning.encrypted_content'] };
    const r = (await post('/v1/responses', H.openai, rq)).json;
    const next = (items) => ({ ...rq, input: [...rq.input, ...items,
      { type: 'function_call_output', call_id: r.output[1].call_id, output: '21C' }] });
    const rok = await post('/v1/responses', H.openai, next(r.output));
    assert.equal(rok.status, 200, rok.text);
    const tampered = await post('/v1/responses', H.openai,
      next([{ ...r.output[0], encrypted_content: `${r.output[0].encrypted_content}x` }, r.output[1]]));
    assert.equal(tampered.status, 400);
    assert.equal(tampered.json.error.code, 'invalid_encrypted_content');
    const orphan = await post('/v1/responses', H.openai, next([]));
    assert.equal(orphan.status, 400);
    assert.match(orphan.json.error.message, /No tool call found/);

    // Chat: tool messages answer the calls right before them.
    const lonely = await post('/v1/chat/completions', H.openai, { model: 'm', messages: [
      { role: 'user', content: 'x' }, { role: 'tool', tool_call_id: 'call_1', content: 'r' }] });
    assert.equal(lonely.status, 400);
    assert.match(lonely.json.error.message, /must be a response to a preceeding message with 'tool_calls'/);
    const refused = (await mock.requests()).filter((x) => x.refused);
    assert.ok(refused.length >= 6, 'refusals are recorded');
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
