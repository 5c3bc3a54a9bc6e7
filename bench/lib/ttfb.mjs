// Time to first byte of a streamed answer, which wrk cannot see: N sequential POSTs over one
// kept-alive HTTP/1.1 connection (raw node:net, Nagle off), each timed from writing the
// request to the arrival of the first byte of the response *body* (the first SSE chunk; for
// a chunked answer the first chunk's data, not its size line) and to the end of the answer.
// Also used (streamsOpen) to hold thousands of slow streams open at once.

import net from 'node:net';

const now = () => Number(process.hrtime.bigint()) / 1e3; // µs

// An incremental HTTP/1.1 response reader: feed(buf, tUs) → events on the callbacks.
// onHeaders(status, headers), onFirstBody(tUs), onEnd(bodyText). Handles Content-Length and
// chunked bodies; keeps the body text only when keepBody is set (for the [DONE] check).
export class ResponseReader {
  constructor({ onHeaders = () => {}, onFirstBody = () => {}, onEnd = () => {}, keepBody = true } = {}) {
    Object.assign(this, { onHeaders, onFirstBody, onEnd, keepBody });
    this.reset();
  }

  reset() {
    this.buf = Buffer.alloc(0);
    this.state = 'head';
    this.status = 0;
    this.headers = {};
    this.remaining = 0; // Content-Length left, or bytes left in the current chunk
    this.body = [];
    this.bodyBytes = 0;
    this.sawBody = false;
    this.tail = ''; // the last few bytes of body, for [DONE] detection without keeping it all
  }

  body_(b, t) {
    if (!b.length) return;
    if (!this.sawBody) {
      this.sawBody = true;
      this.onFirstBody(t);
    }
    this.bodyBytes += b.length;
    if (this.keepBody) this.body.push(b);
    else this.tail = (this.tail + b.toString('latin1')).slice(-64);
  }

  end_() {
    const text = this.keepBody ? Buffer.concat(this.body).toString('utf8') : this.tail;
    const status = this.status;
    const headers = this.headers;
    this.reset();
    this.onEnd(text, status, headers);
  }

  feed(data, t = now()) {
    this.buf = this.buf.length ? Buffer.concat([this.buf, data]) : data;
    for (;;) {
      if (this.state === 'head') {
        const i = this.buf.indexOf('\r\n\r\n');
        if (i < 0) return;
        const lines = this.buf.subarray(0, i).toString('latin1').split('\r\n');
        this.buf = this.buf.subarray(i + 4);
        this.status = Number(lines[0].split(' ')[1]);
        for (const l of lines.slice(1)) {
          const c = l.indexOf(':');
          if (c > 0) this.headers[l.slice(0, c).trim().toLowerCase()] = l.slice(c + 1).trim();
        }
        this.onHeaders(this.status, this.headers);
        if (/chunked/i.test(this.headers['transfer-encoding'] || '')) {
          this.state = 'size';
        } else if (this.headers['content-length'] !== undefined) {
          this.remaining = Number(this.headers['content-length']);
          this.state = 'fixed';
          if (this.remaining === 0) { this.end_(); continue; }
        } else {
          this.state = 'close'; // body until the connection closes
        }
      } else if (this.state === 'fixed') {
        if (!this.buf.length) return;
        const n = Math.min(this.remaining, this.buf.length);
        this.body_(this.buf.subarray(0, n), t);
        this.buf = this.buf.subarray(n);
        this.remaining -= n;
        if (this.remaining === 0) this.end_();
      } else if (this.state === 'size') {
        const i = this.buf.indexOf('\r\n');
        if (i < 0) return;
        const size = parseInt(this.buf.subarray(0, i).toString('latin1'), 16);
        this.buf = this.buf.subarray(i + 2);
        if (!(size >= 0)) throw new Error('bad chunk size');
        if (size === 0) this.state = 'trailer';
        else { this.remaining = size; this.state = 'chunk'; }
      } else if (this.state === 'chunk') {
        if (!this.buf.length) return;
        const n = Math.min(this.remaining, this.buf.length);
        this.body_(this.buf.subarray(0, n), t);
        this.buf = this.buf.subarray(n);
        this.remaining -= n;
        if (this.remaining === 0) this.state = 'chunkend';
      } else if (this.state === 'chunkend') {
        if (this.buf.length < 2) return;
        this.buf = this.buf.subarray(2);
        this.state = 'size';
      } else if (this.state === 'trailer') {
        const i = this.buf.indexOf('\r\n');
        if (i < 0) return;
        const empty = i === 0;
        this.buf = this.buf.subarray(i + 2);
        if (empty) this.end_();
      } else { // close
        if (!this.buf.length) return;
        this.body_(this.buf, t);
        this.buf = Buffer.alloc(0);
        return;
      }
    }
  }
}

