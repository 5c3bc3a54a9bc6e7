// What each client API's answers must look like on the wire: SSE parsing, a validator per
// stream format (event names, order, indices, and what the deltas add up to), and the usage
// of each format in one meaning (OpenAI's: input includes cached tokens, output includes
// reasoning tokens).

import assert from 'node:assert/strict';

export const FORMATS = ['openai', 'responses', 'anthropic', 'gemini'];

// Parses a whole SSE body into [{event, data (raw text), json (or undefined)}].
export function parseSSE(text) {
  const events = [];
  for (const block of text.replace(/\r\n/g, '\n').split(/\n\n+/)) {
    if (!block.trim()) continue;
    let event = null;
    const data = [];
    for (const line of block.split('\n')) {
      if (line.startsWith(':')) continue;
      const c = line.indexOf(':');
      const field = c < 0 ? line : line.slice(0, c);
      const val = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
      if (field === 'event') event = val;
      else if (field === 'data') data.push(val);
    }
    if (!data.length && event === null) continue;
    const raw = data.join('\n');
    let json;
    try {
      json = JSON.parse(raw);
    } catch {
      json = undefined;
    }
    events.push({ event, data: raw, json });
  }
  return events;
}

const show = (events) => events.map((e) => `${e.event ?? '-'} ${e.data.slice(0, 300)}`).join('\n');

// ---- OpenAI Chat Completions ---------------------------------------------------------------

// Checks a Chat stream and returns the message it adds up to:
// {content, reasoning_content, thinking_blocks, tool_calls, finish_reason, usage, chunks}.
export function checkChatStream(events, { includeUsage = true } = {}) {
  const ctx = () => `\n--- stream ---\n${show(events)}`;
  assert.ok(events.length >= 3, `a Chat stream has at least 3 events${ctx()}`);
  assert.equal(events.at(-1).data, '[DONE]', `a Chat stream ends with [DONE]${ctx()}`);
  const chunks = events.slice(0, -1);
  const msg = { content: '', reasoning_content: '', thinking_blocks: [], tool_calls: [], finish_reason: null,
    usage: null, chunks: chunks.length };
  let id = null;
  let finishAt = -1;
  chunks.forEach((e, i) => {
    assert.equal(e.event, null, `Chat chunks carry no event name${ctx()}`);
    const c = e.json;
    assert.ok(c && typeof c === 'object', `chunk ${i} is JSON${ctx()}`);
    assert.equal(c.object, 'chat.completion.chunk', `chunk ${i} object${ctx()}`);
    assert.equal(typeof c.id, 'string', `chunk ${i} id${ctx()}`);
    assert.equal(typeof c.created, 'number', `chunk ${i} created${ctx()}`);
    assert.equal(typeof c.model, 'string', `chunk ${i} model${ctx()}`);
    if (id === null) id = c.id;
    assert.equal(c.id, id, `every chunk has the same id${ctx()}`);
    assert.ok(Array.isArray(c.choices), `chunk ${i} choices${ctx()}`);
    if (c.choices.length === 0) {
      assert.ok(c.usage, `a chunk without choices is the usage chunk${ctx()}`);
      assert.ok(finishAt >= 0, `the usage chunk comes after the finish_reason${ctx()}`);
      assert.equal(msg.usage, null, `one usage chunk${ctx()}`);
      msg.usage = c.usage;
      return;
    }
    assert.equal(finishAt, -1, `nothing but the usage chunk after finish_reason (chunk ${i})${ctx()}`);
    const ch = c.choices[0];
    assert.equal(ch.index, 0);
    const d = ch.delta || {};
    if (i === 0) assert.equal(d.role, 'assistant', `the first delta has role assistant${ctx()}`);
    if (typeof d.content === 'string') msg.content += d.content;
    if (typeof d.reasoning_content === 'string') msg.reasoning_content += d.reasoning_content;
    for (const tb of d.thinking_blocks || []) {
      // Merged as a client builds its history: text appended, a signature ends the block.
      const last = msg.thinking_blocks.at(-1);
      if (tb.type === 'thinking' && last && last.type === 'thinking' && !last.signature) {
        last.thinking += tb.thinking || '';
        if (tb.signature) last.signature = tb.signature;
      } else {
        msg.thinking_blocks.push({ ...tb, ...(tb.type === 'thinking' ? { thinking: tb.thinking || '' } : {}) });
      }
    }
    for (const tc of d.tool_calls || []) {
      assert.equal(typeof tc.index, 'number', `tool call delta has an index${ctx()}`);
      let call = msg.tool_calls[tc.index];
      if (!call) {
        assert.equal(tc.index, msg.tool_calls.length, `tool calls start in order${ctx()}`);
        assert.ok(tc.id, `a tool call's first delta has its id${ctx()}`);
        assert.equal(tc.type, 'function', `a tool call's first delta has type function${ctx()}`);
        assert.ok(tc.function?.name, `a tool call's first delta has the function name${ctx()}`);
        call = { id: tc.id, type: 'function', function: { name: tc.function.name, arguments: '' } };
        if (tc.extra_content) call.extra_content = tc.extra_content;
        msg.tool_calls.push(call);
      } else {
        assert.ok(!tc.id || tc.id === call.id, `a tool call keeps its id${ctx()}`);
      }
      if (typeof tc.function?.arguments === 'string') call.function.arguments += tc.function.arguments;
    }
    if (ch.finish_reason != null) {
      finishAt = i;
      msg.finish_reason = ch.finish_reason;
    }
  });
  assert.ok(finishAt >= 0, `some chunk has a finish_reason${ctx()}`);
  if (includeUsage) assert.ok(msg.usage, `a usage chunk before [DONE] (include_usage)${ctx()}`);
  return msg;
}

