// Every client API against every provider API, through the gateway, in both modes.
//
// The official SDKs (`openai` for Chat Completions and Responses, `@anthropic-ai/sdk`,
// `@google/genai`) talk to the gateway; the gateway talks to the mock provider, which serves
// all four provider formats, through four nodes (one per format). For each of the 16 ordered
// pairs (client format, provider format), streamed and not, a two-turn tool loop:
//   1. the user asks; the mock answers with reasoning and a tool call;
//   2. the client replays its history as that client does (reasoning, signatures, the call)
//      plus the tool's result; the mock, which checks signatures and call/result pairing as
//      the real providers do, answers with text built from the result.
// Checked on the client side: text, tool call name and arguments, reasoning where both
// formats can hold it, stop reason, usage (cached tokens counted once), the stream's event
// names and order; on the provider side: the request is in the provider's format, for the
// upstream model, with the provider's own auth, and opaque reasoning tokens (Anthropic
// signatures, Gemini thought signatures, Responses encrypted_content) come back byte-exact.
// Then errors in each client's shape, and the smaller endpoints.
//
// OMNI_IT_MODES=allinone,distributed picks the modes (default both).

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import Anthropic from '@anthropic-ai/sdk';
import { ApiError, GoogleGenAI } from '@google/genai';
import OpenAI from 'openai';
import {
  assertClientError, checkAnthropicStream, checkChatStream, checkGeminiStream, checkResponsesStream, FORMATS,
  markFailed, missingBinaries, normalizeUsage, parseSSE, providerErrorBody, request, sleep, startGateway, startMock, startPostgres,
  startRedis,
} from './lib/index.mjs';

const MODES = (process.env.OMNI_IT_MODES || 'allinone,distributed').split(',').map((s) => s.trim()).filter(Boolean);
const CLIENT_KEY = 'sk-client-formats-0001';
const CACHED = 4; // the mock reports this many cached input tokens on every answer

// One node per provider format, all on the mock; `e-*` twins for the error tests (their
// connections cool down without touching the main ones).
const PROVIDERS = {
  openai: { node: 'p-openai', model: 'deepseek-reasoner', key: 'sk-up-openai' },
  responses: { node: 'p-responses', model: 'gpt-5-mini', key: 'sk-up-responses' },
  anthropic: { node: 'p-anthropic', model: 'claude-sonnet-4-5', key: 'sk-up-anthropic' },
  gemini: { node: 'p-gemini', model: 'gemini-2.5-pro', key: 'sk-up-gemini' },
};
const GEMINI_3 = 'gemini-3-pro-preview'; // validates the thought signatures of function calls
const errNode = (p) => ({ node: `e-${p}`, model: PROVIDERS[p].model, key: `sk-err-${p}` });
const MOCK_KEYS = FORMATS.flatMap((p) => [PROVIDERS[p].key, errNode(p).key]);

function gatewayConfig(mockUrl) {
  const node = (format, { node: id, model }) => ({ id, name: `${format} on the mock`, format,
    base_url: format === 'gemini' ? `${mockUrl}/v1beta` : `${mockUrl}/v1`,
    models: format === 'gemini' ? [model, GEMINI_3] : [model] });
  return {
    server: { host: '127.0.0.1', require_api_key: true, threads: 2, upstream_connect_timeout_ms: 2000,
      upstream_timeout_ms: 20000 },
    nodes: FORMATS.flatMap((f) => [node(f, PROVIDERS[f]), node(f, errNode(f))]),
    connections: FORMATS.flatMap((f) => [
      { provider: PROVIDERS[f].node, name: 'main', api_key: PROVIDERS[f].key },
      { provider: errNode(f).node, name: 'main', api_key: errNode(f).key },
    ]),
    api_keys: [{ name: 'formats', key: CLIENT_KEY }],
    // Short cooldowns: the error tests' 429s must not hold the next test up.
    resilience: { cooldown: { base_ms: 1, max_ms: 50 } },
  };
}

// ---- the conversation ------------------------------------------------------------------------

const SYSTEM = 'You are a weather bot. Use the tools.';
const TOOL = {
  name: 'get_weather',
  description: 'Current weather in a city',
  schema: {
    type: 'object',
    properties: {
      city: { type: 'string' },
      unit: { type: 'string', enum: ['C', 'F'] },
      days: { type: 'array', items: { type: 'integer' } },
    },
    required: ['city'],
  },
};
const ARGS = { city: 'Paris', unit: 'C', days: [1, 2], note: 'caf\u00e9 "quoted" \u2603' };
const PROMPT = `What is the weather in Paris? call tool get_weather ${JSON.stringify(ARGS)} [think]`;
const RESULT = { temperature: 21, unit: 'C', sky: 'clear' };
const RESULT_TEXT = JSON.stringify(RESULT);

// Whether a client of format C sees the reasoning of a provider of format P. Unsigned
// reasoning (Chat reasoning_content, Gemini thought summaries) never reaches an Anthropic
// client: Anthropic refuses unsigned thinking when Claude Code replays it.
const reasoningVisible = (c, p) => !(c === 'anthropic' && (p === 'openai' || p === 'gemini'));

const CHAT_STOP = { stop: 'stop', tool_calls: 'tool_calls', length: 'length', content_filter: 'content_filter' };
const ANTHROPIC_STOP = { end_turn: 'stop', tool_use: 'tool_calls', max_tokens: 'length', stop_sequence: 'stop',
  refusal: 'content_filter' };

// Records every response body an SDK reads (the SDK reads its own copy), so that streams
// can be checked event by event on the wire.
function recorder() {
  const bodies = [];
  const rec = {
    bodies,
    fetch: async (url, init) => {
      const r = await fetch(url, init);
      const entry = { url: String(url), status: r.status, text: null };
      bodies.push(entry);
      if (!r.body) {
        entry.text = '';
        return r;
      }
      const [a, b] = r.body.tee();
      entry.done = new Response(b).text().then((t) => { entry.text = t; });
      return new Response(a, { status: r.status, statusText: r.statusText, headers: r.headers });
    },
    async last() {
      const e = bodies.at(-1);
      assert.ok(e, 'no response recorded');
      await e.done;
      return e;
    },
  };
  return rec;
}

