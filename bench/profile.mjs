// CPU profile of the all-in-one gateway's request path (bench/profile.sh runs it; see
// bench/README.md, "Profile"): the gateway under valgrind --tool=callgrind (OMNI_BUILD_DIR
// points at a wrapper made by profile.sh), instrumentation switched on only after start-up and a
// warm-up, then PROFILE_SECONDS (default 40) of non-streamed requests from wrk at
// PROFILE_CONNECTIONS (default 2), collection off, the gateway stopped (callgrind writes its
// file at exit) and callgrind_annotate run on it (inclusive and self).

import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const BENCH_DIR = path.dirname(fileURLToPath(import.meta.url));
const PRIVATE_TMP = fs.mkdtempSync(path.join(os.tmpdir(), 'orbench-'));
fs.chmodSync(PRIVATE_TMP, 0o755);
process.env.TMPDIR = PRIVATE_TMP;

const { markFailed, startGateway, tempDir } = await import('../tests/integration/lib/index.mjs');
process.on('exit', () => { try { fs.rmdirSync(PRIVATE_TMP); } catch { /* kept: holds logs */ } });
const { STUB_MODEL, startStub } = await import('./lib/stub.mjs');
const { fmtWrkErrors, runWrk, writeBody } = await import('./lib/wrk.mjs');

const env = process.env;
const OUT = env.PROFILE_OUT; // callgrind.out path (set by profile.sh, used by the wrapper)
const SECONDS = Number(env.PROFILE_SECONDS || 40);
const CONNS = Number(env.PROFILE_CONNECTIONS || 2);
const STREAM = env.PROFILE_STREAM === 'yes';
const log = (...a) => process.stderr.write(`[profile ${new Date().toISOString().slice(11, 19)}] ${a.join(' ')}\n`);
const CLIENT_KEY = 'sk-bench-client-0001';

let stub = null;
let gw = null;
let ok = false;
try {
  stub = await startStub({ keepaliveTimeoutS: 3600 });
  log('starting the all-in-one under callgrind (slow)');
  gw = await startGateway({ mode: 'allinone', readyTimeoutMs: 180000, config: {
    server: { host: '127.0.0.1', require_api_key: true, upstream_timeout_ms: 60000 },
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
  const dir = tempDir('profile');
  const body = writeBody(dir, 'body', { model: `${STREAM ? 'stubsse' : 'stub'}/${STUB_MODEL}`,
    messages: [{ role: 'user', content: 'Say hello to the benchmark.' }], max_tokens: 32,
    ...(STREAM ? { stream: true, stream_options: { include_usage: true } } : {}) });
  const wrk = (seconds, label) => runWrk({ url: `${gw.baseURL}/chat/completions`, threads: 1, connections: CONNS,
    seconds, bodyFile: body, apiKey: CLIENT_KEY, timeoutS: 10, logDir: dir, label });
  const warm = await wrk(5, 'warmup');
  log(`warm-up: ${warm.result?.requests} requests, errors: ${fmtWrkErrors(warm.result)}`);
  execFileSync('callgrind_control', ['-i', 'on', String(pid)], { stdio: 'inherit', timeout: 60000 });
  const w = await wrk(SECONDS, 'profile');
  execFileSync('callgrind_control', ['-i', 'off', String(pid)], { stdio: 'inherit', timeout: 60000 });
  // Dump now (a part file next to PROFILE_OUT): the stop below may end in SIGKILL.
  execFileSync('callgrind_control', ['-d', 'bench', String(pid)], { stdio: 'inherit', timeout: 120000 });
  log(`profiled: ${w.result?.requests} requests in ${SECONDS} s at ${CONNS} connection(s), ` +
    `p50 ${(w.result?.latency_us.p['50'] / 1000).toFixed(2)} ms under callgrind, errors: ${fmtWrkErrors(w.result)}`);
  fs.writeFileSync(`${OUT}.requests`, `${w.result?.requests}\n`);
  ok = Boolean(w.result?.requests);
} catch (e) {
  log(`FAILED: ${e.stack || e.message}`);
  markFailed();
} finally {
  await gw?.stop().catch(() => {});
  await stub?.stop().catch(() => {});
}
process.exitCode = ok ? 0 : 1;
