#!/usr/bin/env node
// Mock LLM provider for OmniRoute's integration tests and benchmarks.
//
// A zero-dependency HTTP server that speaks the provider APIs the gateway calls, records
// every request it receives and injects faults on demand.
//
//   node mock-provider.mjs [--port 0] [--host 127.0.0.1] [--keys sk-a,sk-b] [--verbose]
//                          [--max-records 10000] [--no-record]
//
// prints one line {"listening":PORT} on stdout once it accepts connections.
//
// Provider endpoints
//   POST /v1/chat/completions                OpenAI Chat Completions (JSON and SSE)
//   POST /v1/responses                       OpenAI Responses (JSON and SSE)
//   GET  /v1/models, /v1/models/{id}         OpenAI model list
//   POST /v1/messages                        Anthropic Messages (JSON and SSE)
//   POST /v1beta/models/{m}:generateContent  Gemini (also :streamGenerateContent[?alt=sse])
//   GET  /v1beta/models                      Gemini model list
// The answer is deterministic: "echo: <text of the last user message>", or tool calls and
// reasoning when the conversation asks for them (see "scripted answers" below), in each
// format's own shapes, JSON and SSE. Like the real providers it checks what a request sends
// back: Anthropic thinking signatures, Gemini thought signatures (required on Gemini 3 calls),
// Responses encrypted_content, and that tool results answer the calls before them; a refused
// request gets the provider's own 400 and its record carries `refused` (the error body).
//
// Control endpoints (never recorded)
//   GET    /_mock/requests[?since=SEQ]  recorded requests, oldest first
//   DELETE /_mock/requests              forget them
//   POST   /_mock/faults                queue a fault (object, or an array of them)
//   GET    /_mock/faults                the queue
//   DELETE /_mock/faults                clear the queue
//   POST   /_mock/config                {"keys":[..]|null, "models":[..], "answer":{..}}
//                                       (answer: default options of every answer, as in a
//                                       fault; "headers" are sent with every answer)
//   POST   /_mock/reset                 requests, faults and config back to the start
//   GET    /_mock/stats                 counters (requests, in flight, max in flight)
//   GET    /_mock/health                200
//
// A fault: {"match": {"key", "model", "path", "stream"} (all optional; all given must
// equal), "status": 429, "headers": {"Retry-After": "2"}, "body": {...} | "text",
// "times": 1 (-1 = forever), "delay_ms": N (before the answer starts),
// "chunk_delay_ms": N (between stream events), "cut_after_chunks": N (stream: send N
// events, then destroy the socket), "drop_connection": true (destroy without answering),
// "reply": "text" (answer text), "usage": {...} (token counts to report, merged over the
// native usage object), "thinking": true | "text" (reason first), "tool_calls": [{"name",
// "arguments": {..}}] (answer with these calls unless the conversation ends with tool
// results), "cached_tokens": N (report N input tokens read from cache)}. "match" may also
// have "body_contains": "text" (the raw request body contains it).
// A fault without "status" changes how the normal answer is given ("headers" then join the
// answer's own, e.g. the quota headers of subscription plans:
// anthropic-ratelimit-unified-5h-utilization, x-codex-primary-used-percent, ...). The first
// queued fault that matches a request applies to it.
//
// Each answered request's record has `answer`: {text, reasoning, tool_calls: [{id, name,
// arguments}], usage: {input, cached, output, reasoning, ...} with OpenAI's meaning, and the
// opaque token issued: signature (Anthropic), thought_signature (Gemini), encrypted_content
// (Responses)}.

import http from 'node:http';
import crypto from 'node:crypto';
import { pathToFileURL } from 'node:url';

const DEFAULT_MODELS = ['gpt-4o-mini', 'gpt-4o', 'claude-sonnet-4-5', 'gemini-2.5-flash'];
const FINGERPRINT = 'fp_mock0001';

function sleep(ms) {
  return ms > 0 ? new Promise((r) => setTimeout(r, ms)) : Promise.resolve();
}

function randomId(n = 24) {
  return crypto.randomBytes(Math.ceil(n / 2)).toString('hex').slice(0, n);
}

// Text of a message's content in any of the three formats.
function contentText(content) {
  if (content == null) return '';
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((p) => {
        if (typeof p === 'string') return p;
        if (p && typeof p.text === 'string') return p.text; // openai text, anthropic text, gemini part
        return '';
      })
      .filter(Boolean)
      .join(' ');
  }
  if (typeof content === 'object' && Array.isArray(content.parts)) return contentText(content.parts);
  return '';
}

// Rough, deterministic token count: one token per 4 characters, at least one per text.
function countTokens(text) {
  return text ? Math.max(1, Math.ceil(text.length / 4)) : 0;
}

// Splits the reply into stream pieces: "echo: a b" → ["echo:", " a", " b"].
function pieces(text) {
  const out = text.match(/\s*\S+/g) || [];
  return out.length ? out : [text];
}

function clampPieces(all, maxTokens) {
  if (Number.isInteger(maxTokens) && maxTokens > 0 && all.length > maxTokens) {
    return { parts: all.slice(0, maxTokens), truncated: true };
  }
  return { parts: all, truncated: false };
}


// ---- scripted answers: tool calls and reasoning ----------------------------------------
//
// What the mock answers is decided from the conversation, the same way in every format:
//   - the conversation ends with tool results      → text "result: <r1> | <r2> ..."
//   - else the last user text has "call tool NAME {json}" (once or more)
//                                                  → those tool calls (after the text X of
//                                                    'say "X"' if the user text has one)
//   - else                                          → text "echo: <last user text>"
// plus reasoning ("Thinking about: <same subject>") when the fault says `thinking: true`
// (or a string: that reasoning text) or the last user text contains "[think]". Each format
// shows reasoning as its real API does: Anthropic a thinking block with a signature (only
// when the request enables thinking), Gemini thought parts (only with includeThoughts) and a
// thoughtSignature on the first function call (else on the last text part), Responses a
// reasoning item (summary only when reasoning.summary is set, encrypted_content only when
// include has "reasoning.encrypted_content"), Chat `reasoning_content`.
// The opaque tokens are HMACs of what they vouch for, and the mock checks the ones a
// request sends back, as the providers do: a token altered on its way is refused with the
// provider's own 400.

const SIGNING_KEY = 'omniroute-mock-provider-signing-key-v1';

function hmac(kind, payload) {
  return crypto.createHmac('sha256', SIGNING_KEY).update(`${kind}\0${payload}`).digest();
}

function sha256(text) {
  return crypto.createHash('sha256').update(text).digest();
}

// An id derived from `seed`: deterministic, so the same conversation gets the same ids.
function derivedId(prefix, seed, n, alphabet = 'hex') {
  const h = sha256(seed);
  let s = alphabet === 'hex' ? h.toString('hex')
    : Buffer.concat([h, sha256(`${seed}+`)]).toString('base64').replace(/[^A-Za-z0-9]/g, '');
  while (s.length < n) s += s;
  return prefix + s.slice(0, n);
}

// Anthropic thinking signature: bound to the thinking text, as Anthropic's are.
export function anthropicSignature(thinking) {
  return Buffer.concat([Buffer.from([0x12, 0xa3, 0x01]), hmac('anthropic-thinking', thinking),
    sha256(`anthropic:${thinking}`)]).toString('base64');
}

// Gemini thoughtSignature: vouches for the part it sits on ("fc:<function name>" or "text").
export function geminiSignature(binding) {
  const b = Buffer.from(binding);
  return Buffer.concat([Buffer.from([0x0a, b.length]), b, hmac('gemini-thought', binding)]).toString('base64');
}

// The binding of a Gemini signature, or null when it is not one the mock issued.
function geminiSignatureBinding(sig) {
  if (typeof sig !== 'string') return null;
  const raw = Buffer.from(sig, 'base64');
  if (raw.toString('base64') !== sig || raw.length < 34 || raw[0] !== 0x0a) return null;
  const n = raw[1];
  if (raw.length !== 2 + n + 32) return null;
  const binding = raw.subarray(2, 2 + n).toString();
  return crypto.timingSafeEqual(raw.subarray(2 + n), hmac('gemini-thought', binding)) ? binding : null;
}