export function requestBytes({ host, port, path, apiKey, body }) {
  const b = Buffer.from(typeof body === 'string' ? body : JSON.stringify(body));
  return Buffer.concat([Buffer.from(`POST ${path} HTTP/1.1\r\nHost: ${host}:${port}\r\n` +
    'Content-Type: application/json\r\nAccept: text/event-stream\r\n' +
    `${apiKey ? `Authorization: Bearer ${apiKey}\r\n` : ''}Content-Length: ${b.length}\r\n\r\n`), b]);
}

const pct = (sorted, q) => sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil((q / 100) * sorted.length) - 1))];

export function percentiles(xs) {
  const s = [...xs].sort((a, b) => a - b);
  if (!s.length) return null;
  return { n: s.length, min: s[0], p50: pct(s, 50), p90: pct(s, 90), p99: pct(s, 99), max: s[s.length - 1],
    mean: s.reduce((a, b) => a + b, 0) / s.length };
}

// N sequential requests over one kept-alive connection (a new one if the server closes it).
// Resolves {ttfb_us, total_us: percentiles, errors: [..], reconnects, requests}. A request
// counts as an error when its status is not 200 or its body does not end in [DONE] (stream)
// / is empty; the first `warmup` requests are not measured.
export async function runTtfb({ url, apiKey = '', body, requests = 2000, warmup = 100, timeoutMs = 10000,
  deadlineMs = 120000, expectDone = true }) {
  const u = new URL(url);
  const host = u.hostname;
  const port = Number(u.port);
  const req = requestBytes({ host, port, path: u.pathname, apiKey, body });
  const ttfb = [];
  const total = [];
  const errors = [];
  let reconnects = -1;
  let answered = 0; // status 200 answers, warm-up included (for the usage-row check)
  let cut = 0; // requests abandoned in flight (timeouts, closed connections)
  let sock = null;
  const t0all = Date.now();

  const connect = () => new Promise((resolve, reject) => {
    reconnects += 1;
    const s = net.connect({ host, port, noDelay: true });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });

  const one = (s) => new Promise((resolve) => {
    let tFirst = null;
    let tStart = 0;
    let done = false;
    const finish = (r) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      s.off('data', onData);
      s.off('close', onClose);
      s.off('error', onClose);
      resolve({ ...r, tStart });
    };
    const reader = new ResponseReader({
      onFirstBody: (t) => { tFirst = t; },
      onEnd: (text, status) => finish({ status, text, tFirst, tEnd: now() }),
    });
    const onData = (d) => {
      const t = now();
      try { reader.feed(d, t); } catch (e) { finish({ error: e.message }); }
    };
    const onClose = (e) => finish({ error: `connection closed${e?.message ? `: ${e.message}` : ''}`, closed: true });
    const timer = setTimeout(() => finish({ error: 'timeout', closed: true }), timeoutMs);
    s.on('data', onData);
    s.once('close', onClose);
    s.once('error', onClose);
    tStart = now();
    s.write(req);
  });

  for (let i = 0; i < warmup + requests; i++) {
    if (Date.now() - t0all > deadlineMs) {
      errors.push(`deadline of ${deadlineMs} ms reached after ${i} requests`);
      break;
    }
    if (!sock || sock.destroyed) {
      try { sock = await connect(); } catch (e) { errors.push(`connect: ${e.message}`); break; }
    }
    const r = await one(sock);
    const { tStart } = r;
    if (r.closed) { sock.destroy(); sock = null; cut += 1; }
    if (r.status === 200) answered += 1;
    let bad = r.error;
    if (!bad && r.status !== 200) bad = `HTTP ${r.status}: ${r.text.slice(0, 200)}`;
    if (!bad && expectDone && !r.text.includes('[DONE]')) bad = 'no [DONE] at the end';
    if (bad) {
      if (i >= warmup) errors.push(bad);
      continue;
    }
    if (i >= warmup) {
      ttfb.push(r.tFirst - tStart);
      total.push(r.tEnd - tStart);
    }
  }
  sock?.destroy();
  return { requests: ttfb.length, ttfb_us: percentiles(ttfb), total_us: percentiles(total), errors,
    reconnects: Math.max(0, reconnects), answered, cut };
}