const parseArgs = (s) => (s === '' || s == null ? {} : JSON.parse(s));

// One adapter per client format: how that client builds its request, reads the answer
// (through its SDK), and replays history. send() returns
// {text, reasoning, toolCalls: [{id, name, args}], stop, usage (normalized), raw, reply}.
function makeClients(gw) {
  const rec = recorder();
  const oa = new OpenAI({ baseURL: gw.baseURL, apiKey: CLIENT_KEY, maxRetries: 0, timeout: 20000, fetch: rec.fetch });
  const an = new Anthropic({ baseURL: gw.url, apiKey: CLIENT_KEY, maxRetries: 0, timeout: 20000, fetch: rec.fetch });
  const gm = new GoogleGenAI({ apiKey: CLIENT_KEY,
    httpOptions: { baseUrl: gw.url, timeout: 20000, fetch: rec.fetch, retryOptions: { attempts: 1 } } });

  const chat = {
    format: 'openai',
    begin: (prompt) => [{ role: 'system', content: SYSTEM }, { role: 'user', content: prompt }],
    async send(model, conv, { stream, reasoning = true, tools = true, maxTokens } = {}) {
      const body = { model, messages: conv };
      if (tools) {
        body.tools = [{ type: 'function', function: { name: TOOL.name, description: TOOL.description,
          parameters: TOOL.schema } }];
      }
      if (reasoning) body.reasoning_effort = 'low';
      if (maxTokens) body.max_tokens = maxTokens;
      let m;
      let finish;
      let usage;
      let raw;
      if (!stream) {
        const r = await oa.chat.completions.create(body);
        raw = (await rec.last()).text;
        assert.equal(r.object, 'chat.completion');
        assert.equal(r.choices.length, 1);
        m = r.choices[0].message;
        assert.equal(m.role, 'assistant');
        finish = r.choices[0].finish_reason;
        usage = r.usage;
      } else {
        const s = await oa.chat.completions.create({ ...body, stream: true, stream_options: { include_usage: true } });
        let n = 0;
        for await (const chunk of s) if (chunk.object === 'chat.completion.chunk') n++;
        raw = (await rec.last()).text;
        m = checkChatStream(parseSSE(raw));
        assert.equal(n, m.chunks, 'the SDK saw every chunk');
        finish = m.finish_reason;
        usage = m.usage;
      }
      const calls = m.tool_calls || [];
      return {
        text: m.content ?? '', reasoning: m.reasoning_content ?? '',
        toolCalls: calls.map((c) => ({ id: c.id, name: c.function.name, args: parseArgs(c.function.arguments) })),
        stop: CHAT_STOP[finish] ?? finish, usage: normalizeUsage('openai', usage), raw,
        reply: {
          role: 'assistant', content: m.content || null,
          ...(m.reasoning_content ? { reasoning_content: m.reasoning_content } : {}),
          ...(m.thinking_blocks?.length ? { thinking_blocks: m.thinking_blocks } : {}),
          ...(calls.length ? { tool_calls: calls } : {}),
        },
      };
    },
    replay: (conv, r, { forget = false } = {}) => {
      if (!forget) return conv.push(r.reply);
      const { reasoning_content: rc, thinking_blocks: tb, ...rest } = r.reply;
      if (rest.tool_calls) rest.tool_calls = rest.tool_calls.map(({ extra_content: ec, ...call }) => call);
      return conv.push(rest);
    },
    answerTools: (conv, r, output) => {
      for (const c of r.toolCalls) conv.push({ role: 'tool', tool_call_id: c.id, content: JSON.stringify(output(c.name)) });
    },
  };

  const responses = {
    format: 'responses',
    begin: (prompt) => [{ role: 'user', content: prompt }],
    async send(model, conv, { stream, reasoning = true, tools = true, maxTokens } = {}) {
      const body = { model, instructions: SYSTEM, input: conv, store: false };
      if (tools) {
        body.tools = [{ type: 'function', name: TOOL.name, description: TOOL.description, parameters: TOOL.schema,
          strict: false }];
      }
      if (reasoning) {
        body.reasoning = { effort: 'low', summary: 'auto' };
        body.include = ['reasoning.encrypted_content'];
      }
      if (maxTokens) body.max_output_tokens = maxTokens;
      let resp;
      let items;
      let raw;
      if (!stream) {
        resp = await responsesCreate(body);
        raw = (await rec.last()).text;
        items = resp.output;
      } else {
        const s = await responsesCreate({ ...body, stream: true });
        const seen = [];
        for await (const ev of s) seen.push(ev.type);
        raw = (await rec.last()).text;
        const checked = checkResponsesStream(parseSSE(raw));
        assert.deepEqual(seen, checked.types, 'the SDK saw every event');
        resp = checked.response;
        items = checked.items;
      }
      assert.equal(resp.object, 'response');
      const calls = items.filter((i) => i.type === 'function_call');
      const text = items.filter((i) => i.type === 'message')
        .flatMap((i) => i.content.filter((c) => c.type === 'output_text').map((c) => c.text)).join('');
      const reasoningText = items.filter((i) => i.type === 'reasoning')
        .flatMap((i) => (i.summary || []).map((s) => s.text)).join('');
      const stop = resp.status === 'incomplete'
        ? (resp.incomplete_details?.reason === 'max_output_tokens' ? 'length' : resp.incomplete_details?.reason)
        : calls.length ? 'tool_calls' : resp.status === 'completed' ? 'stop' : resp.status;
      return {
        text, textBlocks: items.filter((i) => i.type === 'message').length,
        reasoning: reasoningText, toolCalls: calls.map((c) => ({ id: c.call_id, name: c.name,
          args: parseArgs(c.arguments) })),
        stop, usage: normalizeUsage('responses', resp.usage), raw, reply: items,
      };
    },
    replay: (conv, r, { forget = false } = {}) => conv.push(...r.reply.filter((i) => !forget || i.type !== 'reasoning')),
    answerTools: (conv, r, output) => {
      for (const c of r.toolCalls) {
        conv.push({ type: 'function_call_output', call_id: c.id, output: JSON.stringify(output(c.name)) });
      }
    },
  };
  // The SDK's create() with `stream: true` returns the event stream.
  const responsesCreate = (body) => oa.responses.create(body);

  const anthropic = {
    format: 'anthropic',
    begin: (prompt) => [{ role: 'user', content: prompt }],
    async send(model, conv, { stream, reasoning = true, tools = true, maxTokens } = {}) {
      const body = { model, max_tokens: maxTokens ?? 4096, system: SYSTEM, messages: conv };
      if (tools) body.tools = [{ name: TOOL.name, description: TOOL.description, input_schema: TOOL.schema }];
      if (reasoning) body.thinking = { type: 'enabled', budget_tokens: 1024 };
      let m;
      let raw;
      if (!stream) {
        m = await an.messages.create(body);
        raw = (await rec.last()).text;
      } else {
        const s = an.messages.stream(body);
        m = await s.finalMessage();
        raw = (await rec.last()).text;
        const checked = checkAnthropicStream(parseSSE(raw));
        const strip = (blocks) => blocks.map((b) => {
          const { citations, ...rest } = b;
          return rest;
        });
        assert.deepEqual(strip(m.content), strip(checked.content), 'the SDK built the streamed blocks');
        assert.equal(m.stop_reason, checked.stop_reason);
      }
      assert.equal(m.type, 'message');
      assert.equal(m.role, 'assistant');
      const blocks = m.content;
      return {
        text: blocks.filter((b) => b.type === 'text').map((b) => b.text).join(''),
        textBlocks: blocks.filter((b) => b.type === 'text').length,
        reasoning: blocks.filter((b) => b.type === 'thinking').map((b) => b.thinking).join(''),
        toolCalls: blocks.filter((b) => b.type === 'tool_use').map((b) => ({ id: b.id, name: b.name, args: b.input })),
        stop: ANTHROPIC_STOP[m.stop_reason] ?? m.stop_reason, usage: normalizeUsage('anthropic', m.usage), raw,
        reply: { role: 'assistant', content: blocks.map((b) => {
          const { citations, ...rest } = b;
          return citations == null ? rest : b;
        }) },
      };
    },
    replay: (conv, r, { forget = false } = {}) => conv.push(!forget ? r.reply : { ...r.reply,
      content: r.reply.content.filter((b) => b.type !== 'thinking' && b.type !== 'redacted_thinking') }),
    answerTools: (conv, r, output) => conv.push({ role: 'user', content: r.toolCalls.map((c) => ({
      type: 'tool_result', tool_use_id: c.id, content: JSON.stringify(output(c.name)) })) }),
  };

  const gemini = {
    format: 'gemini',
    begin: (prompt) => [{ role: 'user', parts: [{ text: prompt }] }],
    async send(model, conv, { stream, reasoning = true, tools = true, maxTokens } = {}) {
      const config = { systemInstruction: SYSTEM };
      if (tools) {
        config.tools = [{ functionDeclarations: [{ name: TOOL.name, description: TOOL.description,
          parametersJsonSchema: TOOL.schema }] }];
      }
      if (reasoning) config.thinkingConfig = { includeThoughts: true, thinkingBudget: 1024 };
      if (maxTokens) config.maxOutputTokens = maxTokens;
      let parts;
      let finishReason;
      let usage;
      let raw;
      if (!stream) {
        const r = await gm.models.generateContent({ model, contents: conv, config });
        raw = (await rec.last()).text;
        const j = JSON.parse(raw);
        assert.equal(j.candidates?.length, 1, raw);
        assert.equal(j.candidates[0].content.role, 'model');
        parts = j.candidates[0].content.parts || [];
        finishReason = j.candidates[0].finishReason;
        usage = j.usageMetadata;
        assert.deepEqual(r.candidates[0].content.parts.map((p) => Object.keys(p).sort()),
          parts.map((p) => Object.keys(p).sort()), 'the SDK read every part');
      } else {
        const s = await gm.models.generateContentStream({ model, contents: conv, config });
        let n = 0;
        for await (const chunk of s) if (chunk) n++;
        raw = (await rec.last()).text;
        const events = parseSSE(raw);
        ({ parts, finishReason, usageMetadata: usage } = checkGeminiStream(events));
        assert.equal(n, events.length, 'the SDK saw every chunk');
      }
      const calls = parts.filter((p) => p.functionCall);
      return {
        text: parts.filter((p) => typeof p.text === 'string' && !p.thought).map((p) => p.text).join(''),
        reasoning: parts.filter((p) => p.thought).map((p) => p.text ?? '').join(''),
        toolCalls: calls.map((p) => ({ id: p.functionCall.id ?? null, name: p.functionCall.name,
          args: p.functionCall.args ?? {} })),
        stop: finishReason === 'MAX_TOKENS' ? 'length' : finishReason === 'STOP' ? (calls.length ? 'tool_calls' : 'stop')
          : finishReason,
        usage: normalizeUsage('gemini', usage), raw,
        reply: { role: 'model', parts },
      };
    },
    replay: (conv, r, { forget = false } = {}) => conv.push(!forget ? r.reply : { ...r.reply,
      parts: r.reply.parts.filter((p) => !p.thought).map(({ thoughtSignature: ts, ...p }) => p) }),
    answerTools: (conv, r, output) => conv.push({ role: 'user', parts: r.toolCalls.map((c) => ({
      functionResponse: { ...(c.id ? { id: c.id } : {}), name: c.name, response: output(c.name) } })) }),
  };

  return { clients: { openai: chat, responses, anthropic, gemini }, sdk: { openai: oa, anthropic: an, gemini: gm },
    rec };
}