// ---- OpenAI Responses ----------------------------------------------------------------------

// Checks a Responses stream; returns {response (of the final event), items (output_item.done,
// in order), types}.
export function checkResponsesStream(events) {
  const ctx = () => `\n--- stream ---\n${show(events)}`;
  const types = events.map((e) => e.event);
  events.forEach((e, i) => {
    assert.ok(e.json, `event ${i} is JSON${ctx()}`);
    assert.equal(e.json.type, e.event, `event ${i}: the event name is the data's type${ctx()}`);
    assert.equal(e.json.sequence_number, i, `event ${i}: sequence_number counts from 0${ctx()}`);
  });
  assert.equal(types[0], 'response.created', `first event${ctx()}`);
  assert.equal(types[1], 'response.in_progress', `second event${ctx()}`);
  const last = types.at(-1);
  assert.ok(last === 'response.completed' || last === 'response.incomplete', `last event is ${last}${ctx()}`);
  assert.equal(events[0].json.response.status, 'in_progress');
  const items = [];
  let open = null; // {item, index, text, args, summary, parts}
  for (const e of events.slice(2, -1)) {
    const d = e.json;
    const t = e.event;
    if (t === 'response.output_item.added') {
      assert.equal(open, null, `output items do not overlap${ctx()}`);
      assert.equal(d.output_index, items.length, `output_index counts up${ctx()}`);
      assert.ok(d.item?.id && d.item?.type, `added item has id and type${ctx()}`);
      open = { item: d.item, index: d.output_index, text: '', args: '', summary: '', partOpen: false };
      continue;
    }
    assert.ok(open, `${t} outside an output item${ctx()}`);
    if (t !== 'response.output_item.done') {
      assert.equal(d.output_index, open.index, `${t} output_index${ctx()}`);
      assert.equal(d.item_id, open.item.id, `${t} item_id${ctx()}`);
    }
    switch (t) {
      case 'response.content_part.added':
        assert.equal(open.item.type, 'message');
        open.partOpen = true;
        break;
      case 'response.output_text.delta':
        assert.ok(open.partOpen, `text delta inside a content part${ctx()}`);
        open.text += d.delta;
        break;
      case 'response.output_text.done':
        assert.equal(d.text, open.text, `output_text.done text is the deltas joined${ctx()}`);
        break;
      case 'response.content_part.done':
        assert.equal(d.part?.text, open.text, `content_part.done text${ctx()}`);
        open.partOpen = false;
        break;
      case 'response.reasoning_summary_part.added':
        assert.equal(open.item.type, 'reasoning');
        break;
      case 'response.reasoning_summary_text.delta':
        open.summary += d.delta;
        break;
      case 'response.reasoning_summary_text.done':
        assert.equal(d.text, open.summary, `reasoning_summary_text.done text${ctx()}`);
        break;
      case 'response.reasoning_summary_part.done':
        break;
      case 'response.function_call_arguments.delta':
        assert.equal(open.item.type, 'function_call');
        open.args += d.delta;
        break;
      case 'response.function_call_arguments.done':
        assert.equal(d.arguments, open.args, `function_call_arguments.done is the deltas joined${ctx()}`);
        break;
      case 'response.output_item.done': {
        assert.equal(d.output_index, open.index, `output_item.done output_index${ctx()}`);
        assert.equal(d.item.id, open.item.id, `output_item.done id${ctx()}`);
        assert.equal(d.item.type, open.item.type, `output_item.done type${ctx()}`);
        if (d.item.type === 'message') {
          assert.equal(d.item.content.map((c) => c.text).join(''), open.text, `message text${ctx()}`);
        } else if (d.item.type === 'function_call') {
          assert.equal(d.item.arguments, open.args, `function call arguments${ctx()}`);
        } else if (d.item.type === 'reasoning') {
          assert.equal((d.item.summary || []).map((s) => s.text).join(''), open.summary, `reasoning summary${ctx()}`);
        }
        items.push(d.item);
        open = null;
        break;
      }
      default:
        assert.fail(`unexpected event ${t}${ctx()}`);
    }
  }
  assert.equal(open, null, `every output item is done before the end${ctx()}`);
  const response = events.at(-1).json.response;
  assert.deepEqual(response.output.map((o) => [o.type, o.id]), items.map((o) => [o.type, o.id]),
    `the final response lists the streamed items${ctx()}`);
  return { response, items, types };
}

