#!/usr/bin/env node
// A slow OpenAI-compatible upstream for the memory tests (bench/streams.mjs): every
// POST …/chat/completions is answered with an SSE stream that sends its role chunk at once,
// then one content chunk every SLOW_INTERVAL_MS (default 1000) for SLOW_SECONDS (default 30),
// then a finish chunk, a usage chunk and [DONE]. A non-streamed request (no "stream": true)
// waits the same time and gets one chat.completion. nginx cannot hold a stream open like this
// and the integration mock provider records every request (memory that grows with the test),
// hence this small server.
//
//   node bench/lib/slowstub.mjs --port 0      prints {"listening":PORT} once it accepts
// GET /_stats → {"open": streams open now, "max_open", "served"}.

import http from 'node:http';

const arg = (name, d) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? process.argv[i + 1] : d;
};
const INTERVAL_MS = Number(process.env.SLOW_INTERVAL_MS || 1000);
const SECONDS = Number(process.env.SLOW_SECONDS || 30);
const MODEL = 'gpt-4o-mini';

let open = 0;
let maxOpen = 0;
let served = 0;

const chunk = (delta, finish = null, usage) => {
  const c = { id: 'chatcmpl-slow', object: 'chat.completion.chunk', created: 1700000000, model: MODEL,
    choices: usage ? [] : [{ index: 0, delta, finish_reason: finish }] };
  if (usage) c.usage = usage;
  return `data: ${JSON.stringify(c)}\n\n`;
};

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/_stats') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ open, max_open: maxOpen, served }));
    return;
  }
  const parts = [];
  req.on('data', (d) => parts.push(d));
  req.on('end', () => {
    if (req.method !== 'POST' || !req.url.endsWith('/chat/completions')) {
      res.writeHead(404).end();
      return;
    }
    let body = {};
    try { body = JSON.parse(Buffer.concat(parts).toString('utf8')); } catch { /* treated as non-streamed */ }
    const n = Math.max(1, Math.round((SECONDS * 1000) / INTERVAL_MS));
    open += 1;
    maxOpen = Math.max(maxOpen, open);
    let closed = false;
    res.on('close', () => {
      if (!closed) { closed = true; open -= 1; }
    });
    const usage = { prompt_tokens: 10, completion_tokens: n, total_tokens: 10 + n };
    if (!body.stream) {
      setTimeout(() => {
        served += 1;
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ id: 'chatcmpl-slow', object: 'chat.completion', created: 1700000000, model: MODEL,
          choices: [{ index: 0, message: { role: 'assistant', content: 'tok '.repeat(n).trim() }, finish_reason: 'stop' }],
          usage }));
      }, SECONDS * 1000);
      return;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.write(chunk({ role: 'assistant', content: '' }));
    let i = 0;
    const timer = setInterval(() => {
      if (res.destroyed) { clearInterval(timer); return; }
      i += 1;
      res.write(chunk({ content: ` tok${i}` }));
      if (i >= n) {
        clearInterval(timer);
        served += 1;
        res.end(chunk({}, 'stop') + chunk(null, null, usage) + 'data: [DONE]\n\n');
      }
    }, INTERVAL_MS);
  });
});
server.keepAliveTimeout = 600000;
server.headersTimeout = 610000;
server.requestTimeout = 0;
server.maxConnections = 100000;
server.listen({ host: '127.0.0.1', port: Number(arg('port', 0)), backlog: 16384 }, () => {
  process.stdout.write(`${JSON.stringify({ listening: server.address().port })}\n`);
});