// Responses encrypted_content: an opaque blob for reasoning item `id`.
export function openaiEncryptedContent(id, thinking) {
  const payload = Buffer.from(JSON.stringify({ id, r: sha256(thinking).toString('hex').slice(0, 16) }))
    .toString('base64url');
  return `gAAAAAB${payload}.${hmac('openai-reasoning', payload).toString('base64url')}`;
}

function openaiEncryptedContentValid(blob) {
  if (typeof blob !== 'string' || !blob.startsWith('gAAAAAB')) return false;
  const [payload, mac] = blob.slice(7).split('.');
  return !!payload && mac === hmac('openai-reasoning', payload).toString('base64url');
}

// Index just past the JSON object starting at s[start] ('{'), or -1.
function jsonObjectEnd(s, start) {
  let depth = 0;
  let inString = false;
  for (let i = start; i < s.length; i++) {
    const c = s[i];
    if (inString) {
      if (c === '\\') i++;
      else if (c === '"') inString = false;
    } else if (c === '"') {
      inString = true;
    } else if (c === '{') {
      depth++;
    } else if (c === '}') {
      depth--;
      if (depth === 0) return i + 1;
    }
  }
  return -1;
}

// "call tool get_weather {"city":"Paris"} call tool now {}" → [{name, args}, ...].
export function parseToolDirectives(text) {
  const calls = [];
  const re = /call tool ([A-Za-z_][A-Za-z0-9_.-]*)/g;
  let m;
  while ((m = re.exec(text))) {
    let i = m.index + m[0].length;
    while (i < text.length && /\s/.test(text[i])) i++;
    let args = {};
    if (text[i] === '{') {
      const end = jsonObjectEnd(text, i);
      if (end > 0) {
        try {
          args = JSON.parse(text.slice(i, end));
          re.lastIndex = end;
        } catch {
          args = {};
        }
      }
    }
    calls.push({ name: m[1], args });
  }
  return calls;
}

// What to answer. `conv`: {lastUser, toolResults: [text]} as read from the request.
function scriptAnswer(conv, opts) {
  const { lastUser, toolResults } = conv;
  let text = null;
  let calls = [];
  if (typeof opts.reply === 'string') {
    text = opts.reply;
  } else if (toolResults.length) {
    text = `result: ${toolResults.join(' | ')}`;
  } else if (Array.isArray(opts.tool_calls) && opts.tool_calls.length) {
    calls = opts.tool_calls.map((c) => ({ name: String(c.name), args: c.arguments ?? c.args ?? {} }));
  } else {
    calls = parseToolDirectives(lastUser);
    if (!calls.length) text = `echo: ${lastUser}`;
    // 'say "Let me look." call tool ...': text before the calls, as models often write.
    else text = /say "([^"]*)"/.exec(lastUser)?.[1] ?? null;
  }
  const wantThinking = opts.thinking === true || (typeof opts.thinking === 'string' && opts.thinking !== '') ||
    /\[think\]/.test(lastUser);
  const thinking = !wantThinking ? null : typeof opts.thinking === 'string' ? opts.thinking
    : `Thinking about: ${toolResults.length ? toolResults.join(' | ') : lastUser}`;
  const seed = `${conv.turns}|${lastUser}|${toolResults.join('|')}`;
  const toolCalls = calls.map((c, i) => ({ name: c.name, args: c.args, json: JSON.stringify(c.args),
    seed: `${seed}|${i}|${c.name}` }));
  return { text, thinking, toolCalls };
}

// Tool-call arguments as a stream sends them: in three pieces (whole when short).
function argumentPieces(json) {
  if (json.length < 6) return [json];
  const n = Math.ceil(json.length / 3);
  return [json.slice(0, n), json.slice(n, 2 * n), json.slice(2 * n)].filter(Boolean);
}

// Token counts of an answer, with OpenAI's meaning (input includes cached, output includes
// reasoning); each format reports them its own way.
function answerUsage(input, answer, textTokens, reasoningShown, opts) {
  const cached = Math.min(Math.max(0, Number(opts.cached_tokens) || 0), input);
  const reasoning = answer.thinking && reasoningShown !== false ? pieces(answer.thinking).length : 0;
  const tools = answer.toolCalls.reduce((n, c) => n + countTokens(c.name + c.json), 0);
  return { input, cached, output: textTokens + reasoning + tools, reasoning, text: textTokens, tools };
}

function toolResultText(content) {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) return contentText(content);
  return content == null ? '' : JSON.stringify(content);
}

// ---- reading the conversation of each format (and refusing what the provider refuses) --

function chatConversation(body) {
  const messages = Array.isArray(body.messages) ? body.messages : [];
  let lastUser = '';
  let promptText = '';
  let pending = null;
  const err = (message, i) => ({ status: 400, body: openaiError(400, message, 'invalid_request_error', null,
    `messages.[${i}].role`) });
  for (let i = 0; i < messages.length; i++) {
    const m = messages[i];
    const t = contentText(m?.content);
    promptText += t;
    if (m?.role === 'tool') {
      if (!pending || !pending.has(m.tool_call_id)) {
        return { error: err("Invalid parameter: messages with role 'tool' must be a response to a preceeding " +
          "message with 'tool_calls'.", i) };
      }
      pending.delete(m.tool_call_id);
      continue;
    }
    if (pending && pending.size) {
      return { error: err("An assistant message with 'tool_calls' must be followed by tool messages responding " +
        `to each 'tool_call_id'. The following tool_call_ids did not have response messages: ${[...pending].join(', ')}`,
      i) };
    }
    pending = null;
    if (m?.role === 'user' && t) lastUser = t;
    if (m?.role === 'assistant' && Array.isArray(m.tool_calls) && m.tool_calls.length) {
      pending = new Set(m.tool_calls.map((c) => c?.id));
      promptText += JSON.stringify(m.tool_calls);
    }
  }
  if (pending && pending.size && messages.at(-1)?.role === 'tool') {
    return { error: err("An assistant message with 'tool_calls' must be followed by tool messages responding " +
      `to each 'tool_call_id'. The following tool_call_ids did not have response messages: ${[...pending].join(', ')}`,
    messages.length - 1) };
  }
  const toolResults = [];
  for (let i = messages.length - 1; i >= 0 && messages[i]?.role === 'tool'; i--) {
    toolResults.unshift(toolResultText(messages[i].content));
  }
  return { lastUser, promptText, toolResults, turns: messages.length };
}

function responsesConversation(body) {
  let lastUser = '';
  let promptText = typeof body.instructions === 'string' ? body.instructions : '';
  const toolResults = [];
  let turns = 0;
  const err = (status, message, code = null) => ({ status, body: openaiError(status, message, 'invalid_request_error',
    code, 'input') });
  if (typeof body.input === 'string') {
    lastUser = body.input;
    promptText += body.input;
    turns = 1;
  } else if (Array.isArray(body.input)) {
    const calls = new Set();
    turns = body.input.length;
    for (const item of body.input) {
      const type = item?.type || 'message';
      if (type === 'message') {
        const t = contentText(item?.content);
        promptText += t;
        if (item?.role === 'user' && t) lastUser = t;
      } else if (type === 'function_call') {
        calls.add(item.call_id);
        promptText += `${item.name}${item.arguments}`;
      } else if (type === 'function_call_output') {
        if (!calls.has(item.call_id) && !body.previous_response_id) {
          return { error: err(400, `No tool call found for function call output with call_id ${item.call_id}.`) };
        }
        promptText += toolResultText(item.output);
      } else if (type === 'reasoning') {
        if (item.encrypted_content != null) {
          if (!openaiEncryptedContentValid(item.encrypted_content)) {
            return { error: err(400, `The encrypted content for item ${item.id} could not be verified.`,
              'invalid_encrypted_content') };
          }
        } else if (body.store === false && item.id) {
          return { error: err(404, `Item with id '${item.id}' not found. Items are not persisted when \`store\` is ` +
            'set to false. Try again with `store` set to true, or remove this item from your input.') };
        }
      }
    }
    for (let i = body.input.length - 1; i >= 0 && body.input[i]?.type === 'function_call_output'; i--) {
      toolResults.unshift(toolResultText(body.input[i].output));
    }
  }
  return { lastUser, promptText, toolResults, turns };
}