// ---- Anthropic Messages --------------------------------------------------------------------

const DELTA_FOR = {
  text: ['text_delta', 'citations_delta'],
  thinking: ['thinking_delta', 'signature_delta'],
  redacted_thinking: [],
  tool_use: ['input_json_delta'],
};

// Checks an Anthropic stream; returns the message it adds up to.
export function checkAnthropicStream(events) {
  const ctx = () => `\n--- stream ---\n${show(events)}`;
  events.forEach((e, i) => {
    assert.ok(e.json, `event ${i} is JSON${ctx()}`);
    assert.equal(e.json.type, e.event, `event ${i}: the event name is the data's type${ctx()}`);
  });
  const evs = events.filter((e) => e.event !== 'ping');
  assert.equal(evs[0]?.event, 'message_start', `first event${ctx()}`);
  assert.equal(evs.filter((e) => e.event === 'message_start').length, 1, `one message_start${ctx()}`);
  const start = evs[0].json.message;
  assert.equal(start.type, 'message');
  assert.equal(start.role, 'assistant');
  assert.deepEqual(start.content, []);
  assert.ok(start.usage && typeof start.usage.input_tokens === 'number', `message_start usage${ctx()}`);
  assert.equal(evs.at(-1).event, 'message_stop', `last event${ctx()}`);
  assert.equal(evs.at(-2).event, 'message_delta', `message_delta before message_stop${ctx()}`);
  const content = [];
  let open = null;
  for (const e of evs.slice(1, -2)) {
    const d = e.json;
    if (e.event === 'content_block_start') {
      assert.equal(open, null, `blocks do not overlap${ctx()}`);
      assert.equal(d.index, content.length, `block indices count up from 0${ctx()}`);
      assert.ok(d.content_block && d.content_block.type in DELTA_FOR, `known block type${ctx()}`);
      open = structuredClone(d.content_block);
      if (open.type === 'tool_use') {
        assert.ok(open.id && open.name, `tool_use start has id and name${ctx()}`);
        open.json = '';
      }
      content.push(open);
    } else if (e.event === 'content_block_delta') {
      assert.ok(open, `delta outside a block${ctx()}`);
      assert.equal(d.index, content.length - 1, `delta index${ctx()}`);
      assert.ok(DELTA_FOR[open.type].includes(d.delta?.type), `${d.delta?.type} in a ${open.type} block${ctx()}`);
      if (d.delta.type === 'text_delta') open.text += d.delta.text;
      else if (d.delta.type === 'thinking_delta') open.thinking += d.delta.thinking;
      else if (d.delta.type === 'signature_delta') open.signature = (open.signature || '') + d.delta.signature;
      else if (d.delta.type === 'input_json_delta') open.json += d.delta.partial_json;
    } else if (e.event === 'content_block_stop') {
      assert.ok(open, `stop outside a block${ctx()}`);
      assert.equal(d.index, content.length - 1, `stop index${ctx()}`);
      if (open.type === 'tool_use') {
        open.input = open.json === '' ? {} : JSON.parse(open.json);
        delete open.json;
      }
      open = null;
    } else {
      assert.fail(`unexpected event ${e.event} between message_start and message_delta${ctx()}`);
    }
  }
  assert.equal(open, null, `every block stopped${ctx()}`);
  const md = evs.at(-2).json;
  assert.ok(md.delta?.stop_reason, `message_delta has stop_reason${ctx()}`);
  assert.ok(typeof md.usage?.output_tokens === 'number', `message_delta usage.output_tokens${ctx()}`);
  const usage = { ...start.usage, ...md.usage };
  return { ...start, content, stop_reason: md.delta.stop_reason, stop_sequence: md.delta.stop_sequence ?? null,
    usage };
}

