// The benchmark driver (bench/run.sh runs it): added latency and throughput of the gateway
// versus the upstream stub called directly, for the all-in-one and the distributed mode,
// non-streamed and streamed. See bench/README.md.
//
// Environment (all optional):
//   BENCH_DURATION      per measurement (default 10s)
//   BENCH_MODES         allinone,distributed (default both)
//   BENCH_CONNECTIONS   connection counts, one measurement each (default 1,50,500)
//   BENCH_TTFB_REQUESTS sequential streamed requests per target for time to first byte
//                       (default 2000 after 100 unmeasured; 0 skips)
//   BENCH_THREADS       wrk threads when connections > 1 (default 2; 1 connection = 1 thread)
//   BENCH_STREAM        no,yes (default both)
//   BENCH_REPEAT        runs of the whole matrix; the summary takes medians (default 1)
//   BENCH_WARMUP        warm-up per target and body before the first run (default 3s)
//   BENCH_IDLE_TIMEOUT  seconds, in all, to wait for compilers to finish (default 1800)
//   BENCH_STUB_KEEPALIVE  how long the stub keeps an idle connection open (default 300s)
//   BENCH_RESULTS_DIR   where the JSON goes (default bench/results)
//   OMNI_BUILD_DIR      the binaries (default build/), as for the integration tests

import { execFile, execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import {
  BUILD_DIR, findBinary, markFailed, missingBinaries, REPO_ROOT, startGateway, startPostgres, startRedis,
  tempDir, tempRootDir,
} from '../tests/integration/lib/index.mjs';
import { COMPLETION, SSE_BODY, STREAM_WORDS, STUB_MODEL, startNginxProxy, startStub } from './lib/stub.mjs';
import {
  cpuDelta, cpuSample, FOREIGN_MAX, LoadMeter, machineInfo, peakRssKb, waitIdle, watchLoad,
} from './lib/sys.mjs';
import { runTtfb } from './lib/ttfb.mjs';
import { errorCount, fmtWrkErrors, parseDuration, runWrk, writeBody } from './lib/wrk.mjs';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const env = process.env;

// The harness puts everything under os.tmpdir()/omni-it-*; on a shared machine other runs may
// clean those up, so the bench takes a private parent (removed at exit when left empty).
const PRIVATE_TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'orbench-'));
fs.chmodSync(PRIVATE_TMP, 0o755); // PostgreSQL runs as `postgres` and must traverse it
process.env.TMPDIR = PRIVATE_TMP;
process.on('exit', () => { try { fs.rmdirSync(PRIVATE_TMP); } catch { /* kept: holds logs */ } });
const list = (v, d) => (v || d).split(',').map((s) => s.trim()).filter(Boolean);

const SETTINGS = {
  duration_s: parseDuration(env.BENCH_DURATION || '10s'),
  warmup_s: parseDuration(env.BENCH_WARMUP || '3s'),
  modes: list(env.BENCH_MODES, 'nginxproxy,allinone,distributed'),
  budget: !['no', 'false', '0'].includes((env.BENCH_BUDGET || 'yes').toLowerCase()),
  connections: list(env.BENCH_CONNECTIONS, '1,50,500').map(Number),
  ttfb_requests: Number(env.BENCH_TTFB_REQUESTS ?? 2000),
  threads: Number(env.BENCH_THREADS || 2),
  stream: list(env.BENCH_STREAM, 'no,yes').map((s) => s === 'yes' || s === 'true' || s === '1'),
  repeat: Number(env.BENCH_REPEAT || 1),
  idle_timeout_s: Number(env.BENCH_IDLE_TIMEOUT || 1800),
  stub_keepalive_s: parseDuration(env.BENCH_STUB_KEEPALIVE || '300s'),
  request_timeout_s: 10,
};
for (const m of SETTINGS.modes) {
  if (!['nginxproxy', 'allinone', 'distributed'].includes(m)) throw new Error(`BENCH_MODES: unknown mode '${m}'`);
}
if (SETTINGS.connections.some((c) => !(c >= 1))) throw new Error('BENCH_CONNECTIONS: positive integers');
if (!(SETTINGS.repeat >= 1)) throw new Error('BENCH_REPEAT: a positive integer');
const RESULTS_DIR = path.resolve(env.BENCH_RESULTS_DIR || path.join(BENCH_DIR, 'results'));

