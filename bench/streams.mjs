// Memory of the all-in-one gateway: idle, and with thousands of slow streams open at once
// (bench/streams.sh runs it; see bench/README.md, "Memory under slow streams").
//
// An upstream that holds every stream open (bench/lib/slowstub.mjs: one SSE chunk a second
// for STREAMS_SECONDS), the all-in-one in front of it, and STREAMS_N (default 5000) streamed
// requests opened from this process over raw sockets (STREAMS_RAMP per second), all open at
// the same time. The gateway's VmRSS is sampled every 250 ms. Every stream must end in
// [DONE] with status 200; any other end is an error.
//
// Environment: STREAMS_N (5000), STREAMS_SECONDS (30), STREAMS_INTERVAL_MS (1000),
// STREAMS_RAMP (1000 per second), BENCH_RESULTS_DIR, OMNI_BUILD_DIR.

import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const PRIVATE_TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'orbench-'));
process.env.TMPDIR = PRIVATE_TMP;

const { freePort, markFailed, sleep, spawnProcess, startGateway, tcpConnectable, tempRootDir, waitFor } =
  await import('../tests/integration/lib/index.mjs');
// After the harness's own exit handler (which removes its temp dir inside this one).
process.on('exit', () => { try { fs.rmdirSync(PRIVATE_TMP); } catch { /* kept: holds logs */ } });
const { ResponseReader, requestBytes } = await import('./lib/ttfb.mjs');
const { cpuSample, machineInfo } = await import('./lib/sys.mjs');

const env = process.env;
const N = Number(env.STREAMS_N || 5000);
const SECONDS = Number(env.STREAMS_SECONDS || 30);
const INTERVAL_MS = Number(env.STREAMS_INTERVAL_MS || 1000);
const RAMP = Number(env.STREAMS_RAMP || 1000);
const RESULTS_DIR = path.resolve(env.BENCH_RESULTS_DIR || path.join(BENCH_DIR, 'results'));
const CLIENT_KEY = 'sk-bench-client-0001';
const log = (...a) => process.stderr.write(`[streams ${new Date().toISOString().slice(11, 19)}] ${a.join(' ')}\n`);

function status(pid) {
  try {
    const s = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (k) => Number(new RegExp(`${k}:\\s+(\\d+) kB`).exec(s)?.[1] ?? NaN);
    return { rss_kb: kb('VmRSS'), hwm_kb: kb('VmHWM'), threads: Number(/Threads:\s+(\d+)/.exec(s)?.[1]) };
  } catch {
    return null;
  }
}
const fds = (pid) => { try { return fs.readdirSync(`/proc/${pid}/fd`).length; } catch { return null; } };
const mb = (kb) => Math.round((kb / 1024) * 10) / 10;