const THINKING_DOCS = 'Please consult our documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking';

function anthropicConversation(body) {
  const msgs = body.messages;
  const err = (message) => ({ status: 400, body: anthropicError('invalid_request_error', message) });
  const thinkingType = body.thinking?.type;
  const thinkingOn = thinkingType === 'enabled' || thinkingType === 'adaptive';
  if (thinkingType === 'enabled') {
    const budget = body.thinking.budget_tokens;
    if (!Number.isInteger(budget) || budget < 1024) {
      return { error: err('thinking.enabled.budget_tokens: Input should be greater than or equal to 1024') };
    }
    if (budget >= body.max_tokens) {
      return { error: err('`max_tokens` must be greater than `thinking.budget_tokens`. ' +
        `${THINKING_DOCS}#max-tokens-and-context-window-size`) };
    }
  }
  if (thinkingOn && body.temperature !== undefined && body.temperature !== 1) {
    return { error: err('`temperature` may only be set to 1 when thinking is enabled or in adaptive mode. ' +
      `${THINKING_DOCS}#feature-compatibility`) };
  }
  if (thinkingOn && (body.tool_choice?.type === 'any' || body.tool_choice?.type === 'tool')) {
    return { error: err('Thinking may not be enabled when tool_choice forces tool use.') };
  }
  if (body.temperature !== undefined && body.top_p !== undefined) {
    return { error: err('`temperature` and `top_p` cannot both be specified for this model. Please use only one.') };
  }
  const blocksOf = (m) => (typeof m?.content === 'string' ? [{ type: 'text', text: m.content }]
    : Array.isArray(m?.content) ? m.content : []);
  let lastUser = '';
  let promptText = contentText(body.system);
  for (let i = 0; i < msgs.length; i++) {
    const m = msgs[i];
    const blocks = blocksOf(m);
    promptText += contentText(blocks);
    if (m?.role === 'assistant') {
      for (let j = 0; j < blocks.length; j++) {
        const b = blocks[j];
        if (b?.type === 'thinking') {
          if (typeof b.signature !== 'string' || !b.signature) {
            return { error: err(`messages.${i}.content.${j}.thinking.signature: Field required`) };
          }
          if (b.signature !== anthropicSignature(String(b.thinking))) {
            return { error: err(`messages.${i}.content.${j}: Invalid \`signature\` in \`thinking\` block`) };
          }
        } else if (b?.type === 'tool_use') {
          promptText += `${b.name}${JSON.stringify(b.input)}`;
        }
      }
      const uses = blocks.filter((b) => b?.type === 'tool_use').map((b) => b.id);
      if (uses.length) {
        const answered = new Set(blocksOf(msgs[i + 1]).filter((b) => b?.type === 'tool_result').map((b) => b.tool_use_id));
        const missing = uses.filter((id) => !answered.has(id));
        if (missing.length && i + 1 < msgs.length) {
          return { error: err(`messages.${i + 1}: \`tool_use\` ids were found without \`tool_result\` blocks ` +
            `immediately after: ${missing.join(', ')}. Each \`tool_use\` block must have a corresponding ` +
            '`tool_result` block in the next message.') };
        }
      }
    } else {
      const prev = i > 0 && msgs[i - 1]?.role === 'assistant' ? blocksOf(msgs[i - 1]) : [];
      const uses = new Set(prev.filter((b) => b?.type === 'tool_use').map((b) => b.id));
      for (let j = 0; j < blocks.length; j++) {
        const b = blocks[j];
        if (b?.type !== 'tool_result') continue;
        if (!uses.has(b.tool_use_id)) {
          return { error: err(`messages.${i}.content.${j}: unexpected \`tool_use_id\` found in \`tool_result\` ` +
            `blocks: ${b.tool_use_id}. Each \`tool_result\` block must have a corresponding \`tool_use\` block in ` +
            'the previous message.') };
        }
        promptText += toolResultText(b.content);
      }
      const t = contentText(blocks.filter((b) => b?.type === 'text'));
      if (t) lastUser = t;
    }
  }
  const last = msgs.at(-1);
  const toolResults = last?.role === 'user'
    ? blocksOf(last).filter((b) => b?.type === 'tool_result').map((b) => toolResultText(b.content)) : [];
  if (thinkingOn && toolResults.length && msgs.length >= 2) {
    const first = blocksOf(msgs.at(-2))[0];
    if (first && first.type !== 'thinking' && first.type !== 'redacted_thinking') {
      return { error: err(`messages.${msgs.length - 2}.content.0.type: Expected \`thinking\` or ` +
        `\`redacted_thinking\`, but found \`${first.type}\`. When \`thinking\` is enabled, a final \`assistant\` ` +
        'message must start with a thinking block (preceeding the lastmost set of `tool_use` and `tool_result` ' +
        'blocks). We recommend you include thinking blocks from previous turns. To avoid this requirement, ' +
        `disable \`thinking\`. ${THINKING_DOCS}`) };
    }
  }
  return { lastUser, promptText, toolResults, turns: msgs.length, thinkingOn };
}

function geminiResponseText(response) {
  if (response && typeof response === 'object' && !Array.isArray(response)) {
    const keys = Object.keys(response);
    if (keys.length === 1 && typeof response.output === 'string') return response.output;
    if (keys.length === 1 && typeof response.error === 'string') return response.error;
  }
  return JSON.stringify(response ?? {});
}

// Google's documented values that skip the thought signature check.
const GEMINI_SKIP_SIGNATURES = new Set(['skip_thought_signature_validator', 'context_engineering_is_the_way_to_go']);

function geminiConversation(body, model) {
  const contents = body.contents;
  const err = (message) => ({ status: 400, body: geminiError(400, message, 'INVALID_ARGUMENT') });
  let lastUser = '';
  let promptText = contentText(body.systemInstruction);
  // Gemini 3 and later require the signature on the first function call of every model turn
  // since the last user text (the current turn).
  const major = Number(/(?:^|\/)gemini-(\d+)/.exec(model || '')?.[1] || 0);
  if (major >= 3) {
    let start = 0;
    contents.forEach((c, i) => {
      if (c?.role !== 'model' && (c?.parts || []).some((p) => typeof p?.text === 'string')) start = i;
    });
    for (let i = start; i < contents.length; i++) {
      if (contents[i]?.role !== 'model') continue;
      const parts = contents[i].parts || [];
      const first = parts.findIndex((p) => p?.functionCall);
      if (first >= 0 && !parts.some((p) => p?.functionCall && p.thoughtSignature)) {
        return { error: err('Function call is missing a thought_signature in functionCall parts. This is required ' +
          'for tools to work correctly, and missing thought_signature may lead to degraded model performance. ' +
          `Additional data, function call \`default_api:${parts[first].functionCall.name}\` , position ${i + 1}. ` +
          'Please refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details.') };
      }
    }
  }
  for (let i = 0; i < contents.length; i++) {
    const c = contents[i];
    const parts = Array.isArray(c?.parts) ? c.parts : [];
    for (const p of parts) {
      if (p?.thoughtSignature !== undefined && !GEMINI_SKIP_SIGNATURES.has(p.thoughtSignature)) {
        const binding = geminiSignatureBinding(p.thoughtSignature);
        if (binding === null || (binding.startsWith('fc:') && p.functionCall?.name !== binding.slice(3))) {
          return { error: err('Corrupted thought signature.') };
        }
      }
      if (p?.functionCall) promptText += `${p.functionCall.name}${JSON.stringify(p.functionCall.args ?? {})}`;
      if (p?.functionResponse) promptText += JSON.stringify(p.functionResponse.response ?? {});
    }
    promptText += contentText(parts);
    if (c?.role === 'model') {
      const calls = parts.filter((p) => p?.functionCall).length;
      const next = contents[i + 1];
      if (calls && next) {
        const responses = (next.parts || []).filter((p) => p?.functionResponse).length;
        if (responses !== calls) {
          return { error: err('Please ensure that the number of function response parts is equal to the number of ' +
            'function call parts of the function call turn.') };
        }
      }
    } else {
      const t = contentText(parts.filter((p) => typeof p?.text === 'string' && !p.thought));
      if (t) lastUser = t;
    }
  }
  const last = contents.at(-1);
  const toolResults = last && last.role !== 'model'
    ? (last.parts || []).filter((p) => p?.functionResponse).map((p) => geminiResponseText(p.functionResponse.response))
    : [];
  return { lastUser, promptText, toolResults, turns: contents.length };
}
// ---- error bodies in each provider's shape -------------------------------------------