// ---- Gemini --------------------------------------------------------------------------------

// Checks a Gemini SSE stream; returns {parts (all, in order), finishReason, usageMetadata}.
export function checkGeminiStream(events) {
  const ctx = () => `\n--- stream ---\n${show(events)}`;
  assert.ok(events.length >= 1, `a Gemini stream has events${ctx()}`);
  const parts = [];
  let finishReason = null;
  let usageMetadata = null;
  events.forEach((e, i) => {
    assert.equal(e.event, null, `Gemini events carry no event name${ctx()}`);
    const c = e.json;
    assert.ok(c && typeof c === 'object', `event ${i} is JSON${ctx()}`);
    assert.equal(finishReason, null, `nothing after the chunk with finishReason${ctx()}`);
    if (c.usageMetadata) usageMetadata = c.usageMetadata;
    const cand = c.candidates?.[0];
    if (!cand) return;
    if (cand.content) {
      assert.equal(cand.content.role, 'model', `content role${ctx()}`);
      for (const p of cand.content.parts || []) parts.push(p);
    }
    if (cand.finishReason) finishReason = cand.finishReason;
  });
  assert.ok(finishReason, `a chunk has finishReason${ctx()}`);
  assert.ok(usageMetadata && typeof usageMetadata.promptTokenCount === 'number', `usageMetadata${ctx()}`);
  return { parts, finishReason, usageMetadata };
}

// ---- usage in one meaning ------------------------------------------------------------------

// {input (with cached), cached, output (with reasoning), reasoning (undefined when the format
// does not say)} from a client answer's usage object of `format`.
export function normalizeUsage(format, u) {
  assert.ok(u && typeof u === 'object', `${format} usage missing`);
  switch (format) {
    case 'openai':
      assert.equal(u.total_tokens, u.prompt_tokens + u.completion_tokens, 'total_tokens = prompt + completion');
      return { input: u.prompt_tokens, cached: u.prompt_tokens_details?.cached_tokens ?? 0, output: u.completion_tokens,
        reasoning: u.completion_tokens_details?.reasoning_tokens };
    case 'responses':
      assert.equal(u.total_tokens, u.input_tokens + u.output_tokens, 'total_tokens = input + output');
      return { input: u.input_tokens, cached: u.input_tokens_details?.cached_tokens ?? 0, output: u.output_tokens,
        reasoning: u.output_tokens_details?.reasoning_tokens };
    case 'anthropic':
      return { input: u.input_tokens + (u.cache_read_input_tokens ?? 0) + (u.cache_creation_input_tokens ?? 0),
        cached: u.cache_read_input_tokens ?? 0, output: u.output_tokens, reasoning: undefined };
    case 'gemini': {
      const thoughts = u.thoughtsTokenCount ?? 0;
      const candidates = u.candidatesTokenCount ?? 0;
      assert.equal(u.totalTokenCount, u.promptTokenCount + candidates + thoughts + (u.toolUsePromptTokenCount ?? 0),
        'totalTokenCount = prompt + candidates + thoughts');
      return { input: u.promptTokenCount + (u.toolUsePromptTokenCount ?? 0), cached: u.cachedContentTokenCount ?? 0,
        output: candidates + thoughts, reasoning: u.thoughtsTokenCount };
    }
    default:
      throw new Error(`unknown format ${format}`);
  }
}

