// Soak test of the all-in-one gateway (bench/soak.sh runs it; see bench/README.md, "Soak"):
// steady load for SOAK_SECONDS (default 600) from two wrk processes at once, SOAK_CONNECTIONS/2
// connections each (default 20 in all), one sending non-streamed and one streamed requests, to
// the nginx stub through the gateway, after a SOAK_WARMUP (default 20 s) warm-up at the same load.
// The gateway's VmRSS is sampled every SOAK_SAMPLE_SECONDS (default 10). Fails (exit 1) when the
// mean RSS of the last third of the samples is more than SOAK_MAX_GROWTH (default 0.10) above
// the mean of the first third, when wrk counts any error, or when the gateway exits.
// wrk has no fixed-rate mode (wrk2's -R is not packaged), so the load is closed-loop with a
// modest connection count: the gateway runs near saturation for the whole soak.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const PRIVATE_TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'orbench-'));
fs.chmodSync(PRIVATE_TMP, 0o755);
process.env.TMPDIR = PRIVATE_TMP;

const { markFailed, sleep, startGateway, tempDir, tempRootDir } = await import('../tests/integration/lib/index.mjs');
// After the harness's own exit handler (which removes its temp dir inside this one).
process.on('exit', () => { try { fs.rmdirSync(PRIVATE_TMP); } catch { /* kept: holds logs */ } });
const { STUB_MODEL, startStub } = await import('./lib/stub.mjs');
const { cpuSample, machineInfo } = await import('./lib/sys.mjs');
const { errorCount, fmtWrkErrors, runWrk, writeBody } = await import('./lib/wrk.mjs');

