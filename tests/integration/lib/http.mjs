// Small HTTP helpers for talking to the gateway with plain fetch.

import assert from 'node:assert/strict';
import http from 'node:http';

// fetch with a timeout; returns {status, headers, text, json (or undefined)}.
export async function request(url, { method = 'GET', headers = {}, body, timeoutMs = 15000 } = {}) {
  const r = await fetch(url, {
    method,
    headers,
    body: body === undefined ? undefined : typeof body === 'string' || body instanceof Uint8Array ? body
      : JSON.stringify(body),
    signal: AbortSignal.timeout(timeoutMs),
  });
  const text = await r.text();
  let json;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: r.status, headers: r.headers, text, json };
}

// A raw request through node:http (for bodies fetch would refuse or when the server may
// answer before reading everything). Resolves {status, headers, text, json} or rejects.
// `body` may be an object (sent as JSON); `localAddress` picks the loopback source address
// (127.0.0.x), e.g. to test per-client-IP rules.
export function rawRequest(url, { method = 'POST', headers = {}, body = '', timeoutMs = 15000, localAddress } = {}) {
  const data = typeof body === 'string' ? body : JSON.stringify(body);
  return new Promise((resolve, reject) => {
    const req = http.request(url, { method, localAddress, headers: { 'content-length': Buffer.byteLength(data), ...headers },
      timeout: timeoutMs, agent: false }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        let json;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode, headers: res.headers, text, json });
      });
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('request timed out')));
    req.on('error', reject);
    req.end(data);
  });
}

// Reads an SSE response body incrementally. Returns the events as
// {event, data, at (ms since start)}; data is parsed JSON when possible.
export async function readSSE(response, { t0 = Date.now() } = {}) {
  const events = [];
  const decoder = new TextDecoder();
  let buf = '';
  const reader = response.body.getReader();
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += decoder.decode(value, { stream: true });
    buf = buf.replace(/\r\n/g, '\n');
    let i;
    while ((i = buf.indexOf('\n\n')) >= 0) {
      const block = buf.slice(0, i);
      buf = buf.slice(i + 2);
      const ev = { event: null, data: '', at: Date.now() - t0 };
      const data = [];
      for (const line of block.split('\n')) {
        if (line.startsWith(':')) continue;
        const c = line.indexOf(':');
        const field = c < 0 ? line : line.slice(0, c);
        const val = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
        if (field === 'event') ev.event = val;
        else if (field === 'data') data.push(val);
      }
      if (!data.length && !ev.event) continue;
      ev.raw = data.join('\n');
      try {
        ev.data = JSON.parse(ev.raw);
      } catch {
        ev.data = ev.raw;
      }
      events.push(ev);
    }
  }
  return { events, rest: buf };
}

// Asserts an OpenAI-shaped error body: {"error":{"message","type","param"?,"code"}}.
export function assertOpenAIError(res, status, { type, code } = {}) {
  const ctx = `status ${res.status}, body ${res.text.slice(0, 500)}`;
  assert.equal(res.status, status, `expected HTTP ${status}; got ${ctx}`);
  const ct = (typeof res.headers.get === 'function' ? res.headers.get('content-type') : res.headers['content-type']) || '';
  assert.match(ct, /application\/json/, `error content-type should be JSON; got '${ct}' (${ctx})`);
  assert.ok(res.json && typeof res.json === 'object', `error body should be JSON (${ctx})`);
  const e = res.json.error;
  assert.ok(e && typeof e === 'object', `body should have an "error" object (${ctx})`);
  assert.equal(typeof e.message, 'string', `error.message should be a string (${ctx})`);
  assert.ok(e.message.length > 0, `error.message should not be empty (${ctx})`);
  assert.equal(typeof e.type, 'string', `error.type should be a string (${ctx})`);
  assert.ok(e.type.length > 0, `error.type should not be empty (${ctx})`);
  assert.ok('code' in e, `error.code should be present (may be null) (${ctx})`);
  if (type !== undefined) assert.equal(e.type, type, `error.type (${ctx})`);
  if (code !== undefined) assert.equal(e.code, code, `error.code (${ctx})`);
  return e;
}