function openaiError(status, message, type, code = null, param = null) {
  return { error: { message, type, param, code } };
}

function defaultOpenAIFaultBody(status, model) {
  switch (status) {
    case 400:
      return openaiError(status, 'Invalid request (injected by mock).', 'invalid_request_error');
    case 401:
      return openaiError(status, 'Incorrect API key provided (injected by mock).',
        'invalid_request_error', 'invalid_api_key');
    case 403:
      return openaiError(status, 'You are not allowed to sample from this model.',
        'permission_denied', 'unsupported_country_region_territory');
    case 404:
      return openaiError(status,
        `The model \`${model || 'unknown'}\` does not exist or you do not have access to it.`,
        'invalid_request_error', 'model_not_found');
    case 429:
      return openaiError(status,
        `Rate limit reached for ${model || 'model'} in organization org-mock on requests per min (RPM): ` +
          'Limit 3, Used 3, Requested 1. Please try again in 20s.',
        'requests', 'rate_limit_exceeded');
    case 503:
      return openaiError(status, 'The engine is currently overloaded, please try again later.',
        'server_error');
    default:
      if (status >= 500) {
        return openaiError(status,
          'The server had an error while processing your request. Sorry about that!', 'server_error');
      }
      return openaiError(status, `Mock error ${status}.`, 'invalid_request_error');
  }
}

function anthropicError(type, message) {
  return { type: 'error', error: { type, message }, request_id: `req_${randomId(24)}` };
}

function defaultAnthropicFaultBody(status) {
  const type = {
    400: 'invalid_request_error', 401: 'authentication_error', 402: 'billing_error',
    403: 'permission_error', 404: 'not_found_error', 413: 'request_too_large',
    429: 'rate_limit_error', 500: 'api_error', 529: 'overloaded_error',
  }[status] || (status >= 500 ? 'api_error' : 'invalid_request_error');
  const message = {
    429: 'This request would exceed the rate limit for your organization. Please try again later.',
    529: 'Overloaded', 500: 'Internal server error',
  }[status] || `Mock error ${status}.`;
  return anthropicError(type, message);
}

function geminiError(code, message, status, details) {
  const e = { error: { code, message, status } };
  if (details) e.error.details = details;
  return e;
}

function defaultGeminiFaultBody(status) {
  switch (status) {
    case 400: return geminiError(400, 'Invalid request (injected by mock).', 'INVALID_ARGUMENT');
    case 403: return geminiError(403, 'Permission denied.', 'PERMISSION_DENIED');
    case 404: return geminiError(404, 'models/unknown is not found.', 'NOT_FOUND');
    case 429:
      return geminiError(429, 'You exceeded your current quota, please check your plan and billing details.',
        'RESOURCE_EXHAUSTED', [{ '@type': 'type.googleapis.com/google.rpc.RetryInfo', retryDelay: '2s' }]);
    case 503: return geminiError(503, 'The model is overloaded. Please try again later.', 'UNAVAILABLE');
    default:
      return geminiError(status, `Mock error ${status}.`, status >= 500 ? 'INTERNAL' : 'INVALID_ARGUMENT');
  }
}

// ---- the server ----------------------------------------------------------------------

export class MockProvider {
  constructor({ keys = null, models = DEFAULT_MODELS, verbose = false, record = true,
    maxRecords = 10000 } = {}) {
    this.initial = { keys, models };
    this.verbose = verbose;
    this.record = record;
    this.maxRecords = maxRecords;
    this.reset();
    this.server = http.createServer({ keepAlive: true, noDelay: true }, (req, res) => {
      this.handle(req, res).catch((err) => {
        if (this.verbose) console.error('mock: handler error', err);
        if (!res.headersSent) {
          this.json(res, 500, openaiError(500, `mock internal error: ${err.message}`, 'server_error'));
        } else {
          res.destroy();
        }
      });
    });
    // Long idle keep-alive so a pooling client never races our idle close in tests.
    this.server.keepAliveTimeout = 120_000;
    this.server.headersTimeout = 125_000;
    this.server.requestTimeout = 0;
    this.server.maxRequestsPerSocket = 0;
  }

  reset() {
    this.keys = this.initial.keys ? new Set(this.initial.keys) : null;
    this.models = [...this.initial.models];
    this.answerDefaults = {};
    this.requests = [];
    this.faults = [];
    this.seq = 0;
    this.stats = { requests: 0, in_flight: 0, max_in_flight: 0, by_status: {} };
  }