// ---- what the provider must have received ------------------------------------------------------

function checkUpstream(p, up, { stream, model, key, tools = true, reasoning = true }) {
  const ctx = `${p} provider request: ${JSON.stringify({ path: up.path, query: up.query, headers: up.headers,
    body: up.body }).slice(0, 3000)}`;
  const h = up.headers;
  if (p === 'gemini') {
    assert.equal(up.path, `/v1beta/models/${model}:${stream ? 'streamGenerateContent' : 'generateContent'}`, ctx);
    if (stream) assert.equal(up.query.alt, 'sse', ctx);
    assert.equal(h['x-goog-api-key'], key, `Gemini auth is x-goog-api-key (${ctx})`);
    assert.equal(h.authorization, undefined, ctx);
    assert.ok(Array.isArray(up.body.contents), ctx);
    assert.equal(up.body.model, undefined, `the model is in the path (${ctx})`);
    assert.equal(up.body.systemInstruction?.parts?.map((x) => x.text).join(''), SYSTEM, ctx);
    if (tools) assert.equal(up.body.tools?.[0]?.functionDeclarations?.[0]?.name, TOOL.name, ctx);
    if (reasoning) assert.equal(up.body.generationConfig?.thinkingConfig?.includeThoughts, true, ctx);
    return;
  }
  assert.equal(up.body.model, model, `upstream model name (${ctx})`);
  assert.equal(!!up.body.stream, stream, `stream flag (${ctx})`);
  if (p === 'anthropic') {
    assert.equal(up.path, '/v1/messages', ctx);
    assert.equal(h['x-api-key'], key, `Anthropic auth is x-api-key (${ctx})`);
    assert.ok(h['anthropic-version'], `anthropic-version header (${ctx})`);
    assert.equal(h.authorization, undefined, ctx);
    const system = typeof up.body.system === 'string' ? up.body.system : (up.body.system || []).map((b) => b.text).join('');
    assert.equal(system, SYSTEM, ctx);
    assert.ok(Number.isInteger(up.body.max_tokens), ctx);
    if (tools) assert.equal(up.body.tools?.[0]?.name, TOOL.name, ctx);
    if (tools) assert.deepEqual(up.body.tools[0].input_schema, TOOL.schema, ctx);
    if (reasoning) assert.equal(up.body.thinking?.type, 'enabled', ctx);
    return;
  }
  assert.equal(h.authorization, `Bearer ${key}`, `OpenAI auth is Bearer (${ctx})`);
  if (p === 'responses') {
    assert.equal(up.path, '/v1/responses', ctx);
    assert.equal(up.body.instructions, SYSTEM, ctx);
    assert.equal(up.body.store, false, ctx);
    if (tools) assert.deepEqual([up.body.tools?.[0]?.type, up.body.tools?.[0]?.name], ['function', TOOL.name], ctx);
    if (reasoning) {
      assert.ok(up.body.reasoning?.summary, ctx);
      assert.ok(up.body.include?.includes('reasoning.encrypted_content'), ctx);
    }
    return;
  }
  assert.equal(up.path, '/v1/chat/completions', ctx);
  assert.deepEqual(up.body.messages[0], { role: 'system', content: SYSTEM }, ctx);
  if (stream) assert.equal(up.body.stream_options?.include_usage, true, ctx);
  if (tools) assert.equal(up.body.tools?.[0]?.function?.name, TOOL.name, ctx);
  if (reasoning) assert.ok(up.body.reasoning_effort, ctx);
}