// ---- errors in each client's shape ---------------------------------------------------------

export const ANTHROPIC_TYPES = { 400: 'invalid_request_error', 401: 'authentication_error', 402: 'billing_error',
  403: 'permission_error', 404: 'not_found_error', 413: 'request_too_large', 429: 'rate_limit_error',
  500: 'api_error', 502: 'api_error', 503: 'overloaded_error', 529: 'overloaded_error' };
export const GOOGLE_STATUS = { 400: 'INVALID_ARGUMENT', 401: 'UNAUTHENTICATED', 403: 'PERMISSION_DENIED', 404: 'NOT_FOUND',
  409: 'ABORTED', 413: 'INVALID_ARGUMENT', 429: 'RESOURCE_EXHAUSTED', 500: 'INTERNAL', 501: 'UNIMPLEMENTED',
  502: 'UNAVAILABLE', 503: 'UNAVAILABLE', 504: 'DEADLINE_EXCEEDED' };

// Asserts the error body `res` ({status, headers, text, json}) has the shape a client of
// `format` expects for HTTP `status`; returns the error object.
export function assertClientError(format, res, status) {
  const ctx = `${format} client: status ${res.status}, body ${res.text.slice(0, 500)}`;
  assert.equal(res.status, status, `expected HTTP ${status}; ${ctx}`);
  const ct = (typeof res.headers.get === 'function' ? res.headers.get('content-type') : res.headers['content-type']) || '';
  assert.match(ct, /application\/json/, `error content-type should be JSON (${ctx})`);
  const j = res.json;
  assert.ok(j && typeof j === 'object', `error body is JSON (${ctx})`);
  if (format === 'anthropic') {
    assert.equal(j.type, 'error', `Anthropic errors have type "error" (${ctx})`);
    assert.equal(typeof j.error?.type, 'string', `error.type (${ctx})`);
    assert.equal(typeof j.error?.message, 'string', `error.message (${ctx})`);
    assert.ok(j.error.message.length > 0, ctx);
    const want = ANTHROPIC_TYPES[status] || (status >= 500 ? 'api_error' : 'invalid_request_error');
    if (status === 503) assert.ok(['overloaded_error', 'api_error'].includes(j.error.type), ctx);
    else assert.equal(j.error.type, want, `error.type for ${status} (${ctx})`);
    return j.error;
  }
  if (format === 'gemini') {
    assert.equal(j.error?.code, status, `error.code is the HTTP status (${ctx})`);
    assert.equal(typeof j.error?.message, 'string', `error.message (${ctx})`);
    assert.ok(j.error.message.length > 0, ctx);
    assert.equal(j.error.status, GOOGLE_STATUS[status] || (status >= 500 ? 'INTERNAL' : 'INVALID_ARGUMENT'),
      `error.status for ${status} (${ctx})`);
    return j.error;
  }
  const e = j.error;
  assert.ok(e && typeof e === 'object', `body has an "error" object (${ctx})`);
  assert.equal(typeof e.message, 'string', `error.message (${ctx})`);
  assert.ok(e.message.length > 0, ctx);
  assert.equal(typeof e.type, 'string', `error.type (${ctx})`);
  assert.ok('code' in e, `error.code present (${ctx})`);
  return e;
}

// An error body of provider format `format` for HTTP `status`, with `message`.
export function providerErrorBody(format, status, message) {
  if (format === 'anthropic') {
    return { type: 'error', error: { type: ANTHROPIC_TYPES[status] || 'api_error', message }, request_id: 'req_mock' };
  }
  if (format === 'gemini') return { error: { code: status, message, status: GOOGLE_STATUS[status] || 'INTERNAL' } };
  const type = status === 429 ? 'rate_limit_error' : status >= 500 ? 'server_error' : 'invalid_request_error';
  return { error: { message, type, param: null, code: status === 429 ? 'rate_limit_exceeded' : null } };
}