  listen(port = 0, host = '127.0.0.1') {
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => resolve(this.server.address().port));
    });
  }

  close() {
    return new Promise((resolve) => {
      this.server.close(() => resolve());
      this.server.closeAllConnections?.();
    });
  }

  json(res, status, obj, headers = {}) {
    const body = Buffer.from(typeof obj === 'string' ? obj : JSON.stringify(obj));
    res.writeHead(status, {
      'content-type': typeof obj === 'string' ? 'text/plain; charset=utf-8' : 'application/json',
      'content-length': body.length,
      ...headers,
    });
    res.end(body);
  }

  async readBody(req) {
    const chunks = [];
    let size = 0;
    for await (const c of req) {
      size += c.length;
      if (size > 256 * 1024 * 1024) throw new Error('body too large');
      chunks.push(c);
    }
    return Buffer.concat(chunks);
  }

  async handle(req, res) {
    const url = new URL(req.url, 'http://mock');
    const path = url.pathname;
    const raw = await this.readBody(req);
    if (path.startsWith('/_mock/')) return this.control(req, res, url, raw);

    this.stats.requests++;
    this.stats.in_flight++;
    this.stats.max_in_flight = Math.max(this.stats.max_in_flight, this.stats.in_flight);
    let done = false;
    const finish = () => {
      if (done) return;
      done = true;
      this.stats.in_flight--;
      this.stats.by_status[res.statusCode] = (this.stats.by_status[res.statusCode] || 0) + 1;
    };
    res.on('finish', finish);
    res.on('close', finish);

    let body = null;
    let bodyError = null;
    const text = raw.toString('utf8');
    if (raw.length) {
      try {
        body = JSON.parse(text);
      } catch (e) {
        bodyError = e;
      }
    }
    const key = extractKey(req, url);
    const route = classify(req.method, path);
    const model = route.model || (body && typeof body.model === 'string' ? body.model : null);
    const stream = route.stream || !!(body && body.stream === true);
    const entry = {
      seq: ++this.seq,
      time: Date.now(),
      method: req.method,
      path,
      query: Object.fromEntries(url.searchParams),
      headers: req.headers,
      body: bodyError ? null : body,
      raw: bodyError ? text : undefined,
      key,
      model,
      stream,
      format: route.format,
      fault: null,
      status: null,
      aborted: false,
    };
    if (this.record) {
      this.requests.push(entry);
      if (this.requests.length > this.maxRecords) this.requests.splice(0, this.requests.length - this.maxRecords);
    }
    res.on('finish', () => { entry.status = res.statusCode; });
    res.on('close', () => {
      if (!res.writableFinished) entry.aborted = true;
      if (entry.status == null) entry.status = res.headersSent ? res.statusCode : 0;
    });
    if (this.verbose) console.error(`mock: ${req.method} ${req.url} key=${key} model=${model} stream=${stream}`);

    const format = route.format;
    const fmtError = (status, openai, anthropic, gemini) =>
      format === 'anthropic' ? anthropic : format === 'gemini' ? gemini : openai;

    if (route.kind === 'unknown') {
      return this.json(res, 404, fmtError(404,
        openaiError(404, `Invalid URL (${req.method} ${path})`, 'invalid_request_error'),
        anthropicError('not_found_error', `Not Found`),
        geminiError(404, `Not found: ${path}`, 'NOT_FOUND')));
    }

    // Authentication, as each provider does it.
    if (this.keys && !(key && this.keys.has(key))) {
      if (format === 'anthropic') {
        return this.json(res, 401, anthropicError('authentication_error', 'invalid x-api-key'));
      }
      if (format === 'gemini') {
        return this.json(res, 400, geminiError(400, 'API key not valid. Please pass a valid API key.',
          'INVALID_ARGUMENT', [{ '@type': 'type.googleapis.com/google.rpc.ErrorInfo', reason: 'API_KEY_INVALID',
            domain: 'googleapis.com' }]));
      }
      if (!key) {
        return this.json(res, 401, openaiError(401,
          "You didn't provide an API key. You need to provide your API key in an Authorization header " +
            'using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with ' +
            'blank username) if you\'re accessing the API from your browser and are prompted for a ' +
            'username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.',
          'invalid_request_error'));
      }
      return this.json(res, 401, openaiError(401,
        `Incorrect API key provided: ${maskKey(key)}. You can find your API key at ` +
          'https://platform.openai.com/account/api-keys.',
        'invalid_request_error', 'invalid_api_key'));
    }

    const fault = this.takeFault({ key, model, path, stream, text });
    entry.fault = fault ? fault.desc : null;
    if (fault) {
      if (fault.delay_ms) await sleep(fault.delay_ms);
      if (fault.drop_connection) {
        req.socket.destroy();
        return;
      }
      if (fault.status) {
        const fb = fault.body !== undefined ? fault.body
          : fmtError(fault.status, defaultOpenAIFaultBody(fault.status, model),
            defaultAnthropicFaultBody(fault.status), defaultGeminiFaultBody(fault.status));
        return this.json(res, fault.status, fb, fault.headers || {});
      }
    }

    if (bodyError && route.kind !== 'models') {
      return this.json(res, 400, fmtError(400,
        openaiError(400, 'We could not parse the JSON body of your request. (HINT: This likely means ' +
          "you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what " +
          'was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact ' +
          'us through our help center at help.openai.com.)', 'invalid_request_error'),
        anthropicError('invalid_request_error', 'Invalid JSON in request body'),
        geminiError(400, 'Invalid JSON payload received.', 'INVALID_ARGUMENT')));
    }

    const opts = { ...this.answerDefaults, ...(fault || {}) };
    switch (route.kind) {
      case 'models': return this.listModels(res, route, fault);
      case 'chat': return this.chat(req, res, body || {}, opts, entry);
      case 'responses': return this.responses(req, res, body || {}, opts, entry);
      case 'anthropic': return this.anthropic(req, res, body || {}, opts, entry);
      case 'gemini': return this.gemini(req, res, url, body || {}, opts, entry, route);
      default:
        return this.json(res, 404, openaiError(404, `Invalid URL (${req.method} ${path})`, 'invalid_request_error'));
    }
  }

  takeFault(ctx) {
    for (let i = 0; i < this.faults.length; i++) {
      const f = this.faults[i];
      const m = f.match || {};
      if (m.key !== undefined && m.key !== ctx.key) continue;
      if (m.model !== undefined && m.model !== ctx.model) continue;
      if (m.path !== undefined && m.path !== ctx.path) continue;
      if (m.stream !== undefined && !!m.stream !== ctx.stream) continue;
      if (m.body_contains !== undefined && !(ctx.text || '').includes(m.body_contains)) continue;
      if (f.times !== -1) {
        f.times--;
        if (f.times <= 0) this.faults.splice(i, 1);
      }
      return f;
    }
    return null;
  }

  // ---- control -----------------------------------------------------------------------

  control(req, res, url, raw) {
    const path = url.pathname;
    let body = null;
    try {
      body = raw.length ? JSON.parse(raw.toString('utf8')) : null;
    } catch {
      return this.json(res, 400, { error: 'invalid JSON' });
    }
    const m = req.method;
    if (path === '/_mock/health') return this.json(res, 200, { ok: true });
    if (path === '/_mock/requests') {
      if (m === 'GET') {
        const since = Number(url.searchParams.get('since') || 0);
        return this.json(res, 200, since ? this.requests.filter((r) => r.seq > since) : this.requests);
      }
      if (m === 'DELETE') {
        this.requests = [];
        return this.json(res, 200, { ok: true });
      }
    }
    if (path === '/_mock/faults') {
      if (m === 'GET') return this.json(res, 200, this.faults);
      if (m === 'DELETE') {
        this.faults = [];
        return this.json(res, 200, { ok: true });
      }
      if (m === 'POST') {
        const list = Array.isArray(body) ? body : [body];
        for (const f of list) {
          if (!f || typeof f !== 'object') return this.json(res, 400, { error: 'a fault is an object' });
          const fault = { ...f, times: f.times === undefined ? 1 : Number(f.times) };
          if (fault.times === 0) continue;
          fault.desc = { ...f };
          this.faults.push(fault);
        }
        return this.json(res, 200, { ok: true, queued: this.faults.length });
      }
    }
    if (path === '/_mock/config' && m === 'POST') {
      if (body && 'keys' in body) this.keys = body.keys ? new Set(body.keys) : null;
      if (body && Array.isArray(body.models)) this.models = body.models;
      if (body && body.answer && typeof body.answer === 'object') this.answerDefaults = body.answer;
      return this.json(res, 200, { ok: true });
    }
    if (path === '/_mock/reset' && m === 'POST') {
      this.reset();
      return this.json(res, 200, { ok: true });
    }
    if (path === '/_mock/stats' && m === 'GET') return this.json(res, 200, this.stats);
    return this.json(res, 404, { error: `unknown control endpoint ${m} ${path}` });
  }

  // ---- OpenAI ------------------------------------------------------------------------

  listModels(res, route) {
    if (route.format === 'gemini') {
      return this.json(res, 200, {
        models: this.models.map((id) => ({
          name: `models/${id}`, version: '001', displayName: id, description: `Mock ${id}`,
          inputTokenLimit: 1048576, outputTokenLimit: 65536,
          supportedGenerationMethods: ['generateContent', 'countTokens'],
        })),
      });
    }
    if (route.format === 'anthropic') {
      const data = this.models.map((id) => ({
        type: 'model', id, display_name: id, created_at: '2025-01-01T00:00:00Z',
      }));
      return this.json(res, 200, { data, has_more: false, first_id: data[0]?.id ?? null,
        last_id: data.at(-1)?.id ?? null });
    }
    if (route.modelId) {
      if (!this.models.includes(route.modelId)) {
        return this.json(res, 404, openaiError(404, `The model '${route.modelId}' does not exist`,
          'invalid_request_error', 'model_not_found', 'model'));
      }
      return this.json(res, 200, { id: route.modelId, object: 'model', created: 1700000000, owned_by: 'system' });
    }
    return this.json(res, 200, {
      object: 'list',
      data: this.models.map((id) => ({ id, object: 'model', created: 1700000000, owned_by: 'system' })),
    });
  }

  rateHeaders(model) {
    return {
      'x-request-id': `req_${randomId(32)}`,
      'openai-organization': 'org-mock',
      'openai-processing-ms': '7',
      'openai-version': '2020-10-01',
      'x-ratelimit-limit-requests': '10000',
      'x-ratelimit-remaining-requests': '9999',
      'x-ratelimit-reset-requests': '6ms',
    };
  }

  // What a test needs to check the answer the client got: the answer as the mock produced it.
  static describeAnswer(answer, extra) {
    return {
      text: extra.text ?? null,
      reasoning: answer.thinking,
      tool_calls: extra.tool_calls || [],
      usage: extra.usage,
      ...extra.tokens,
    };
  }

  chat(req, res, body, opts, entry) {
    if (typeof body.model !== 'string' || !body.model) {
      return this.json(res, 400, openaiError(400, 'you must provide a model parameter', 'invalid_request_error', null, null));
    }
    if (!Array.isArray(body.messages)) {
      return this.json(res, 400, openaiError(400, "Missing required parameter: 'messages'.",
        'invalid_request_error', 'missing_required_parameter', 'messages'));
    }
    const conv = chatConversation(body);
    if (conv.error) {
      entry.refused = conv.error.body;
      return this.json(res, conv.error.status, conv.error.body);
    }
    const answer = scriptAnswer(conv, opts);
    const promptTokens = countTokens(conv.promptText) + 3 * body.messages.length + 3;
    const maxTokens = body.max_completion_tokens ?? body.max_tokens;
    const { parts, truncated } = answer.text === null ? { parts: [], truncated: false }
      : clampPieces(pieces(answer.text), maxTokens);
    const finish = answer.toolCalls.length ? 'tool_calls' : truncated ? 'length' : 'stop';
    const u = answerUsage(promptTokens, answer, parts.length, true, opts);
    const usage = {
      prompt_tokens: u.input,
      completion_tokens: u.output,
      total_tokens: u.input + u.output,
      prompt_tokens_details: { cached_tokens: u.cached, audio_tokens: 0 },
      completion_tokens_details: { reasoning_tokens: u.reasoning, audio_tokens: 0, accepted_prediction_tokens: 0,
        rejected_prediction_tokens: 0 },
      ...(opts.usage || {}),
    };
    usage.total_tokens = opts.usage?.total_tokens ?? usage.prompt_tokens + usage.completion_tokens;
    const id = `chatcmpl-${randomId(29)}`;
    const created = Math.floor(Date.now() / 1000);
    const headers = { ...this.rateHeaders(body.model), ...(opts.headers || {}) };
    const toolCalls = answer.toolCalls.map((c) => ({ id: derivedId('call_', c.seed, 24, 'b62'), type: 'function',
      function: { name: c.name, arguments: c.json } }));
    const text = answer.text === null ? null : parts.join('');
    entry.response_request_id = headers['x-request-id'];
    entry.reply = text ?? '';
    entry.usage = usage;
    entry.answer = MockProvider.describeAnswer(answer, { text, usage: u,
      tool_calls: toolCalls.map((c, i) => ({ id: c.id, name: c.function.name, arguments: answer.toolCalls[i].args })) });

    if (!body.stream) {
      const message = { role: 'assistant', content: text };
      if (answer.thinking) message.reasoning_content = answer.thinking;
      if (toolCalls.length) message.tool_calls = toolCalls;
      message.refusal = null;
      message.annotations = [];
      return this.json(res, 200, {
        id,
        object: 'chat.completion',
        created,
        model: body.model,
        choices: [{ index: 0, message, logprobs: null, finish_reason: finish }],
        usage,
        service_tier: 'default',
        system_fingerprint: FINGERPRINT,
      }, headers);
    }

    const includeUsage = !!body.stream_options?.include_usage;
    const chunk = (choices, extra = {}) => {
      const c = { id, object: 'chat.completion.chunk', created, model: body.model, service_tier: 'default',
        system_fingerprint: FINGERPRINT, choices };
      if (includeUsage) c.usage = null;
      return Object.assign(c, extra);
    };
    const delta = (d) => chunk([{ index: 0, delta: d, logprobs: null, finish_reason: null }]);
    const events = [delta({ role: 'assistant', content: text === null ? null : '', refusal: null })];
    if (answer.thinking) for (const p of pieces(answer.thinking)) events.push(delta({ reasoning_content: p }));
    for (const p of parts) events.push(delta({ content: p }));
    toolCalls.forEach((c, index) => {
      events.push(delta({ tool_calls: [{ index, id: c.id, type: 'function',
        function: { name: c.function.name, arguments: '' } }] }));
      for (const a of argumentPieces(c.function.arguments)) {
        events.push(delta({ tool_calls: [{ index, function: { arguments: a } }] }));
      }
    });
    events.push(chunk([{ index: 0, delta: {}, logprobs: null, finish_reason: finish }]));
    if (includeUsage) events.push(chunk([], { usage }));
    const lines = events.map((e) => `data: ${JSON.stringify(e)}\n\n`);
    lines.push('data: [DONE]\n\n');
    return this.sse(res, headers, lines, opts);
  }

  // Writes SSE events one by one, honouring chunk_delay_ms and cut_after_chunks.
  async sse(res, headers, events, opts, contentType = 'text/event-stream; charset=utf-8') {
    res.writeHead(200, { 'content-type': contentType, 'cache-control': 'no-cache', ...headers });
    let closed = false;
    res.on('close', () => { closed = true; });
    const delay = opts.chunk_delay_ms || 0;
    const cut = opts.cut_after_chunks;
    for (let i = 0; i < events.length; i++) {
      if (closed) return;
      if (cut !== undefined && i >= cut) {
        // Let what was written reach the wire, then break the connection mid-stream.
        await new Promise((r) => setImmediate(r));
        res.socket?.destroy();
        return;
      }
      if (delay && i > 0) {
        await sleep(delay);
        if (closed) return;
      }
      const ok = res.write(events[i]);
      if (!ok) await new Promise((r) => { res.once('drain', r); res.once('close', r); });
    }
    if (!closed) res.end();
  }

  // ---- OpenAI Responses --------------------------------------------------------------

  responses(req, res, body, opts, entry) {
    if (typeof body.model !== 'string' || !body.model) {
      return this.json(res, 400, openaiError(400, "Missing required parameter: 'model'.",
        'invalid_request_error', 'missing_required_parameter', 'model'));
    }
    const conv = responsesConversation(body);
    if (conv.error) {
      entry.refused = conv.error.body;
      return this.json(res, conv.error.status, conv.error.body);
    }
    const answer = scriptAnswer(conv, opts);
    const { parts, truncated } = answer.text === null ? { parts: [], truncated: false }
      : clampPieces(pieces(answer.text), body.max_output_tokens);
    const text = answer.text === null ? null : parts.join('');
    const inputTokens = countTokens(conv.promptText) + 3;
    const u = answerUsage(inputTokens, answer, parts.length, true, opts);
    const usage = {
      input_tokens: u.input,
      input_tokens_details: { cached_tokens: u.cached },
      output_tokens: u.output,
      output_tokens_details: { reasoning_tokens: u.reasoning },
      total_tokens: u.input + u.output,
      ...(opts.usage || {}),
    };
    const created = Math.floor(Date.now() / 1000);
    const respId = `resp_${randomId(48)}`;
    const msgId = `msg_${randomId(48)}`;
    const headers = { ...this.rateHeaders(body.model), ...(opts.headers || {}) };

    // The output items: reasoning, message, function calls.
    const items = [];
    let reasoningItem = null;
    if (answer.thinking) {
      const rsId = derivedId('rs_', `${conv.turns}|${answer.thinking}|rs`, 48);
      reasoningItem = { id: rsId, type: 'reasoning', summary: [] };
      if (Array.isArray(body.include) && body.include.includes('reasoning.encrypted_content')) {
        reasoningItem.encrypted_content = openaiEncryptedContent(rsId, answer.thinking);
      }
      if (body.reasoning?.summary) reasoningItem.summary = [{ type: 'summary_text', text: answer.thinking }];
      items.push(reasoningItem);
    }
    const message = (status, t) => ({ id: msgId, type: 'message', status, role: 'assistant',
      content: t === null ? [] : [{ type: 'output_text', annotations: [], logprobs: [], text: t }] });
    if (text !== null) items.push(message('completed', text));
    const calls = answer.toolCalls.map((c) => ({ id: derivedId('fc_', `${c.seed}|fc`, 48), type: 'function_call',
      status: 'completed', arguments: c.json, call_id: derivedId('call_', c.seed, 24, 'b62'), name: c.name }));
    items.push(...calls);

    entry.response_request_id = headers['x-request-id'];
    entry.reply = text ?? '';
    entry.usage = usage;
    entry.answer = MockProvider.describeAnswer(answer, { text, usage: u,
      tool_calls: calls.map((c, i) => ({ id: c.call_id, name: c.name, arguments: answer.toolCalls[i].args })),
      tokens: reasoningItem ? { reasoning_summary: reasoningItem.summary.length > 0,
        encrypted_content: reasoningItem.encrypted_content ?? null, reasoning_item_id: reasoningItem.id } : {} });

    const base = (status, output, usg) => ({
      id: respId, object: 'response', created_at: created, status, background: false, error: null,
      incomplete_details: truncated && status !== 'in_progress' ? { reason: 'max_output_tokens' } : null,
      instructions: body.instructions ?? null, max_output_tokens: body.max_output_tokens ?? null,
      model: body.model, output, parallel_tool_calls: true, previous_response_id: body.previous_response_id ?? null,
      reasoning: { effort: body.reasoning?.effort ?? null, summary: body.reasoning?.summary ?? null },
      service_tier: 'default', store: body.store ?? true,
      temperature: body.temperature ?? 1.0, text: { format: { type: 'text' } }, tool_choice: body.tool_choice ?? 'auto',
      tools: body.tools ?? [], top_p: body.top_p ?? 1.0, truncation: 'disabled', usage: usg, user: null, metadata: {},
    });
    const finalStatus = truncated ? 'incomplete' : 'completed';
    if (!body.stream) return this.json(res, 200, base(finalStatus, items, usage), headers);

    let seq = 0;
    const ev = (type, data) => `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: seq++, ...data })}\n\n`;
    const events = [
      ev('response.created', { response: base('in_progress', [], null) }),
      ev('response.in_progress', { response: base('in_progress', [], null) }),
    ];
    items.forEach((item, oi) => {
      if (item.type === 'reasoning') {
        events.push(ev('response.output_item.added', { output_index: oi, item: { id: item.id, type: 'reasoning',
          summary: [] } }));
        if (item.summary.length) {
          const ids = { item_id: item.id, output_index: oi, summary_index: 0 };
          events.push(ev('response.reasoning_summary_part.added', { ...ids, part: { type: 'summary_text', text: '' } }));
          for (const p of pieces(answer.thinking)) {
            events.push(ev('response.reasoning_summary_text.delta', { ...ids, delta: p }));
          }
          events.push(ev('response.reasoning_summary_text.done', { ...ids, text: answer.thinking }));
          events.push(ev('response.reasoning_summary_part.done', { ...ids,
            part: { type: 'summary_text', text: answer.thinking } }));
        }
        events.push(ev('response.output_item.done', { output_index: oi, item }));
      } else if (item.type === 'message') {
        events.push(ev('response.output_item.added', { output_index: oi, item: message('in_progress', null) }));
        events.push(ev('response.content_part.added', { item_id: msgId, output_index: oi, content_index: 0,
          part: { type: 'output_text', annotations: [], logprobs: [], text: '' } }));
        for (const p of parts) {
          events.push(ev('response.output_text.delta', { item_id: msgId, output_index: oi, content_index: 0, delta: p,
            logprobs: [] }));
        }
        events.push(ev('response.output_text.done', { item_id: msgId, output_index: oi, content_index: 0, text,
          logprobs: [] }));
        events.push(ev('response.content_part.done', { item_id: msgId, output_index: oi, content_index: 0,
          part: { type: 'output_text', annotations: [], logprobs: [], text } }));
        events.push(ev('response.output_item.done', { output_index: oi, item }));
      } else {
        events.push(ev('response.output_item.added', { output_index: oi,
          item: { ...item, status: 'in_progress', arguments: '' } }));
        for (const a of argumentPieces(item.arguments)) {
          events.push(ev('response.function_call_arguments.delta', { item_id: item.id, output_index: oi, delta: a }));
        }
        events.push(ev('response.function_call_arguments.done', { item_id: item.id, output_index: oi,
          name: item.name, arguments: item.arguments }));
        events.push(ev('response.output_item.done', { output_index: oi, item }));
      }
    });
    events.push(ev(truncated ? 'response.incomplete' : 'response.completed',
      { response: base(finalStatus, items, usage) }));
    return this.sse(res, headers, events, opts);
  }

  // ---- Anthropic ---------------------------------------------------------------------

  anthropic(req, res, body, opts, entry) {
    if (!req.headers['anthropic-version']) {
      return this.json(res, 400, anthropicError('invalid_request_error', 'anthropic-version: header is required'));
    }
    if (typeof body.model !== 'string' || !body.model) {
      return this.json(res, 400, anthropicError('invalid_request_error', 'model: Field required'));
    }
    if (!Number.isInteger(body.max_tokens)) {
      return this.json(res, 400, anthropicError('invalid_request_error', 'max_tokens: Field required'));
    }
    if (!Array.isArray(body.messages)) {
      return this.json(res, 400, anthropicError('invalid_request_error', 'messages: Field required'));
    }
    const conv = anthropicConversation(body);
    if (conv.error) {
      entry.refused = conv.error.body;
      return this.json(res, conv.error.status, conv.error.body);
    }
    const answer = scriptAnswer(conv, opts);
    const thinking = conv.thinkingOn ? answer.thinking : null;
    const { parts, truncated } = answer.text === null ? { parts: [], truncated: false }
      : clampPieces(pieces(answer.text), body.max_tokens);
    const text = answer.text === null ? null : parts.join('');
    const stopReason = answer.toolCalls.length ? 'tool_use' : truncated ? 'max_tokens' : 'end_turn';
    const inputTokens = countTokens(conv.promptText) + 4 * body.messages.length;
    const u = answerUsage(inputTokens, answer, parts.length, !!thinking, opts);
    const usage = {
      input_tokens: u.input - u.cached, cache_creation_input_tokens: 0, cache_read_input_tokens: u.cached,
      output_tokens: u.output, service_tier: 'standard', ...(opts.usage || {}),
    };
    const id = `msg_${randomId(24)}`;
    const headers = { 'request-id': `req_${randomId(24)}`, 'anthropic-organization-id': 'mock-org',
      ...(opts.headers || {}) };
    const content = [];
    if (thinking) content.push({ type: 'thinking', thinking, signature: anthropicSignature(thinking) });
    if (text !== null) content.push({ type: 'text', text });
    for (const c of answer.toolCalls) {
      content.push({ type: 'tool_use', id: derivedId('toolu_01', c.seed, 22, 'b62'), name: c.name, input: c.args });
    }
    entry.response_request_id = headers['request-id'];
    entry.reply = text ?? '';
    entry.usage = usage;
    entry.answer = MockProvider.describeAnswer({ ...answer, thinking }, { text, usage: u,
      tool_calls: content.filter((b) => b.type === 'tool_use').map((b) => ({ id: b.id, name: b.name, arguments: b.input })),
      tokens: thinking ? { signature: content[0].signature } : {} });
    if (!body.stream) {
      return this.json(res, 200, { id, type: 'message', role: 'assistant', model: body.model, content,
        stop_reason: stopReason, stop_sequence: null, usage }, headers);
    }
    const ev = (type, data) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
    const events = [
      ev('message_start', { message: { id, type: 'message', role: 'assistant', model: body.model, content: [],
        stop_reason: null, stop_sequence: null, usage: { ...usage, output_tokens: 1 } } }),
    ];
    content.forEach((b, index) => {
      const delta = (d) => events.push(ev('content_block_delta', { index, delta: d }));
      if (b.type === 'thinking') {
        events.push(ev('content_block_start', { index, content_block: { type: 'thinking', thinking: '', signature: '' } }));
      } else if (b.type === 'text') {
        events.push(ev('content_block_start', { index, content_block: { type: 'text', text: '' } }));
      } else {
        events.push(ev('content_block_start', { index, content_block: { type: 'tool_use', id: b.id, name: b.name,
          input: {} } }));
      }
      if (index === 0) events.push(ev('ping', {}));
      if (b.type === 'thinking') {
        for (const p of pieces(b.thinking)) delta({ type: 'thinking_delta', thinking: p });
        delta({ type: 'signature_delta', signature: b.signature });
      } else if (b.type === 'text') {
        for (const p of parts) delta({ type: 'text_delta', text: p });
      } else {
        delta({ type: 'input_json_delta', partial_json: '' });
        for (const a of argumentPieces(JSON.stringify(b.input))) delta({ type: 'input_json_delta', partial_json: a });
      }
      events.push(ev('content_block_stop', { index }));
    });
    events.push(ev('message_delta', { delta: { stop_reason: stopReason, stop_sequence: null },
      usage: { output_tokens: usage.output_tokens } }));
    events.push(ev('message_stop', {}));
    return this.sse(res, headers, events, opts, 'text/event-stream; charset=utf-8');
  }

  // ---- Gemini ------------------------------------------------------------------------

  gemini(req, res, url, body, opts, entry, route) {
    const contents = Array.isArray(body.contents) ? body.contents : null;
    if (!contents) {
      return this.json(res, 400, geminiError(400, '* GenerateContentRequest.contents: contents is not specified\n',
        'INVALID_ARGUMENT'));
    }
    const conv = geminiConversation(body, route.model);
    if (conv.error) {
      entry.refused = conv.error.body;
      return this.json(res, conv.error.status, conv.error.body);
    }
    const answer = scriptAnswer(conv, opts);
    const includeThoughts = body.generationConfig?.thinkingConfig?.includeThoughts === true;
    const { parts, truncated } = answer.text === null ? { parts: [], truncated: false }
      : clampPieces(pieces(answer.text), body.generationConfig?.maxOutputTokens);
    const text = answer.text === null ? null : parts.join('');
    const promptTokens = countTokens(conv.promptText) + 1;
    const u = answerUsage(promptTokens, answer, parts.length, true, opts);
    const usage = {
      promptTokenCount: u.input, candidatesTokenCount: u.text + u.tools, totalTokenCount: u.input + u.output,
      ...(u.cached ? { cachedContentTokenCount: u.cached } : {}),
      promptTokensDetails: [{ modality: 'TEXT', tokenCount: u.input }],
      ...(u.cached ? { cacheTokensDetails: [{ modality: 'TEXT', tokenCount: u.cached }] } : {}),
      ...(u.reasoning ? { thoughtsTokenCount: u.reasoning } : {}),
      ...(opts.usage || {}),
    };
    const responseId = randomId(22);
    const finishReason = truncated ? 'MAX_TOKENS' : 'STOP';
    const callParts = answer.toolCalls.map((c) => ({ functionCall: { name: c.name, args: c.args } }));
    // The signature goes on the first function call, else on the last text part.
    let signature = null;
    if (answer.thinking) {
      signature = geminiSignature(callParts.length ? `fc:${callParts[0].functionCall.name}` : 'text');
      if (callParts.length) callParts[0].thoughtSignature = signature;
    }
    entry.reply = text ?? '';
    entry.usage = usage;
    entry.answer = MockProvider.describeAnswer(answer, { text, usage: u,
      tool_calls: callParts.map((p) => ({ id: null, name: p.functionCall.name, arguments: p.functionCall.args })),
      tokens: answer.thinking ? { thought_signature: signature, thoughts_shown: includeThoughts } : {} });
    const headers = { 'x-goog-request-id': randomId(16), ...(opts.headers || {}) };
    if (!route.stream) {
      const out = [];
      if (answer.thinking && includeThoughts) out.push({ text: answer.thinking, thought: true });
      if (text !== null) out.push(signature && !callParts.length ? { text, thoughtSignature: signature } : { text });
      out.push(...callParts);
      return this.json(res, 200, {
        candidates: [{ content: { parts: out, role: 'model' }, finishReason, index: 0 }],
        usageMetadata: usage, modelVersion: route.model, responseId,
      }, headers);
    }
    const chunkParts = [];
    if (answer.thinking && includeThoughts) {
      for (const p of pieces(answer.thinking)) chunkParts.push([{ text: p, thought: true }]);
    }
    parts.forEach((p, i) => {
      const last = i === parts.length - 1;
      chunkParts.push([last && signature && !callParts.length ? { text: p, thoughtSignature: signature } : { text: p }]);
    });
    if (callParts.length) chunkParts.push(callParts);
    const chunks = chunkParts.map((ps, i) => {
      const last = i === chunkParts.length - 1;
      const cand = { content: { parts: ps, role: 'model' }, index: 0 };
      if (last) cand.finishReason = finishReason;
      return {
        candidates: [cand],
        usageMetadata: last ? usage : { promptTokenCount: u.input, totalTokenCount: u.input,
          promptTokensDetails: usage.promptTokensDetails },
        modelVersion: route.model, responseId,
      };
    });
    if (url.searchParams.get('alt') === 'sse') {
      return this.sse(res, headers, chunks.map((c) => `data: ${JSON.stringify(c)}\r\n\r\n`), opts);
    }
    // Without alt=sse Google streams one JSON array, element by element.
    const pieces2 = chunks.map((c, i) => (i === 0 ? '[' : ',\r\n') + JSON.stringify(c));
    pieces2.push(']');
    return this.sse(res, headers, pieces2, opts, 'application/json; charset=UTF-8');
  }
}