// The opaque reasoning token a provider issued with its answer (null when none).
function issuedToken(p, answer) {
  if (p === 'anthropic') return answer.signature ?? null;
  if (p === 'gemini') return answer.thought_signature ?? null;
  if (p === 'responses') return answer.encrypted_content ?? null;
  return null;
}

// The turn-2 provider request carries turn 1's reasoning token and tool calls as issued,
// and each call's result.
function checkReplayed(p, c, up, a1, calls) {
  const ctx = `turn-2 ${p} provider request: ${JSON.stringify(up.body).slice(0, 3000)}`;
  const want = calls.map((x) => [x.name, x.args]);
  const results = calls.map((x) => [x.name, JSON.stringify(x.result)]);
  const issuedIds = a1.tool_calls.map((x) => x.id);
  if (p === 'anthropic') {
    const asst = up.body.messages.filter((m) => m.role === 'assistant');
    assert.equal(asst.length, 1, ctx);
    const blocks = asst[0].content;
    assert.equal(blocks[0]?.type, 'thinking', `the assistant turn starts with its thinking block (${ctx})`);
    assert.equal(blocks[0].thinking, a1.reasoning, `thinking text byte-exact (${ctx})`);
    assert.equal(blocks[0].signature, a1.signature, `signature byte-exact (${ctx})`);
    const uses = blocks.filter((b) => b.type === 'tool_use');
    assert.deepEqual(uses.map((b) => [b.name, b.input]), want, ctx);
    if (c !== 'gemini') assert.deepEqual(uses.map((b) => b.id), issuedIds, ctx);
    const res = up.body.messages.at(-1).content.filter((b) => b.type === 'tool_result');
    const text = (b) => (typeof b.content === 'string' ? b.content : b.content.map((x) => x.text).join(''));
    assert.deepEqual(res.map((b) => [uses.find((u) => u.id === b.tool_use_id)?.name, text(b)]), results, ctx);
  } else if (p === 'gemini') {
    const parts = up.body.contents.filter((x) => x.role === 'model').flatMap((x) => x.parts);
    const fc = parts.filter((x) => x.functionCall);
    assert.deepEqual(fc.map((x) => [x.functionCall.name, x.functionCall.args]), want, ctx);
    assert.equal(fc[0].thoughtSignature, a1.thought_signature, `thoughtSignature byte-exact on the call (${ctx})`);
    const fr = up.body.contents.at(-1).parts.filter((x) => x.functionResponse);
    assert.deepEqual(fr.map((x) => [x.functionResponse.name, JSON.stringify(x.functionResponse.response)]), results, ctx);
  } else if (p === 'responses') {
    const rs = up.body.input.filter((i) => i.type === 'reasoning');
    assert.deepEqual(rs.map((i) => i.encrypted_content), [a1.encrypted_content], `encrypted_content byte-exact (${ctx})`);
    const fc = up.body.input.filter((i) => i.type === 'function_call');
    assert.deepEqual(fc.map((i) => [i.name, JSON.parse(i.arguments)]), want, ctx);
    if (c !== 'gemini') assert.deepEqual(fc.map((i) => i.call_id), issuedIds, ctx);
    const out = up.body.input.filter((i) => i.type === 'function_call_output');
    assert.deepEqual(out.map((i) => [fc.find((f) => f.call_id === i.call_id)?.name, i.output]), results, ctx);
  } else {
    const asst = up.body.messages.filter((m) => m.role === 'assistant');
    assert.equal(asst.length, 1, ctx);
    const tcs = asst[0].tool_calls || [];
    assert.deepEqual(tcs.map((x) => [x.function.name, JSON.parse(x.function.arguments)]), want, ctx);
    if (c !== 'gemini') assert.deepEqual(tcs.map((x) => x.id), issuedIds, ctx);
    const tool = up.body.messages.filter((m) => m.role === 'tool');
    assert.deepEqual(tool.map((m) => [tcs.find((t) => t.id === m.tool_call_id)?.function.name, m.content]), results, ctx);
  }
}