async function main() {
  const started = new Date();
  const report = { date: started.toISOString(), machine: machineInfo(),
    settings: { streams: N, seconds: SECONDS, interval_ms: INTERVAL_MS, ramp_per_s: RAMP }, ok: false };
  const port = await freePort();
  const stub = spawnProcess('slowstub', process.execPath, [path.join(BENCH_DIR, 'lib', 'slowstub.mjs'), '--port', String(port)], {
    env: { ...env, SLOW_SECONDS: String(SECONDS), SLOW_INTERVAL_MS: String(INTERVAL_MS) },
  });
  let gw = null;
  try {
    await waitFor('slow stub', () => tcpConnectable(port), { timeoutMs: 10000, check: () => stub.assertRunning() });
    gw = await startGateway({ mode: 'allinone', config: {
      server: { host: '127.0.0.1', require_api_key: true, upstream_timeout_ms: 60000 },
      nodes: [{ id: 'slow', name: 'Slow stub', format: 'openai', base_url: `http://127.0.0.1:${port}/v1`, models: ['gpt-4o-mini'] }],
      connections: [{ provider: 'slow', name: 'bench', api_key: 'sk-bench-upstream', priority: 1 }],
      api_keys: [{ name: 'bench', key: CLIENT_KEY }],
    } });
    const pid = gw.procs.omniroute.pid;
    await sleep(3000);
    report.idle_fresh = { ...status(pid), fds: fds(pid) };
    log(`gateway pid ${pid}: idle RSS ${mb(report.idle_fresh.rss_kb)} MB right after start (${report.idle_fresh.threads} threads)`);

    const body = { model: 'slow/gpt-4o-mini', messages: [{ role: 'user', content: 'Stream slowly, please.' }],
      stream: true, stream_options: { include_usage: true } };
    const req = requestBytes({ host: '127.0.0.1', port: gw.port, path: '/v1/chat/completions', apiKey: CLIENT_KEY, body });
    const c = { connected: 0, headers: 0, open: 0, max_open: 0, done: 0 };
    const errors = {};
    const err = (k) => { errors[k] = (errors[k] || 0) + 1; };
    const samples = [];
    const cpu0 = cpuSample({ omniroute: pid });
    const t0 = Date.now();
    let finished = 0;
    let allDone;
    const allDoneP = new Promise((r) => { allDone = r; });
    const settle = () => { finished += 1; if (finished === N) allDone(); };

    const openOne = () => {
      let ended = false;
      let gotHeaders = false;
      const end = (why) => {
        if (ended) return;
        ended = true;
        if (gotHeaders) c.open -= 1;
        if (why) err(why);
        else c.done += 1;
        s.destroy();
        settle();
      };
      const reader = new ResponseReader({
        keepBody: false,
        onHeaders: (st) => {
          if (st !== 200) return;
          gotHeaders = true;
          c.headers += 1;
          c.open += 1;
          c.max_open = Math.max(c.max_open, c.open);
        },
        onEnd: (tail, st) => end(st !== 200 ? `HTTP ${st}` : tail.includes('[DONE]') ? null : 'no [DONE]'),
      });
      const s = net.connect({ host: '127.0.0.1', port: gw.port, noDelay: true });
      s.setTimeout((SECONDS + 60) * 1000, () => end('timeout'));
      s.on('connect', () => { c.connected += 1; s.write(req); });
      s.on('data', (d) => { try { reader.feed(d); } catch (e) { end(`bad response: ${e.message}`); } });
      s.on('error', (e) => end(`socket error ${e.code || e.message}`));
      s.on('close', () => end('closed before the end'));
    };

    const sampler = setInterval(() => {
      const st = status(pid);
      if (st) samples.push({ t_s: (Date.now() - t0) / 1000, rss_kb: st.rss_kb, open: c.open, threads: st.threads });
    }, 250);
    const ticker = setInterval(() => {
      const last = samples[samples.length - 1];
      log(`${((Date.now() - t0) / 1000).toFixed(0)} s: ${c.open} streams open (max ${c.max_open}), ${c.done} done, ` +
        `${Object.values(errors).reduce((a, b) => a + b, 0)} errors, RSS ${last ? mb(last.rss_kb) : '?'} MB`);
    }, 5000);

    log(`opening ${N} streams (${RAMP}/s), each ${SECONDS} s long`);
    const batch = Math.max(1, Math.round(RAMP / 10));
    for (let i = 0; i < N; i += batch) {
      for (let j = i; j < Math.min(N, i + batch); j++) openOne();
      await sleep(100);
    }
    report.ramp_s = (Date.now() - t0) / 1000;
    let deadlineTimer;
    const deadline = new Promise((r) => { deadlineTimer = setTimeout(() => r('deadline'), (SECONDS + 120) * 1000); });
    const how = await Promise.race([allDoneP, deadline]);
    clearTimeout(deadlineTimer);
    clearInterval(sampler);
    clearInterval(ticker);
    if (how === 'deadline') err(`still open at the deadline: ${N - finished}`);
    report.cpu_ms = cpuSample({ omniroute: pid }).omniroute - cpu0.omniroute;
    report.duration_s = (Date.now() - t0) / 1000;
    if (!gw.procs.omniroute.running) err('the gateway exited');

    const peak = samples.reduce((a, s) => (s.rss_kb > a.rss_kb ? s : a), { rss_kb: 0 });
    report.during = { peak_rss_kb: peak.rss_kb, peak_at_s: peak.t_s, open_at_peak: peak.open, max_open: c.max_open,
      done: c.done, errors, hwm_kb: status(pid)?.hwm_kb, max_threads: Math.max(...samples.map((s) => s.threads)) };
    report.samples = samples.filter((_, i) => i % 4 === 0); // one a second in the JSON
    await sleep(10000);
    report.idle_after = { ...status(pid), fds: fds(pid) };
    try {
      const r = await fetch(`http://127.0.0.1:${port}/_stats`);
      report.stub_stats = await r.json();
    } catch { /* informational */ }
    const nerr = Object.values(errors).reduce((a, b) => a + b, 0);
    report.error_count = nerr;
    report.ok = nerr === 0;
    log(`idle RSS after start: ${mb(report.idle_fresh.rss_kb)} MB; peak RSS with ${peak.open} of ${N} streams open: ` +
      `${mb(peak.rss_kb)} MB (VmHWM ${mb(report.during.hwm_kb)} MB; max ${c.max_open} open at once); ` +
      `10 s after the last stream: ${mb(report.idle_after.rss_kb)} MB`);
    log(`streams: ${c.done} ended with [DONE], errors: ${nerr ? JSON.stringify(errors) : 'none'}; ` +
      `gateway CPU ${(report.cpu_ms / 1000).toFixed(1)} s over ${report.duration_s.toFixed(0)} s; ` +
      `threads up to ${report.during.max_threads}; stub saw ${JSON.stringify(report.stub_stats)}`);
  } catch (e) {
    report.error = e.message;
    log(`FAILED: ${e.stack || e.message}`);
  } finally {
    if (!report.ok) { markFailed(); log(`logs kept in ${tempRootDir()}`); }
    await gw?.stop().catch(() => {});
    await stub.stop({ sig: 'SIGTERM', timeoutMs: 3000 }).catch(() => {});
  }
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  const file = path.join(RESULTS_DIR, `streams-${started.toISOString().replace(/:/g, '-').replace(/\.\d+Z$/, 'Z')}.json`);
  fs.writeFileSync(file, `${JSON.stringify(report, null, 1)}\n`);
  process.stdout.write(`results: ${path.relative(process.cwd(), file)}\n`);
  process.exitCode = report.ok ? 0 : 1;
}

main().catch((e) => { process.stderr.write(`${e.stack}\n`); process.exitCode = 1; });