const CLIENT_KEY = 'sk-bench-client-0001';
// The same requests once more on a key with a daily budget (too large to be reached): every
// request then holds a reservation while it runs and settles it when it ends.
const BUDGET_KEY = 'sk-bench-budget-0001';
const log = (...a) => process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${a.join(' ')}\n`);

// ---- what we talk to -------------------------------------------------------------------

function gatewayConfig(stub) {
  return {
    server: { host: '127.0.0.1', require_api_key: true, upstream_timeout_ms: 30000 },
    nodes: [
      { id: 'stub', name: 'Bench stub (JSON)', format: 'openai', base_url: stub.baseURL, models: [STUB_MODEL] },
      { id: 'stubsse', name: 'Bench stub (SSE)', format: 'openai', base_url: stub.streamBaseURL, models: [STUB_MODEL] },
    ],
    connections: [
      { provider: 'stub', name: 'bench', api_key: 'sk-bench-upstream', priority: 1 },
      { provider: 'stubsse', name: 'bench', api_key: 'sk-bench-upstream', priority: 1 },
    ],
    api_keys: [{ name: 'bench', key: CLIENT_KEY }, { name: 'benchbudget', key: BUDGET_KEY }],
    budgets: [{ key: 'benchbudget', daily: 1e9 }],
  };
}

function requestBody(model, stream) {
  const b = { model, messages: [{ role: 'user', content: 'Say hello to the benchmark.' }], max_tokens: 32 };
  if (stream) Object.assign(b, { stream: true, stream_options: { include_usage: true } });
  return b;
}

// A target: where wrk sends each kind of request, with which key, and the processes it started (roots of process trees).
function stubTarget(stub) {
  return {
    name: 'stub', stub: true,
    url: (stream) => `${stream ? stub.streamBaseURL : stub.baseURL}/chat/completions`,
    model: () => STUB_MODEL,
    apiKey: '',
    roots: () => ({ nginx: stub.proc.pid }),
    procs: () => [stub.proc],
    logs: () => stub.proc.tail(30),
  };
}

// nginx proxying to the stub: the cost of forwarding alone on this machine (no keys, no
// routing, no usage), the floor under any gateway's added latency. Passes answers unchanged.
function proxyTarget(proxy) {
  return {
    name: 'nginxproxy', passthrough: true,
    url: (stream) => `${stream ? proxy.streamBaseURL : proxy.baseURL}/chat/completions`,
    model: () => STUB_MODEL,
    apiKey: '',
    roots: () => ({ 'nginx-proxy': proxy.proc.pid }),
    procs: () => [proxy.proc],
    logs: () => proxy.proc.tail(30),
    stop: () => proxy.stop(),
  };
}

function gatewayTarget(gw, extra = {}, { budget = false } = {}) {
  return {
    name: budget ? `${gw.mode}+budget` : gw.mode, gw,
    url: () => `${gw.baseURL}/chat/completions`,
    model: (stream) => `${stream ? 'stubsse' : 'stub'}/${STUB_MODEL}`,
    apiKey: budget ? BUDGET_KEY : CLIENT_KEY,
    roots: () => ({
      ...Object.fromEntries(Object.entries(gw.procs).map(([n, p]) => [n, p.pid])),
      ...Object.fromEntries(Object.entries(extra).map(([n, p]) => [n, p.pid])),
    }),
    procs: () => [...Object.values(gw.procs), ...Object.values(extra)],
    logs: () => gw.logs(60) + Object.values(extra).map((p) => p.tail(20)).join(''),
  };
}

// ---- checks ------------------------------------------------------------------------------

// One request through fetch: the answer must be what the stub sends (through the gateway:
// the same content, a usage object, an SSE stream ending in [DONE]). Throws otherwise.
async function checkAnswer(target, stream) {
  const headers = { 'content-type': 'application/json' };
  if (target.apiKey) headers.authorization = `Bearer ${target.apiKey}`;
  const r = await fetch(target.url(stream), {
    method: 'POST', headers, body: JSON.stringify(requestBody(target.model(stream), stream)),
    signal: AbortSignal.timeout(10000),
  });
  const text = await r.text();
  const what = `${target.name} ${stream ? 'streamed' : 'non-streamed'}: HTTP ${r.status} ` +
    `content-type '${r.headers.get('content-type')}' body ${JSON.stringify(text.slice(0, 600))}`;
  const fail = (why) => { throw new Error(`answer check failed (${why}) — ${what}`); };
  if (r.status !== 200) fail('status');
  if (!stream) {
    let j;
    try { j = JSON.parse(text); } catch { fail('not JSON'); }
    if (j.object !== 'chat.completion') fail('object');
    if (j.choices?.[0]?.message?.content !== COMPLETION.choices[0].message.content) fail('content');
    if (!j.usage || j.usage.total_tokens !== COMPLETION.usage.total_tokens) fail('usage');
    return;
  }
  if (!/^text\/event-stream/.test(r.headers.get('content-type') || '')) fail('content-type');
  if (target.stub || target.passthrough) {
    if (text !== SSE_BODY) fail('SSE body differs from the one configured');
    return;
  }
  const data = text.replace(/\r\n/g, '\n').split('\n\n').map((b) => b.split('\n')
    .filter((l) => l.startsWith('data:')).map((l) => l.slice(5).trim()).join('\n')).filter(Boolean);
  if (data[data.length - 1] !== '[DONE]') fail('no final [DONE]');
  const chunks = data.slice(0, -1).map((d) => JSON.parse(d));
  const content = chunks.map((c) => c.choices?.[0]?.delta?.content || '').join('');
  if (content !== STREAM_WORDS.join('')) fail(`content '${content}'`);
  if (!chunks.some((c) => c.usage?.completion_tokens === STREAM_WORDS.length)) fail('no usage chunk');
}

function deadProcs(targets) {
  return targets.flatMap((t) => t.procs().filter((p) => !p.running).map((p) => ({ target: t, p })));
}

// ---- statistics --------------------------------------------------------------------------

const median = (xs) => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b);
  if (!s.length) return null;
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2;
};
const round = (x, d = 3) => (x === null || x === undefined ? null : Math.round(x * 10 ** d) / 10 ** d);

function summarize(runs, targets, settings = SETTINGS) {
  const rows = [];
  for (const stream of settings.stream) {
    for (const conns of settings.connections) {
      const stubRuns = runs.filter((r) => r.target === 'stub' && r.stream === stream && r.connections === conns);
      for (const t of targets) {
        const all = runs.filter((r) => r.target === t.name && r.stream === stream && r.connections === conns);
        if (!all.length) continue;
        // A run with errors measured something else (fast error answers): not in the medians.
        // Runs taken on an idle machine are preferred when there are any.
        const valid = all.filter((r) => r.error_count === 0);
        const clean = valid.filter((r) => r.idle && !r.disturbed.length);
        const rs = clean.length ? clean : valid;
        const row = {
          target: t.name, stream, connections: conns, runs: all.length, used_runs: rs.length,
          used: clean.length ? 'clean' : 'valid',
          p50_ms: round(median(rs.map((r) => r.p50_ms))),
          p99_ms: round(median(rs.map((r) => r.p99_ms))),
          rps: round(median(rs.map((r) => r.rps)), 0),
          errors: all.reduce((a, r) => a + r.error_count, 0),
          not_idle: rs.filter((r) => !r.idle || r.disturbed.length).length,
          cpu_ms_per_1k: round(median(rs.map((r) => r.cpu_ms_per_1k)), 1),
        };
        if (!t.stub) {
          // Added latency: gateway minus stub in the same repetition, then the median.
          const pair = (r, k) => stubRuns.find((s) => s.rep === r.rep)?.[k];
          row.added_p50_ms = round(median(rs.map((r) => r.p50_ms - pair(r, 'p50_ms'))));
          row.added_p99_ms = round(median(rs.map((r) => r.p99_ms - pair(r, 'p99_ms'))));
        }
        rows.push(row);
      }
    }
  }
  return rows;
}

// Time to first byte of a stream: medians over runs of each percentile; added = gateway minus
// the stub of the same run.
function summarizeTtfb(ttfbRuns) {
  const names = [...new Set(ttfbRuns.map((r) => r.target))];
  const stubOf = (rep) => ttfbRuns.find((r) => r.target === 'stub' && r.rep === rep);
  return names.map((name) => {
    const all = ttfbRuns.filter((r) => r.target === name);
    const nErr = (r) => r.error_count ?? r.errors.length;
    const rs = all.filter((r) => !nErr(r) && r.ttfb_us);
    const m = (f) => round(median(rs.map(f)) / 1000);
    const row = {
      target: name, runs: all.length, used_runs: rs.length,
      errors: all.reduce((a, r) => a + nErr(r), 0),
      ttfb_p50_ms: m((r) => r.ttfb_us.p50), ttfb_p90_ms: m((r) => r.ttfb_us.p90), ttfb_p99_ms: m((r) => r.ttfb_us.p99),
      total_p50_ms: m((r) => r.total_us.p50),
    };
    if (name !== 'stub') {
      const add = (q) => round(median(rs.map((r) => r.ttfb_us[q] - (stubOf(r.rep)?.ttfb_us?.[q] ?? NaN))) / 1000);
      Object.assign(row, { added_p50_ms: add('p50'), added_p90_ms: add('p90'), added_p99_ms: add('p99') });
    }
    return row;
  });
}

function ttfbTable(rows) {
  const head = ['target', 'TTFB p50 ms', 'p90 ms', 'p99 ms', '+p50 ms', '+p90 ms', '+p99 ms', 'whole p50 ms', 'runs', 'errors'];
  const f = (x, d = 3) => (x === null || x === undefined ? '-' : x.toFixed(d));
  const body = rows.map((r) => [r.target, f(r.ttfb_p50_ms), f(r.ttfb_p90_ms), f(r.ttfb_p99_ms), f(r.added_p50_ms),
    f(r.added_p90_ms), f(r.added_p99_ms), f(r.total_p50_ms), `${r.used_runs}/${r.runs}`, String(r.errors)]);
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells) => `| ${cells.map((c, i) => (i < 1 ? c.padEnd(w[i]) : c.padStart(w[i]))).join(' | ')} |`;
  return [line(head), `|${w.map((n, i) => (i < 1 ? '-'.repeat(n + 2) : `${'-'.repeat(n + 1)}:`)).join('|')}|`,
    ...body.map(line)].join('\n');
}

function table(rows) {
  const head = ['target', 'stream', 'conns', 'p50 ms', 'p99 ms', 'req/s', '+p50 ms', '+p99 ms', 'CPU ms/1k', 'runs',
    'errors'];
  const f = (x, d = 2) => (x === null || x === undefined ? '-' : x.toFixed(d));
  const body = rows.map((r) => [r.target, r.stream ? 'yes' : 'no', String(r.connections), f(r.p50_ms), f(r.p99_ms),
    f(r.rps, 0), f(r.added_p50_ms), f(r.added_p99_ms), f(r.cpu_ms_per_1k, 0), `${r.used_runs}/${r.runs}`,
    String(r.errors) + (r.not_idle ? ' (not idle!)' : '')]);
  const w = head.map((h, i) => Math.max(h.length, ...body.map((b) => b[i].length)));
  const line = (cells) => `| ${cells.map((c, i) => (i < 3 ? c.padEnd(w[i]) : c.padStart(w[i]))).join(' | ')} |`;
  return [line(head), `|${w.map((n, i) => (i < 3 ? '-'.repeat(n + 2) : `${'-'.repeat(n + 1)}:`)).join('|')}|`,
    ...body.map(line)].join('\n');
}

// ---- usage rows --------------------------------------------------------------------------

function sqliteCount(dbPath) {
  return new Promise((resolve) => {
    execFile('sqlite3', ['-cmd', '.timeout 5000', dbPath, 'select count(*) from usage_records'],
      { timeout: 15000, encoding: 'utf8' }, (err, out, stderr) => resolve(err ? `error: ${stderr || err.message}` : Number(out.trim())));
  });
}

async function usageRows(gw, pg) {
  if (gw.mode === 'distributed') {
    try {
      return Number((await pg.query('select count(*) from usage_records')).trim());
    } catch (e) {
      return `error: ${e.message}`;
    }
  }
  return fs.existsSync(gw.sqlitePath) ? sqliteCount(gw.sqlitePath) : `no database at ${gw.sqlitePath}`;
}

// ---- main --------------------------------------------------------------------------------

function gitInfo() {
  const git = (...a) => {
    try { return execFileSync('git', ['-C', REPO_ROOT, ...a], { encoding: 'utf8' }).trim(); } catch { return null; }
  };
  return { commit: git('rev-parse', 'HEAD'), dirty: Boolean(git('status', '--porcelain', '--untracked-files=no')) };
}

function toolVersions() {
  // Some print their version on stderr (nginx), some exit non-zero after printing it (wrk).
  const v = (cmd, args) => {
    const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: 5000 });
    return `${r.stdout || ''}${r.stderr || ''}`.split('\n')[0].trim() || null;
  };
  return { nginx: v('nginx', ['-v']), wrk: v('wrk', ['-v']), node: process.version,
    redis: v('redis-server', ['--version']) };
}

async function main() {
  const started = new Date();
  const missing = SETTINGS.modes.filter((m) => m !== 'nginxproxy').flatMap((m) => missingBinaries(m));
  if (missing.length) {
    throw new Error(`gateway binaries missing (build them with scripts/build.sh; bench never builds):\n  ${missing.join('\n  ')}`);
  }
  const nTargets = 1 + SETTINGS.modes.length +
    (SETTINGS.budget ? SETTINGS.modes.filter((m) => m !== 'nginxproxy').length : 0);
  const nMeasure = SETTINGS.repeat * SETTINGS.stream.length * SETTINGS.connections.length * nTargets;
  log(`${nMeasure} measurements of ${SETTINGS.duration_s}s (${SETTINGS.modes.join(', ')}; connections ` +
    `${SETTINGS.connections.join(', ')}; ${SETTINGS.repeat} run(s)); temp dir ${tempRootDir()}`);

  const report = {
    date: started.toISOString(), machine: machineInfo(), git: gitInfo(), tools: toolVersions(),
    build_dir: BUILD_DIR,
    binaries: Object.fromEntries(['omniroute', 'edge', 'router', 'translator', 'accounts', 'usage']
      .map((n) => [n, findBinary(n)]).filter(([, p]) => p)
      .map(([n, p]) => [n, { path: path.relative(REPO_ROOT, p), mtime: fs.statSync(p).mtime.toISOString() }])),
    settings: SETTINGS, runs: [], summary: [], ttfb: [], ttfb_summary: [], usage: {}, peak_rss_kb: {}, problems: [],
    ok: false,
  };
  const problem = (kind, message, extra = {}) => {
    report.problems.push({ kind, message, ...extra });
    markFailed(); // keeps the harness temp dir (every process's log)
    log(`PROBLEM (${kind}): ${message}`);
  };
  const dir = tempDir('bench');
  const targets = [];
  let pg = null;
  let redis = null;
  const writeReport = () => {
    fs.mkdirSync(RESULTS_DIR, { recursive: true });
    const file = path.join(RESULTS_DIR, `${started.toISOString().replace(/:/g, '-').replace(/\.\d+Z$/, 'Z')}.json`);
    fs.writeFileSync(file, `${JSON.stringify(report, null, 1)}\n`);
    return file;
  };

  try {
    const stub = await startStub({ keepaliveTimeoutS: Math.max(1, Math.round(SETTINGS.stub_keepalive_s)) });
    targets.push(stubTarget(stub));
    const config = gatewayConfig(stub);
    for (const mode of SETTINGS.modes) {
      log(`starting the ${mode} ${mode === 'nginxproxy' ? 'reverse proxy' : 'gateway'}`);
      if (mode === 'nginxproxy') {
        targets.push(proxyTarget(await startNginxProxy(stub)));
      } else if (mode === 'distributed') {
        [redis, pg] = await Promise.all([startRedis(), startPostgres()]);
        const gw = await startGateway({ mode, config, redis, postgres: pg });
        const extra = { redis: redis.proc, postgres: pg.proc };
        targets.push(gatewayTarget(gw, extra));
        if (SETTINGS.budget) targets.push(gatewayTarget(gw, extra, { budget: true }));
      } else {
        const gw = await startGateway({ mode, config });
        targets.push(gatewayTarget(gw));
        if (SETTINGS.budget) targets.push(gatewayTarget(gw, {}, { budget: true }));
      }
    }

    // For the usage check: answers wrk (or the answer check) saw, and how many requests may
    // have been cut in flight when a wrk run stopped (at most its connection count).
    const sent = Object.fromEntries(targets.map((t) => [t.name, 0]));
    const cut = Object.fromEntries(targets.map((t) => [t.name, 0]));
    const bodies = {};
    for (const t of targets) {
      for (const stream of SETTINGS.stream) {
        try {
          await checkAnswer(t, stream);
        } catch (e) {
          problem('answer', e.message, { logs: t.logs() });
          throw e;
        }
        sent[t.name] += 1;
        bodies[`${t.name}/${stream}`] = writeBody(dir, `${t.name}-${stream ? 'stream' : 'json'}`,
          requestBody(t.model(stream), stream));
      }
    }
    log('every target answers as expected');

    const idleBudget = { ms: SETTINGS.idle_timeout_s * 1000 };
    // CPU of everything we started (all targets, idle or not) is ours; the rest is noise.
    const meter = new LoadMeter();
    const maxConns = Math.max(...SETTINGS.connections);
    const wrk = (t, stream, conns, seconds, label) => runWrk({
      url: t.url(stream), threads: conns === 1 ? 1 : Math.min(SETTINGS.threads, conns), connections: conns, seconds,
      bodyFile: bodies[`${t.name}/${stream}`], apiKey: t.apiKey, timeoutS: SETTINGS.request_timeout_s, logDir: dir, label,
    });
    const checkAlive = () => {
      const dead = deadProcs(targets);
      if (dead.length) {
        const msg = dead.map(({ p }) => `${p.name} exited ${JSON.stringify(p.exit)}`).join('; ');
        problem('crash', msg, { logs: [...new Set(dead.map(({ target }) => target))].map((t) => t.logs()).join('') });
        throw new Error(`a process died under load: ${msg}`);
      }
    };
    const recordErrors = (t, stream, conns, w, phase) => {
      if (errorCount(w.result) === 0 && !w.exit?.hung && w.exit?.code === 0) return;
      problem('errors', `${t.name} ${stream ? 'streamed' : 'non-streamed'} ${conns} conns (${phase}): ` +
        `${fmtWrkErrors(w.result)}${w.exit?.hung ? ', wrk hung' : ''}${w.exit?.code ? `, wrk exit ${w.exit.code}` : ''}`,
      { wrk_output: w.raw, wrk_args: w.args, logs: t.logs() });
    };

    // Warm-up: connection pools, caches, first-use allocations. Not measured.
    for (const t of targets) {
      for (const stream of SETTINGS.stream) {
        if (!SETTINGS.warmup_s) break;
        await waitIdle(idleBudget, meter, { log });
        const w = await wrk(t, stream, maxConns, SETTINGS.warmup_s, `warmup-${t.name}-${stream}`);
        sent[t.name] += w.result?.requests || 0;
        cut[t.name] += maxConns;
        recordErrors(t, stream, maxConns, w, 'warm-up');
        checkAlive();
      }
    }

    for (let rep = 1; rep <= SETTINGS.repeat; rep++) {
      for (const stream of SETTINGS.stream) {
        for (const conns of SETTINGS.connections) {
          for (const t of targets) {
            // A compiler (or any other load) during a measurement spoils it: measure again
            // (twice at most, while the idle-wait budget lasts); the run keeps its flag otherwise.
            let idle;
            let w;
            let cpu;
            let load;
            let disturbed = [];
            let attempt = 0;
            do {
              if (attempt) log(`${t.name} ${stream ? 'stream' : 'json'} c=${conns}: disturbed (${disturbed.join('; ')}); measuring again`);
              attempt += 1;
              idle = await waitIdle(idleBudget, meter, { log });
              if (!idle.idle) log(`WARNING: measuring on a busy machine (${idle.busy.join(', ')}); the idle-wait budget is spent`);
              const roots = t.roots();
              const stopWatch = watchLoad(meter);
              try {
                const cpu0 = cpuSample(roots);
                w = await wrk(t, stream, conns, SETTINGS.duration_s,
                  `${t.name}-${stream ? 'stream' : 'json'}-c${conns}-r${rep}`);
                cpu = cpuDelta(cpu0, cpuSample(roots));
              } finally {
                load = await stopWatch();
              }
              disturbed = [...load.busy];
              if (load.foreign_cores > FOREIGN_MAX) disturbed.push(`other processes used ${load.foreign_cores} cores: ${load.top.join(', ')}`);
              sent[t.name] += w.result?.requests || 0;
              cut[t.name] += conns;
              recordErrors(t, stream, conns, w, `run ${rep}${attempt > 1 ? `, attempt ${attempt}` : ''}`);
              checkAlive();
            } while (disturbed.length && attempt < 3 && idleBudget.ms > 0);
            const r = w.result;
            const run = {
              rep, target: t.name, stream, connections: conns, threads: Number(w.args[1].slice(2)),
              idle: idle.idle, disturbed, attempts: attempt, load,
              requests: r?.requests ?? 0,
              rps: r ? r.requests / (r.duration_us / 1e6) : null,
              p50_ms: r ? r.latency_us.p['50'] / 1000 : null,
              p99_ms: r ? r.latency_us.p['99'] / 1000 : null,
              error_count: errorCount(r), errors: r?.errors ?? null,
              cpu_ms: cpu,
              cpu_ms_per_1k: r?.requests ? (Object.values(cpu).reduce((a, b) => a + b, 0) * 1000) / r.requests : null,
              wrk: r, wrk_args: w.args, wrk_output: w.raw,
            };
            report.runs.push(run);
            log(`${t.name.padEnd(11)} ${stream ? 'stream' : 'json  '} c=${String(conns).padEnd(3)} run ${rep}: ` +
              `p50 ${run.p50_ms?.toFixed(3)} ms  p99 ${run.p99_ms?.toFixed(3)} ms  ${run.rps?.toFixed(0)} req/s  ` +
              `errors: ${fmtWrkErrors(r)}  foreign CPU ${load.foreign_cores}${disturbed.length ? `  (disturbed: ${disturbed.join('; ')})` : ''}`);
          }
        }
      }
    }

    // Time to first byte of a stream (wrk cannot see it): one connection, sequential requests.
    if (SETTINGS.ttfb_requests > 0) {
      for (let rep = 1; rep <= SETTINGS.repeat; rep++) {
        for (const t of targets) {
          const idle = await waitIdle(idleBudget, meter, { log });
          const stopWatch = watchLoad(meter);
          let r;
          let load;
          try {
            r = await runTtfb({ url: t.url(true), apiKey: t.apiKey, body: requestBody(t.model(true), true),
              requests: SETTINGS.ttfb_requests, warmup: 100, timeoutMs: SETTINGS.request_timeout_s * 1000,
              deadlineMs: 300000 });
          } finally {
            load = await stopWatch();
          }
          sent[t.name] += r.answered;
          cut[t.name] += r.cut + 1;
          const disturbed = [...load.busy];
          if (load.foreign_cores > FOREIGN_MAX) disturbed.push(`other processes used ${load.foreign_cores} cores`);
          report.ttfb.push({ rep, target: t.name, idle: idle.idle, disturbed, load, ...r,
            errors: r.errors.slice(0, 20), error_count: r.errors.length });
          const ms = (x) => (x / 1000).toFixed(3);
          log(`${t.name.padEnd(11)} TTFB run ${rep}: p50 ${ms(r.ttfb_us?.p50 ?? NaN)} ms  p90 ${ms(r.ttfb_us?.p90 ?? NaN)} ms  ` +
            `p99 ${ms(r.ttfb_us?.p99 ?? NaN)} ms  (${r.requests} requests, ${r.errors.length} errors, ` +
            `${r.reconnects} reconnects)${disturbed.length ? `  (disturbed: ${disturbed.join('; ')})` : ''}`);
          if (r.errors.length) {
            problem('errors', `${t.name} TTFB: ${r.errors.length} errors: ${[...new Set(r.errors)].slice(0, 3).join(' | ')}`,
              { logs: t.logs() });
          }
          checkAlive();
        }
      }
      report.ttfb_summary = summarizeTtfb(report.ttfb);
    }

    // Usage rows: one per answered request, plus up to one per request wrk cut in flight when
    // it stopped (the gateway records those too, as 499 or as a late 200). Records are
    // asynchronous: give them a few seconds to arrive.
    // A gateway measured with and without a budget holds the rows of both.
    for (const t of targets.filter((x) => x.gw && x.name === x.gw.mode)) {
      const same = targets.filter((x) => x.gw === t.gw);
      const answered = same.reduce((n, x) => n + sent[x.name], 0);
      const cutAtMost = same.reduce((n, x) => n + cut[x.name], 0);
      let rows = null;
      for (let i = 0; i < 20; i++) {
        rows = await usageRows(t.gw, pg);
        if (typeof rows === 'number' && rows >= answered) break;
        await new Promise((res) => { setTimeout(res, 500); });
      }
      const u = { answered, cut_in_flight_at_most: cutAtMost, usage_rows: rows, targets: same.map((x) => x.name) };
      report.usage[t.name] = u;
      log(`usage rows in ${t.name}: ${rows} for ${u.answered} answered requests (+ at most ${u.cut_in_flight_at_most} cut by wrk)`);
      if (typeof rows !== 'number' || rows < u.answered || rows > u.answered + u.cut_in_flight_at_most) {
        problem('usage', `${t.name}: ${rows} usage rows for ${u.answered} answered requests ` +
          `(expected ${u.answered}..${u.answered + u.cut_in_flight_at_most})`, { logs: t.logs() });
      }
    }
    for (const t of targets) {
      for (const [n, pid] of Object.entries(t.roots())) report.peak_rss_kb[`${t.name}/${n}`] = peakRssKb(pid);
    }
    report.summary = summarize(report.runs, targets);
    report.ok = report.problems.length === 0;
  } catch (e) {
    if (!report.problems.some((p) => e.message.includes(p.message))) problem('fatal', e.message);
  } finally {
    await Promise.all(targets.map((t) => (t.gw ? t.name === t.gw.mode && t.gw.stop() : t.stop?.()))
      .filter(Boolean)).catch(() => {});
    await Promise.all([redis?.stop(), pg?.stop(), ...targets.filter((t) => t.stub).map((t) => t.procs()[0].stop())])
      .catch(() => {});
  }

  if (!report.summary.length && report.runs.length) report.summary = summarize(report.runs, targets);
  const file = writeReport();
  if (report.summary.length) process.stdout.write(`\n${table(report.summary)}\n\n`);
  if (report.ttfb_summary.length) {
    process.stdout.write(`Time to first body byte of a stream (${SETTINGS.ttfb_requests} sequential requests on one ` +
      `connection per run; +: gateway minus stub, same run):\n${ttfbTable(report.ttfb_summary)}\n\n`);
  }
  if (Object.keys(report.peak_rss_kb).length) {
    process.stdout.write(`Peak RSS (VmHWM) at the end: ${Object.entries(report.peak_rss_kb)
      .map(([k, v]) => `${k} ${v === null ? '-' : (v / 1024).toFixed(1)} MB`).join(', ')}\n`);
  }
  process.stdout.write(`+p50/+p99: gateway minus stub, same run${SETTINGS.repeat > 1 ? ', median over runs' : ''}; ` +
    `CPU ms/1k: CPU time of the target's processes per 1000 requests (wrk's own CPU not counted); ` +
    `runs: used / all (medians over the runs without errors, and of those the ones on an idle machine when there are any)\n`);
  process.stdout.write(`results: ${path.relative(process.cwd(), file)}\n`);
  if (!report.ok) {
    process.stdout.write(`\nFAILED: ${report.problems.length} problem(s); logs kept in ${tempRootDir()}\n`);
    for (const p of report.problems) {
      process.stdout.write(`- ${p.kind}: ${p.message}\n`);
      if (p.wrk_output) process.stdout.write(`${p.wrk_output.replace(/^/gm, '    ')}\n`);
    }
    process.exitCode = 1;
  }
}

// node bench/bench.mjs --summarize FILE: the table of a results file, summarized again.
function resummarize(file) {
  const report = JSON.parse(fs.readFileSync(file, 'utf8'));
  const names = [...new Set(report.runs.map((r) => r.target))];
  const targets = names.map((name) => ({ name, stub: name === 'stub' }));
  report.summary = summarize(report.runs, targets, report.settings);
  process.stdout.write(`${table(report.summary)}\n`);
  if (report.ttfb?.length) {
    report.ttfb_summary = summarizeTtfb(report.ttfb);
    process.stdout.write(`\n${ttfbTable(report.ttfb_summary)}\n`);
  }
  if (process.argv.includes('--write')) fs.writeFileSync(file, `${JSON.stringify(report, null, 1)}\n`);
}

if (process.argv[2] === '--summarize') {
  resummarize(process.argv[3]);
} else main().catch((e) => {
  markFailed();
  process.stderr.write(`bench: ${e.stack || e.message}\n`);
  process.exitCode = 1;
});