function maskKey(key) {
  return key.length <= 8 ? '*'.repeat(key.length) : `${key.slice(0, 3)}*****${key.slice(-4)}`;
}

function extractKey(req, url) {
  const auth = req.headers.authorization;
  if (auth && /^bearer\s+/i.test(auth)) return auth.replace(/^bearer\s+/i, '').trim();
  return req.headers['x-api-key'] || req.headers['x-goog-api-key'] || url.searchParams.get('key') || null;
}

function classify(method, path) {
  if (method === 'POST' && path === '/v1/chat/completions') return { kind: 'chat', format: 'openai' };
  if (method === 'POST' && path === '/v1/responses') return { kind: 'responses', format: 'openai' };
  if (method === 'POST' && path === '/v1/messages') return { kind: 'anthropic', format: 'anthropic' };
  if (method === 'GET' && path === '/v1/models') return { kind: 'models', format: 'openai' };
  if (method === 'GET' && path.startsWith('/v1/models/')) {
    return { kind: 'models', format: 'openai', modelId: decodeURIComponent(path.slice('/v1/models/'.length)) };
  }
  if (method === 'GET' && path === '/v1beta/models') return { kind: 'models', format: 'gemini' };
  const g = /^\/v1(?:beta|alpha)?\/models\/([^/:]+):(generateContent|streamGenerateContent)$/.exec(path);
  if (g && method === 'POST') {
    return { kind: 'gemini', format: 'gemini', model: decodeURIComponent(g[1]), stream: g[2] === 'streamGenerateContent' };
  }
  if (path.startsWith('/v1beta/') || path.startsWith('/v1alpha/')) return { kind: 'unknown', format: 'gemini' };
  return { kind: 'unknown', format: 'openai' };
}

