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
// The answer text is deterministic: "echo: <text of the last user message>".
//
// Control endpoints (never recorded)
//   GET    /_mock/requests[?since=SEQ]  recorded requests, oldest first
//   DELETE /_mock/requests              forget them
//   POST   /_mock/faults                queue a fault (object, or an array of them)
//   GET    /_mock/faults                the queue
//   DELETE /_mock/faults                clear the queue
//   POST   /_mock/config                {"keys":[..]|null, "models":[..]}
//   POST   /_mock/reset                 requests, faults and config back to the start
//   GET    /_mock/stats                 counters (requests, in flight, max in flight)
//   GET    /_mock/health                200
//
// A fault: {"match": {"key", "model", "path", "stream"} (all optional; all given must
// equal), "status": 429, "headers": {"Retry-After": "2"}, "body": {...} | "text",
// "times": 1 (-1 = forever), "delay_ms": N (before the answer starts),
// "chunk_delay_ms": N (between stream events), "cut_after_chunks": N (stream: send N
// events, then destroy the socket), "drop_connection": true (destroy without answering),
// "reply": "text" (answer text), "usage": {...} (token counts to report)}.
// A fault without "status" changes how the normal answer is given. The first queued fault
// that matches a request applies to it.

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

function geminiError(code, status, message, details) {
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

    const fault = this.takeFault({ key, model, path, stream });
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

    const opts = fault || {};
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

  conversation(body, opts) {
    const messages = Array.isArray(body.messages) ? body.messages : [];
    let lastUser = '';
    let promptText = '';
    for (const msg of messages) {
      const t = contentText(msg?.content);
      promptText += t;
      if (msg?.role === 'user') lastUser = t;
    }
    const reply = typeof opts.reply === 'string' ? opts.reply : `echo: ${lastUser}`;
    return { reply, promptTokens: countTokens(promptText) + 3 * messages.length + 3 };
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

  chat(req, res, body, opts, entry) {
    if (typeof body.model !== 'string' || !body.model) {
      return this.json(res, 400, openaiError(400, 'you must provide a model parameter', 'invalid_request_error', null, null));
    }
    if (!Array.isArray(body.messages)) {
      return this.json(res, 400, openaiError(400, "Missing required parameter: 'messages'.",
        'invalid_request_error', 'missing_required_parameter', 'messages'));
    }
    const { reply, promptTokens } = this.conversation(body, opts);
    const maxTokens = body.max_completion_tokens ?? body.max_tokens;
    const { parts, truncated } = clampPieces(pieces(reply), maxTokens);
    const finish = truncated ? 'length' : 'stop';
    const usage = {
      prompt_tokens: promptTokens,
      completion_tokens: parts.length,
      total_tokens: promptTokens + parts.length,
      prompt_tokens_details: { cached_tokens: 0, audio_tokens: 0 },
      completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 0, accepted_prediction_tokens: 0,
        rejected_prediction_tokens: 0 },
      ...(opts.usage || {}),
    };
    usage.total_tokens = opts.usage?.total_tokens ?? usage.prompt_tokens + usage.completion_tokens;
    const id = `chatcmpl-${randomId(29)}`;
    const created = Math.floor(Date.now() / 1000);
    const headers = this.rateHeaders(body.model);
    entry.response_request_id = headers['x-request-id'];
    entry.reply = parts.join('');
    entry.usage = usage;

    if (!body.stream) {
      return this.json(res, 200, {
        id,
        object: 'chat.completion',
        created,
        model: body.model,
        choices: [{
          index: 0,
          message: { role: 'assistant', content: parts.join(''), refusal: null, annotations: [] },
          logprobs: null,
          finish_reason: finish,
        }],
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
    const events = [chunk([{ index: 0, delta: { role: 'assistant', content: '', refusal: null }, logprobs: null,
      finish_reason: null }])];
    for (const p of parts) events.push(chunk([{ index: 0, delta: { content: p }, logprobs: null, finish_reason: null }]));
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
    let lastUser = '';
    let promptText = typeof body.instructions === 'string' ? body.instructions : '';
    if (typeof body.input === 'string') {
      lastUser = body.input;
      promptText += body.input;
    } else if (Array.isArray(body.input)) {
      for (const item of body.input) {
        if (item?.type && item.type !== 'message') continue;
        const t = contentText(item?.content);
        promptText += t;
        if (item?.role === 'user') lastUser = t;
      }
    }
    const reply = typeof opts.reply === 'string' ? opts.reply : `echo: ${lastUser}`;
    const { parts, truncated } = clampPieces(pieces(reply), body.max_output_tokens);
    const text = parts.join('');
    const inputTokens = countTokens(promptText) + 3;
    const usage = {
      input_tokens: inputTokens,
      input_tokens_details: { cached_tokens: 0 },
      output_tokens: parts.length,
      output_tokens_details: { reasoning_tokens: 0 },
      total_tokens: inputTokens + parts.length,
      ...(opts.usage || {}),
    };
    const created = Math.floor(Date.now() / 1000);
    const respId = `resp_${randomId(48)}`;
    const msgId = `msg_${randomId(48)}`;
    const headers = this.rateHeaders(body.model);
    entry.response_request_id = headers['x-request-id'];
    entry.reply = text;
    entry.usage = usage;
    const base = (status, output, u) => ({
      id: respId, object: 'response', created_at: created, status, background: false, error: null,
      incomplete_details: truncated && status !== 'in_progress' ? { reason: 'max_output_tokens' } : null,
      instructions: body.instructions ?? null, max_output_tokens: body.max_output_tokens ?? null,
      model: body.model, output, parallel_tool_calls: true, previous_response_id: body.previous_response_id ?? null,
      reasoning: { effort: null, summary: null }, service_tier: 'default', store: body.store ?? true,
      temperature: body.temperature ?? 1.0, text: { format: { type: 'text' } }, tool_choice: 'auto',
      tools: body.tools ?? [], top_p: body.top_p ?? 1.0, truncation: 'disabled', usage: u, user: null, metadata: {},
    });
    const finalStatus = truncated ? 'incomplete' : 'completed';
    const message = (status, t) => ({ id: msgId, type: 'message', status, role: 'assistant',
      content: t === null ? [] : [{ type: 'output_text', annotations: [], logprobs: [], text: t }] });
    if (!body.stream) return this.json(res, 200, base(finalStatus, [message('completed', text)], usage), headers);

    let seq = 0;
    const ev = (type, data) => `event: ${type}\ndata: ${JSON.stringify({ type, sequence_number: seq++, ...data })}\n\n`;
    const events = [
      ev('response.created', { response: base('in_progress', [], null) }),
      ev('response.in_progress', { response: base('in_progress', [], null) }),
      ev('response.output_item.added', { output_index: 0, item: message('in_progress', null) }),
      ev('response.content_part.added', { item_id: msgId, output_index: 0, content_index: 0,
        part: { type: 'output_text', annotations: [], logprobs: [], text: '' } }),
    ];
    for (const p of parts) {
      events.push(ev('response.output_text.delta', { item_id: msgId, output_index: 0, content_index: 0, delta: p,
        logprobs: [] }));
    }
    events.push(ev('response.output_text.done', { item_id: msgId, output_index: 0, content_index: 0, text,
      logprobs: [] }));
    events.push(ev('response.content_part.done', { item_id: msgId, output_index: 0, content_index: 0,
      part: { type: 'output_text', annotations: [], logprobs: [], text } }));
    events.push(ev('response.output_item.done', { output_index: 0, item: message('completed', text) }));
    events.push(ev(truncated ? 'response.incomplete' : 'response.completed',
      { response: base(finalStatus, [message('completed', text)], usage) }));
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
    let lastUser = '';
    let promptText = contentText(body.system);
    for (const m of body.messages) {
      const t = contentText(m?.content);
      promptText += t;
      if (m?.role === 'user') lastUser = t;
    }
    const reply = typeof opts.reply === 'string' ? opts.reply : `echo: ${lastUser}`;
    const { parts, truncated } = clampPieces(pieces(reply), body.max_tokens);
    const text = parts.join('');
    const stopReason = truncated ? 'max_tokens' : 'end_turn';
    const inputTokens = countTokens(promptText) + 4 * body.messages.length;
    const usage = {
      input_tokens: inputTokens, cache_creation_input_tokens: 0, cache_read_input_tokens: 0,
      output_tokens: parts.length, service_tier: 'standard', ...(opts.usage || {}),
    };
    const id = `msg_${randomId(24)}`;
    const headers = { 'request-id': `req_${randomId(24)}`, 'anthropic-organization-id': 'mock-org' };
    entry.response_request_id = headers['request-id'];
    entry.reply = text;
    entry.usage = usage;
    if (!body.stream) {
      return this.json(res, 200, { id, type: 'message', role: 'assistant', model: body.model,
        content: [{ type: 'text', text }], stop_reason: stopReason, stop_sequence: null, usage }, headers);
    }
    const ev = (type, data) => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
    const events = [
      ev('message_start', { message: { id, type: 'message', role: 'assistant', model: body.model, content: [],
        stop_reason: null, stop_sequence: null, usage: { ...usage, output_tokens: 1 } } }),
      ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }),
      ev('ping', {}),
    ];
    for (const p of parts) events.push(ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: p } }));
    events.push(ev('content_block_stop', { index: 0 }));
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
    let lastUser = '';
    let promptText = contentText(body.systemInstruction);
    for (const c of contents) {
      const t = contentText(c?.parts);
      promptText += t;
      if (!c?.role || c.role === 'user') lastUser = t;
    }
    const reply = typeof opts.reply === 'string' ? opts.reply : `echo: ${lastUser}`;
    const { parts, truncated } = clampPieces(pieces(reply), body.generationConfig?.maxOutputTokens);
    const text = parts.join('');
    const promptTokens = countTokens(promptText) + 1;
    const usage = {
      promptTokenCount: promptTokens, candidatesTokenCount: parts.length,
      totalTokenCount: promptTokens + parts.length,
      promptTokensDetails: [{ modality: 'TEXT', tokenCount: promptTokens }], ...(opts.usage || {}),
    };
    const responseId = randomId(22);
    const finishReason = truncated ? 'MAX_TOKENS' : 'STOP';
    entry.reply = text;
    entry.usage = usage;
    const headers = { 'x-goog-request-id': randomId(16) };
    if (!route.stream) {
      return this.json(res, 200, {
        candidates: [{ content: { parts: [{ text }], role: 'model' }, finishReason, index: 0 }],
        usageMetadata: usage, modelVersion: route.model, responseId,
      }, headers);
    }
    const chunks = parts.map((p, i) => {
      const last = i === parts.length - 1;
      const cand = { content: { parts: [{ text: p }], role: 'model' }, index: 0 };
      if (last) cand.finishReason = finishReason;
      return {
        candidates: [cand],
        usageMetadata: last ? usage : { promptTokenCount: promptTokens, totalTokenCount: promptTokens,
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