// A later request still carries every token issued in the turns before, byte-exact.
function checkLaterTurn(p, up, answers) {
  const ctx = `turn-3 ${p} provider request: ${JSON.stringify(up.body).slice(0, 4000)}`;
  if (p === 'anthropic') {
    const thinking = up.body.messages.filter((m) => m.role === 'assistant')
      .flatMap((m) => m.content.filter((b) => b.type === 'thinking'));
    assert.deepEqual(thinking.map((b) => [b.thinking, b.signature]), answers.map((a) => [a.reasoning, a.signature]),
      ctx);
  } else if (p === 'gemini') {
    const signed = up.body.contents.filter((x) => x.role === 'model').flatMap((x) => x.parts)
      .filter((x) => x.thoughtSignature);
    assert.deepEqual(signed.map((x) => x.thoughtSignature), answers.map((a) => a.thought_signature), ctx);
    if (answers.length > 1) {
      assert.ok(signed[1] && !signed[1].functionCall && !signed[1].thought && typeof signed[1].text === 'string',
        `the turn-2 signature is on its text part (${ctx})`);
    }
  } else if (p === 'responses') {
    const rs = up.body.input.filter((i) => i.type === 'reasoning');
    assert.deepEqual(rs.map((i) => i.encrypted_content), answers.map((a) => a.encrypted_content), ctx);
  }
}

function checkUsage(c, p, got, a, what) {
  const ctx = `${what}: client usage ${JSON.stringify(got)}, provider's ${JSON.stringify(a)}`;
  assert.equal(got.input, a.input, `input tokens, cached included once (${ctx})`);
  assert.equal(got.cached, a.cached, `cached tokens (${ctx})`);
  assert.equal(got.output, a.output, `output tokens (${ctx})`);
  // Anthropic does not report reasoning tokens apart; elsewhere they must pass through.
  if (p !== 'anthropic' && got.reasoning !== undefined) assert.equal(got.reasoning, a.reasoning, `reasoning (${ctx})`);
}

// ---- the tests -----------------------------------------------------------------------------