const env = process.env;
const SECONDS = Number(env.SOAK_SECONDS || 600);
const WARMUP = Number(env.SOAK_WARMUP ?? 20);
const CONNS = Math.max(2, Number(env.SOAK_CONNECTIONS || 20));
const EVERY = Number(env.SOAK_SAMPLE_SECONDS || 10);
const MAX_GROWTH = Number(env.SOAK_MAX_GROWTH || 0.10);
const RESULTS_DIR = path.resolve(env.BENCH_RESULTS_DIR || path.join(BENCH_DIR, 'results'));
const CLIENT_KEY = 'sk-bench-client-0001';
const log = (...a) => process.stderr.write(`[soak ${new Date().toISOString().slice(11, 19)}] ${a.join(' ')}\n`);
const rssKb = (pid) => {
  try {
    return Number(/VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
  } catch {
    return null;
  }
};
const mb = (kb) => (kb / 1024).toFixed(1);
const mean = (xs) => xs.reduce((a, b) => a + b, 0) / xs.length;

async function main() {
  const started = new Date();
  const report = { date: started.toISOString(), machine: machineInfo(),
    settings: { seconds: SECONDS, warmup_s: WARMUP, connections: CONNS, sample_s: EVERY, max_growth: MAX_GROWTH },
    samples: [], problems: [], ok: false };
  let stub = null;
  let gw = null;
  try {
    stub = await startStub({ keepaliveTimeoutS: 3600 });
    gw = await startGateway({ mode: 'allinone', config: {
      server: { host: '127.0.0.1', require_api_key: true, upstream_timeout_ms: 30000 },
      nodes: [
        { id: 'stub', name: 'Bench stub (JSON)', format: 'openai', base_url: stub.baseURL, models: [STUB_MODEL] },
        { id: 'stubsse', name: 'Bench stub (SSE)', format: 'openai', base_url: stub.streamBaseURL, models: [STUB_MODEL] },
      ],
      connections: [
        { provider: 'stub', name: 'bench', api_key: 'sk-bench-upstream', priority: 1 },
        { provider: 'stubsse', name: 'bench', api_key: 'sk-bench-upstream', priority: 1 },
      ],
      api_keys: [{ name: 'bench', key: CLIENT_KEY }],
    } });
    const pid = gw.procs.omniroute.pid;
    const dir = tempDir('soak');
    const bodyFile = (stream) => writeBody(dir, stream ? 'stream' : 'json', {
      model: `${stream ? 'stubsse' : 'stub'}/${STUB_MODEL}`, messages: [{ role: 'user', content: 'Soak.' }], max_tokens: 32,
      ...(stream ? { stream: true, stream_options: { include_usage: true } } : {}) });
    const bodies = [bodyFile(false), bodyFile(true)];
    const load = (seconds, label) => Promise.all(bodies.map((b, i) => runWrk({
      url: `${gw.baseURL}/chat/completions`, threads: 1, connections: CONNS / 2, seconds, bodyFile: b,
      apiKey: CLIENT_KEY, timeoutS: 10, logDir: dir, label: `${label}-${i ? 'stream' : 'json'}` })));
    report.rss_start_kb = rssKb(pid);
    if (WARMUP > 0) {
      log(`warm-up ${WARMUP} s`);
      await load(WARMUP, 'warmup');
    }
    report.rss_after_warmup_kb = rssKb(pid);
    log(`soak: ${SECONDS} s, ${CONNS} connections (half streamed), RSS every ${EVERY} s; ` +
      `start ${mb(report.rss_start_kb)} MB, after warm-up ${mb(report.rss_after_warmup_kb)} MB`);
    const cpu0 = cpuSample({ omniroute: pid });
    const t0 = Date.now();
    const running = load(SECONDS, 'soak');
    let stop = false;
    const sampler = (async () => {
      for (let k = 1; !stop; k++) {
        const wait = t0 + k * EVERY * 1000 - Date.now();
        if (wait > 0) await sleep(wait);
        if (stop) break;
        const s = { t_s: Math.round((Date.now() - t0) / 1000), rss_kb: rssKb(pid) };
        if (s.rss_kb === null) break;
        report.samples.push(s);
        log(`${String(s.t_s).padStart(5)} s  RSS ${mb(s.rss_kb)} MB`);
      }
    })();
    const ws = await running;
    stop = true;
    await sampler;
    const cpuMs = cpuSample({ omniroute: pid }).omniroute - cpu0.omniroute;
    const requests = ws.reduce((a, w) => a + (w.result?.requests || 0), 0);
    report.requests = requests;
    report.rps = requests / SECONDS;
    report.cpu_ms_per_1k = (cpuMs * 1000) / Math.max(1, requests);
    report.wrk = ws.map((w) => ({ args: w.args, result: w.result }));
    for (const w of ws) {
      if (errorCount(w.result) || w.exit?.hung || w.exit?.code) {
        report.problems.push(`wrk ${w.args.join(' ')}: ${fmtWrkErrors(w.result)}${w.exit?.hung ? ', hung' : ''}`);
      }
    }
    if (!gw.procs.omniroute.running) report.problems.push('the gateway exited');
    const xs = report.samples.map((s) => s.rss_kb);
    if (xs.length >= 3) {
      const third = Math.floor(xs.length / 3);
      const first = mean(xs.slice(0, third));
      const last = mean(xs.slice(xs.length - third));
      report.first_third_mean_kb = Math.round(first);
      report.last_third_mean_kb = Math.round(last);
      report.growth = last / first - 1;
      if (report.growth > MAX_GROWTH) {
        report.problems.push(`RSS grew ${(report.growth * 100).toFixed(1)} % (first third ${mb(first)} MB, ` +
          `last third ${mb(last)} MB; limit ${MAX_GROWTH * 100} %)`);
      }
    } else {
      report.problems.push(`only ${xs.length} RSS samples: make SOAK_SECONDS at least 3 × SOAK_SAMPLE_SECONDS`);
    }
    report.peak_rss_kb = Number(/VmHWM:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))[1]);
    process.stdout.write(`\nRSS series (s: MB): ${report.samples.map((s) => `${s.t_s}: ${mb(s.rss_kb)}`).join(', ')}\n`);
    process.stdout.write(`${requests} requests (${report.rps.toFixed(0)} req/s), CPU ${report.cpu_ms_per_1k.toFixed(0)} ms/1k requests; ` +
      `RSS first third ${mb(report.first_third_mean_kb)} MB, last third ${mb(report.last_third_mean_kb)} MB: ` +
      `${report.growth >= 0 ? '+' : ''}${(report.growth * 100).toFixed(1)} %; VmHWM ${mb(report.peak_rss_kb)} MB\n`);
    report.ok = report.problems.length === 0;
  } catch (e) {
    report.problems.push(`fatal: ${e.message}`);
  } finally {
    await gw?.stop().catch(() => {});
    await stub?.stop().catch(() => {});
  }
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  const file = path.join(RESULTS_DIR, `soak-${started.toISOString().replace(/:/g, '-').replace(/\.\d+Z$/, 'Z')}.json`);
  fs.writeFileSync(file, `${JSON.stringify(report, null, 1)}\n`);
  process.stdout.write(`results: ${path.relative(process.cwd(), file)}\n`);
  if (!report.ok) {
    markFailed();
    process.stdout.write(`FAILED:\n${report.problems.map((p) => `- ${p}`).join('\n')}\nlogs kept in ${tempRootDir()}\n`);
    process.exitCode = 1;
  }
}

main().catch((e) => { process.stderr.write(`${e.stack}\n`); process.exitCode = 1; });