function parseArgs(argv) {
  const o = { port: 0, host: '127.0.0.1', keys: null, verbose: false, record: true, maxRecords: 10000 };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const next = () => argv[++i];
    if (a === '--port') o.port = Number(next());
    else if (a === '--host') o.host = next();
    else if (a === '--keys') o.keys = next().split(',').map((s) => s.trim()).filter(Boolean);
    else if (a === '--verbose' || a === '-v') o.verbose = true;
    else if (a === '--no-record') o.record = false;
    else if (a === '--max-records') o.maxRecords = Number(next());
    else if (a === '--help' || a === '-h') {
      console.log('usage: node mock-provider.mjs [--port N] [--host H] [--keys k1,k2] [--verbose] [--no-record] [--max-records N]');
      process.exit(0);
    } else {
      console.error(`mock-provider: unknown argument ${a}`);
      process.exit(2);
    }
  }
  return o;
}

async function main() {
  const o = parseArgs(process.argv.slice(2));
  const mock = new MockProvider({ keys: o.keys, verbose: o.verbose, record: o.record, maxRecords: o.maxRecords });
  const port = await mock.listen(o.port, o.host);
  process.stdout.write(`${JSON.stringify({ listening: port })}\n`);
  const stop = () => mock.close().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (import.meta.url === pathToFileURL(process.argv[1] || '').href) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