for (const mode of MODES) {
  const missing = missingBinaries(mode);
  const skip = missing.length && process.env.OMNI_IT_SKIP_MISSING === '1'
    ? `binaries not built: ${missing.join('; ')}` : false;

  describe(`formats (${mode})`, { timeout: 600000, skip }, () => {
    let mock;
    let redis;
    let pg;
    let gw;
    let c;

    const test = (name, fn, opts = {}) => it(name, { timeout: 30000, ...opts }, async (t) => {
      try {
        await fn(t);
      } catch (e) {
        markFailed();
        // A new error: an AssertionError's printed text does not follow changes to its message.
        const err = new Error(`${e.message}\n===== process logs (${mode}) =====\n${gw ? gw.logs(30) : ''}` +
          `${mock ? mock.proc.tail(10) : ''}`);
        err.cause = e;
        throw err;
      }
    });

    // The one provider request a client request made (the mock's record of it).
    const upstreamOf = async (since, what) => {
      const reqs = await mock.requests({ since });
      assert.equal(reqs.length, 1, `${what}: the mock saw ${reqs.length} requests: ` +
        `${JSON.stringify(reqs.map((r) => [r.path, r.status, r.refused]))}`);
      return reqs[0];
    };

    // Runs a client call; when it fails, adds what the mock refused (if it did).
    const send = async (client, since, ...args) => {
      try {
        return await client.send(...args);
      } catch (e) {
        const reqs = await mock.requests({ since }).catch(() => []);
        const err = new Error(`${e.message}\nprovider requests: ${JSON.stringify(reqs.map((r) => ({ path: r.path,
          status: r.status, refused: r.refused, body: r.body })), null, 1).slice(0, 6000)}`);
        err.cause = e;
        throw err;
      }
    };

    before(async () => {
      mock = await startMock({ keys: MOCK_KEYS });
      await mock.config({ answer: { cached_tokens: CACHED } });
      if (mode === 'distributed') [redis, pg] = await Promise.all([startRedis(), startPostgres()]);
      try {
        gw = await startGateway({ mode, config: gatewayConfig(mock.url), redis, postgres: pg });
      } catch (e) {
        markFailed();
        throw e;
      }
      c = makeClients(gw);
    });

    after(async () => {
      await gw?.stop();
      await Promise.all([mock?.stop(), redis?.stop(), pg?.stop()]);
    });

    // Turn 1: the user asks, the provider reasons and calls tools. Turn 2: the client replays
    // its history with the tools' results; the provider answers from them.
    const toolLoop = async ({ cf, pf, stream, prompt, calls, text = '' }) => {
      const client = c.clients[cf];
      const prov = PROVIDERS[pf];
      const model = `${prov.node}/${prov.model}`;
      const conv = client.begin(prompt);
      const visible = reasoningVisible(cf, pf);

      let since = await mock.mark();
      const r1 = await send(client, since, model, conv, { stream });
      const up1 = await upstreamOf(since, 'turn 1');
      checkUpstream(pf, up1, { stream, model: prov.model, key: prov.key });
      assert.equal(up1.status, 200);
      const a1 = up1.answer;
      assert.ok(a1.reasoning, 'the mock reasoned');
      assert.equal(r1.stop, 'tool_calls', 'stop reason');
      assert.equal(r1.text, text, 'text with the tool calls');
      assert.deepEqual(r1.toolCalls.map((x) => [x.name, x.args]), calls.map((x) => [x.name, x.args]), 'the tool calls');
      if (cf !== 'gemini') assert.ok(r1.toolCalls.every((x) => x.id), 'every call has an id');
      if (r1.toolCalls.every((x) => x.id)) {
        assert.equal(new Set(r1.toolCalls.map((x) => x.id)).size, calls.length, 'call ids are distinct');
      }
      if (cf !== 'gemini' && pf !== 'gemini') {
        assert.deepEqual(r1.toolCalls.map((x) => x.id), a1.tool_calls.map((x) => x.id), 'the provider\'s call ids');
      }
      assert.equal(r1.reasoning, visible ? a1.reasoning : '', 'reasoning text');
      checkUsage(cf, pf, r1.usage, a1.usage, 'turn 1');
      const token = issuedToken(pf, a1);
      if (pf !== 'openai') assert.ok(token, 'the provider issued a reasoning token');
      if (token) assert.ok(r1.raw.includes(token), `the client got the ${pf} token ${token} in its answer`);

      client.replay(conv, r1);
      client.answerTools(conv, r1, (name) => calls.find((x) => x.name === name).result);
      since = await mock.mark();
      const r2 = await send(client, since, model, conv, { stream });
      const up2 = await upstreamOf(since, 'turn 2');
      checkUpstream(pf, up2, { stream, model: prov.model, key: prov.key });
      assert.equal(up2.status, 200);
      checkReplayed(pf, cf, up2, a1, calls);
      const a2 = up2.answer;
      assert.equal(r2.text, `result: ${calls.map((x) => JSON.stringify(x.result)).join(' | ')}`,
        'the answer built from the tool results');
      // One answer is one text block / message item (Claude Code prints only the last one).
      if (r2.textBlocks !== undefined) assert.equal(r2.textBlocks, 1, 'the text comes in one block');
      assert.equal(r2.stop, 'stop');
      assert.deepEqual(r2.toolCalls, []);
      assert.equal(r2.reasoning, visible ? a2.reasoning : '', 'turn-2 reasoning text');
      checkUsage(cf, pf, r2.usage, a2.usage, 'turn 2');
      const token2 = issuedToken(pf, a2);
      if (token2 && !(cf === 'anthropic' && stream && pf === 'gemini')) {
        assert.ok(r2.raw.includes(token2), `the client got the turn-2 ${pf} token ${token2}`);
      }

      // Turn 3: a new question after the whole exchange; every earlier token goes back.
      client.replay(conv, r2);
      conv.push(...client.begin('thanks, and tomorrow? [think]').filter((m) => m.role !== 'system'));
      since = await mock.mark();
      const r3 = await send(client, since, model, conv, { stream });
      const up3 = await upstreamOf(since, 'turn 3');
      assert.equal(up3.status, 200);
      // An Anthropic client's stream cannot carry the signature Gemini puts on the last piece
      // of its text (it would follow the answer); Gemini does not need it back.
      checkLaterTurn(pf, up3, cf === 'anthropic' && stream && pf === 'gemini' ? [a1] : [a1, a2]);
      assert.equal(r3.text, 'echo: thanks, and tomorrow? [think]');
      assert.equal(r3.stop, 'stop');
      checkUsage(cf, pf, r3.usage, up3.answer.usage, 'turn 3');
    };

    const WEATHER = { name: TOOL.name, args: ARGS, result: RESULT };
    const TIME = { name: 'get_time', args: { tz: 'Europe/Paris' }, result: { time: '12:00', dst: true } };
    for (const cf of FORMATS) {
      for (const pf of FORMATS) {
        for (const stream of [false, true]) {
          test(`${cf} client → ${pf} provider${stream ? ', streamed' : ''}: reasoning and a tool call, then its result`,
            () => toolLoop({ cf, pf, stream, prompt: PROMPT, calls: [WEATHER] }));
        }
        test(`${cf} client → ${pf} provider, streamed: text and two parallel tool calls, then their results`,
          () => toolLoop({ cf, pf, stream: true, text: 'Checking both.', calls: [WEATHER, TIME],
            prompt: `say "Checking both." call tool get_weather ${JSON.stringify(ARGS)} ` +
              `call tool get_time ${JSON.stringify(TIME.args)} [think]` }));
      }
    }

    // Most clients keep only text and tool calls. The provider must still take the history:
    // Anthropic refuses thinking without the signed block, so thinking goes off for that
    // request; Gemini 3 refuses calls without a signature, so the documented sentinel goes in.
    for (const cf of FORMATS) {
      for (const pf of FORMATS) {
        if (cf === pf) continue;
        test(`${cf} client → ${pf} provider: a client that drops reasoning from its history still gets the answer`,
          async () => {
            const client = c.clients[cf];
            const prov = { ...PROVIDERS[pf], ...(pf === 'gemini' ? { model: GEMINI_3 } : {}) };
            const model = `${prov.node}/${prov.model}`;
            const conv = client.begin(PROMPT);
            let since = await mock.mark();
            const r1 = await send(client, since, model, conv, { stream: false });
            await upstreamOf(since, 'turn 1');
            assert.deepEqual(r1.toolCalls.map((x) => [x.name, x.args]), [[TOOL.name, ARGS]]);
            client.replay(conv, r1, { forget: true });
            client.answerTools(conv, r1, () => RESULT);
            since = await mock.mark();
            const r2 = await send(client, since, model, conv, { stream: false });
            const up2 = await upstreamOf(since, 'turn 2');
            assert.equal(up2.status, 200);
            checkUpstream(pf, up2, { stream: false, model: prov.model, key: prov.key, reasoning: pf !== 'anthropic' });
            assert.equal(r2.text, `result: ${RESULT_TEXT}`);
            if (pf === 'anthropic') assert.notEqual(up2.body.thinking?.type, 'enabled', 'thinking off for this request');
            if (pf === 'gemini') {
              const fc = up2.body.contents.flatMap((x) => x.parts).find((x) => x.functionCall);
              assert.equal(fc.thoughtSignature, 'skip_thought_signature_validator');
            }
          });
      }
    }

    for (const cf of FORMATS) {
      for (const pf of FORMATS) {
        test(`${cf} client → ${pf} provider: max tokens reached stops with length, streamed or not`, async () => {
          const client = c.clients[cf];
          const prov = PROVIDERS[pf];
          for (const stream of [false, true]) {
            const since = await mock.mark();
            const r = await send(client, since, `${prov.node}/${prov.model}`, client.begin('one two three four five'),
              { stream, reasoning: false, tools: false, maxTokens: 3 });
            const up = await upstreamOf(since, 'max tokens');
            checkUpstream(pf, up, { stream, model: prov.model, key: prov.key, tools: false, reasoning: false });
            assert.equal(r.text, 'echo: one two', `stream=${stream}`);
            assert.equal(r.stop, 'length', `stream=${stream}`);
            assert.equal(r.reasoning, '');
            checkUsage(cf, pf, r.usage, up.answer.usage, `stream=${stream}`);
          }
        });
      }
    }
      // ---- errors in each client's own shape ---------------------------------------------------

    // A minimal request of client format `cf` by hand (for status codes and bodies the SDKs hide).
    const raw = (cf, { model = `${PROVIDERS.openai.node}/${PROVIDERS.openai.model}`, key = CLIENT_KEY, stream = false,
      body, path: p } = {}) => {
      const auth = key === null ? {} : cf === 'anthropic' ? { 'x-api-key': key }
        : cf === 'gemini' ? { 'x-goog-api-key': key } : { authorization: `Bearer ${key}` };
      const headers = { 'content-type': 'application/json', ...auth,
        ...(cf === 'anthropic' ? { 'anthropic-version': '2023-06-01' } : {}) };
      const paths = {
        openai: '/v1/chat/completions',
        responses: '/v1/responses',
        anthropic: '/v1/messages',
        gemini: `/v1beta/models/${model}:${stream ? 'streamGenerateContent?alt=sse' : 'generateContent'}`,
      };
      const bodies = {
        openai: { model, stream, messages: [{ role: 'user', content: 'hi' }] },
        responses: { model, stream, input: 'hi' },
        anthropic: { model, stream, max_tokens: 100, messages: [{ role: 'user', content: 'hi' }] },
        gemini: { contents: [{ role: 'user', parts: [{ text: 'hi' }] }] },
      };
      return request(`${gw.url}${p || paths[cf]}`, { method: 'POST', headers, body: body ?? bodies[cf] });
    };

    for (const cf of FORMATS) {
      test(`${cf} client: the gateway's own errors come in its shape`, async () => {
        assertClientError(cf, await raw(cf, { key: null }), 401);
        assertClientError(cf, await raw(cf, { key: 'sk-client-wrong-0000' }), 401);
        assertClientError(cf, await raw(cf, { model: 'nope/unknown-model' }), 404);
        assertClientError(cf, await raw(cf, { body: '{"model": "x", "messages": [' }), 400);
        // ... and the SDK raises its own error type for them.
        const bad = { baseURL: gw.url, apiKey: 'sk-client-wrong-0000', maxRetries: 0 };
        if (cf === 'openai' || cf === 'responses') {
          const sdk = new OpenAI({ ...bad, baseURL: gw.baseURL });
          const call = cf === 'openai'
            ? sdk.chat.completions.create({ model: 'p-openai/deepseek-reasoner', messages: [{ role: 'user', content: 'x' }] })
            : sdk.responses.create({ model: 'p-openai/deepseek-reasoner', input: 'x' });
          await assert.rejects(call, (e) => e instanceof OpenAI.AuthenticationError);
        } else if (cf === 'anthropic') {
          const sdk = new Anthropic(bad);
          await assert.rejects(sdk.messages.create({ model: 'p-anthropic/claude-sonnet-4-5', max_tokens: 10,
            messages: [{ role: 'user', content: 'x' }] }), (e) => e instanceof Anthropic.AuthenticationError
            && e.error?.type === 'error' && e.error?.error?.type === 'authentication_error');
        } else {
          const sdk = new GoogleGenAI({ apiKey: 'sk-client-wrong-0000',
            httpOptions: { baseUrl: gw.url, retryOptions: { attempts: 1 } } });
          await assert.rejects(sdk.models.generateContent({ model: 'p-gemini/gemini-2.5-pro', contents: 'x' }),
            (e) => e instanceof ApiError && e.status === 401);
        }
      });
    }

    for (const cf of FORMATS) {
      for (const pf of FORMATS) {
        test(`${cf} client → ${pf} provider: upstream 400, 429 and 503 reach the client in its shape`, async () => {
          const prov = errNode(pf);
          const model = `${prov.node}/${prov.model}`;
          for (const [status, stream, headers] of [[400, false, {}], [429, false, { 'Retry-After': '1' }],
            [429, true, { 'Retry-After': '1' }], [503, true, {}]]) {
            await sleep(60); // the previous round's cooldown (max 50 ms) is over
            const body = providerErrorBody(pf, status, `mock provider says ${status}`);
            await mock.fault({ match: { key: prov.key }, status, headers, body });
            const since = await mock.mark();
            const r = await raw(cf, { model, stream });
            const what = `upstream ${status}${stream ? ' (streamed request)' : ''}`;
            const ups = await mock.requests({ since });
            assert.deepEqual(ups.map((u) => [u.key, u.status]), [[prov.key, status]], what);
            assertClientError(cf, r, status);
            if (status === 429) assert.equal(r.headers.get('retry-after'), '1', `${what}: Retry-After passed on`);
            // The same format gets the provider's own error, as it sent it.
            if (cf === pf) assert.equal(r.text, JSON.stringify(body), what);
          }
        });
      }
    }

    // An upstream stream that breaks mid-way must not look like a finished answer: the client
    // gets an error event in its format and no closing events.
    for (const cf of FORMATS) {
      test(`${cf} client: an upstream stream cut mid-way ends with an error event, never a clean finish`, async () => {
        for (const pf of FORMATS) {
          const prov = errNode(pf);
          await sleep(60);
          await mock.fault({ match: { key: prov.key }, cut_after_chunks: 3 });
          const r = await fetch(`${gw.url}${cf === 'gemini'
            ? `/v1beta/models/${prov.node}/${prov.model}:streamGenerateContent?alt=sse` : ''}${{
            openai: '/v1/chat/completions', responses: '/v1/responses', anthropic: '/v1/messages', gemini: '' }[cf]}`, {
            method: 'POST',
            headers: { 'content-type': 'application/json', authorization: `Bearer ${CLIENT_KEY}`,
              'anthropic-version': '2023-06-01' },
            body: JSON.stringify(cf === 'gemini' ? { contents: [{ role: 'user', parts: [{ text: 'a b c d e f g h' }] }] }
              : cf === 'anthropic' ? { model: `${prov.node}/${prov.model}`, max_tokens: 100, stream: true,
                messages: [{ role: 'user', content: 'a b c d e f g h' }] }
                : cf === 'responses' ? { model: `${prov.node}/${prov.model}`, stream: true, input: 'a b c d e f g h' }
                  : { model: `${prov.node}/${prov.model}`, stream: true, messages: [{ role: 'user', content: 'a b c d e f g h' }] }),
            signal: AbortSignal.timeout(15000),
          });
          const what = `${cf} ← ${pf}`;
          assert.equal(r.status, 200, what);
          let text = '';
          try {
            text = await r.text();
          } catch {
            // a reset connection is an acceptable end too, as long as nothing says "complete"
          }
          const events = parseSSE(text);
          const ctx = `${what}:\n${text.slice(-1500)}`;
          const last = events.at(-1);
          if (cf === 'openai') {
            assert.ok(!events.some((e) => e.data === '[DONE]'), `no [DONE] (${ctx})`);
            assert.ok(!events.some((e) => e.json?.choices?.[0]?.finish_reason), `no finish_reason (${ctx})`);
            assert.ok(last.json?.error?.message, `ends with an error chunk (${ctx})`);
          } else if (cf === 'responses') {
            assert.ok(!events.some((e) => e.event === 'response.completed'), `no response.completed (${ctx})`);
            assert.ok(['error', 'response.failed'].includes(last.event), `ends with an error event (${ctx})`);
          } else if (cf === 'anthropic') {
            assert.ok(!events.some((e) => e.event === 'message_stop' || e.event === 'message_delta'),
              `no message_delta / message_stop (${ctx})`);
            assert.equal(last.event, 'error', `ends with an error event (${ctx})`);
            assert.equal(last.json?.type, 'error', ctx);
          } else {
            assert.ok(!events.some((e) => e.json?.candidates?.[0]?.finishReason), `no finishReason (${ctx})`);
            assert.ok(last.json?.error?.message, `ends with an error (${ctx})`);
          }
        }
      }, { timeout: 60000 });
    }

    test('an upstream error\'s message reaches a client of another format', async () => {
      const missing = [];
      for (const cf of FORMATS) {
        for (const pf of FORMATS) {
          if (cf === pf) continue;
          const prov = errNode(pf);
          await sleep(60);
          await mock.fault({ match: { key: prov.key }, status: 400,
            body: providerErrorBody(pf, 400, 'max_tokens: 999999 > 64000, the maximum for this model') });
          const r = await raw(cf, { model: `${prov.node}/${prov.model}` });
          const e = assertClientError(cf, r, 400);
          if (!e.message.includes('max_tokens: 999999 > 64000')) missing.push(`${cf} ← ${pf}: ${e.message}`);
        }
      }
      assert.deepEqual(missing, [], 'the provider said why; the client should hear it');
    }, { timeout: 60000 });

    // ---- the smaller endpoints --------------------------------------------------------------

    test('Anthropic count_tokens and model list through the Anthropic SDK', async () => {
      const n = await c.sdk.anthropic.messages.countTokens({ model: 'p-anthropic/claude-sonnet-4-5',
        messages: [{ role: 'user', content: 'how many tokens is this?' }] });
      assert.ok(Number.isInteger(n.input_tokens) && n.input_tokens > 0, JSON.stringify(n));
      const ids = [];
      for await (const m of c.sdk.anthropic.models.list()) ids.push(m.id);
      for (const f of FORMATS) assert.ok(ids.includes(`${PROVIDERS[f].node}/${PROVIDERS[f].model}`), ids.join(', '));
    });

    test('Gemini model list through the Gemini SDK', async () => {
      const names = [];
      for await (const m of await c.sdk.gemini.models.list()) names.push(m.name);
      for (const f of FORMATS) {
        assert.ok(names.includes(`models/${PROVIDERS[f].node}/${PROVIDERS[f].model}`), names.join(', '));
      }
    });

    test('every client path: without /v1, doubled /v1, and a Gemini key in the query', async () => {
      const model = `${PROVIDERS.anthropic.node}/${PROVIDERS.anthropic.model}`;
      for (const [cf, p] of [['openai', '/chat/completions'], ['openai', '/v1/v1/chat/completions'],
        ['responses', '/responses'], ['responses', '/v1/v1/responses'], ['anthropic', '/messages'],
        ['anthropic', '/v1/v1/messages']]) {
        const r = await raw(cf, { model, path: p });
        assert.equal(r.status, 200, `${p}: ${r.text}`);
      }
      const g = await request(`${gw.url}/v1beta/models/${model}:generateContent?key=${CLIENT_KEY}`, { method: 'POST',
        headers: { 'content-type': 'application/json' }, body: { contents: [{ role: 'user', parts: [{ text: 'hi' }] }] } });
      assert.equal(g.status, 200, g.text);
      assert.equal(g.json.candidates[0].content.parts.map((x) => x.text).join(''), 'echo: hi');
    });
  });
}
