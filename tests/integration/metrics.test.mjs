// /metrics as Prometheus sees it: the exposition passes `promtool check metrics`, carries
// the OpenTelemetry GenAI metrics and the gateway's overhead, and a real Prometheus server
// scrapes the gateway and answers a query about it. Distributed, every internal service
// (router, translator, accounts, usage) serves its own /metrics with gRPC server metrics,
// and Prometheus scrapes them all.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  freePort, missingBinaries, request, spawnProcess, startGateway, startMock, startPostgres, startRedis,
  tempDir, waitFor,
} from './lib/index.mjs';

const CLIENT_KEY = 'sk-client-metrics-0001';
const have = (bin) => spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0;
const skip = missingBinaries('allinone').length ? 'all-in-one binary not built' : false;

function promtoolCheck(text) {
  const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
  assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
}

// Runs a Prometheus that scrapes `jobs` ({job: "host:port", ...} or {job: {target, path}})
// every second, calls `fn(query)` (query(promql) → the result vector, [] until there is
// one) and stops it.
async function withPrometheus(jobs, fn) {
  const dir = tempDir('prometheus');
  const port = await freePort();
  const lines = ['global: { scrape_interval: 1s, evaluation_interval: 1s }', 'scrape_configs:'];
  for (const [job, target] of Object.entries(jobs)) {
    lines.push(`  - job_name: ${job}`, `    static_configs: [ { targets: ["${target}"] } ]`);
  }
  fs.writeFileSync(path.join(dir, 'prometheus.yml'), `${lines.join('\n')}\n`);
  const prom = spawnProcess('prometheus', 'prometheus', [
    `--config.file=${path.join(dir, 'prometheus.yml')}`,
    `--storage.tsdb.path=${path.join(dir, 'data')}`,
    `--web.listen-address=127.0.0.1:${port}`,
  ], { logDir: dir });
  const query = async (promql) => {
    prom.assertRunning();
    const res = await request(`http://127.0.0.1:${port}/api/v1/query?query=${encodeURIComponent(promql)}`)
      .catch(() => null);
    return res?.json?.data?.result || [];
  };
  try {
    return await fn(query);
  } finally {
    await prom.stop({ sig: 'SIGTERM', timeoutMs: 5000 });
  }
}

describe('metrics (allinone)', { timeout: 120000, skip }, () => {
  let mock;
  let gw;

  before(async () => {
    mock = await startMock();
    gw = await startGateway({
      mode: 'allinone',
      config: {
        server: { require_api_key: true },
        nodes: [{ id: 'mock', format: 'openai', base_url: `http://127.0.0.1:${mock.port}/v1`, models: ['m'] }],
        connections: [{ provider: 'mock', name: 'a', api_key: 'sk-a' }],
        api_keys: [{ name: 'metrics', key: CLIENT_KEY }],
      },
    });
    for (const stream of [false, true]) {
      const res = await request(`${gw.baseURL}/chat/completions`, {
        method: 'POST',
        headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json' },
        body: { model: 'mock/m', stream, stream_options: stream ? { include_usage: true } : undefined,
          messages: [{ role: 'user', content: 'count these words please' }] },
      });
      assert.equal(res.status, 200, res.text);
    }
  });
  after(async () => {
    await gw?.stop().catch(() => {});
    await mock?.stop?.().catch(() => {});
  });

  it('exposes GenAI semantic-convention metrics and the overhead histogram', async () => {
    const text = (await request(`${gw.url}/metrics`)).text;
    assert.match(text, /^gen_ai_client_token_usage_bucket\{.*gen_ai_token_type="input".*\} \d+/m);
    assert.match(text, /^gen_ai_client_token_usage_count\{.*gen_ai_token_type="output".*\} 2$/m);
    assert.match(text, /^gen_ai_client_operation_duration_seconds_count\{.*gen_ai_provider_name="mock".*\} 2$/m);
    assert.match(text, /^gen_ai_server_time_to_first_token_seconds_count\{.*\} 2$/m);
    assert.match(text, /^omniroute_overhead_seconds_count 2$/m);
    assert.match(text, /^omniroute_requests_total\{.*route="chat_completions".*status="200".*\} 2$/m);
  });

  it('carries the client\'s W3C trace context upstream, with its own span', async () => {
    const incoming = '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01';
    const since = await mock.mark();
    const res = await request(`${gw.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { authorization: `Bearer ${CLIENT_KEY}`, 'content-type': 'application/json', traceparent: incoming },
      body: { model: 'mock/m', messages: [{ role: 'user', content: 'traced' }] },
    });
    assert.equal(res.status, 200, res.text);
    const seen = (await mock.requests({ since })).at(-1).headers.traceparent;
    assert.match(seen, /^00-4bf92f3577b34da6a3ce929d0e0e4736-[0-9a-f]{16}-01$/);
    assert.notEqual(seen, incoming);
  });

  it('passes promtool check metrics', { skip: have('promtool') ? false : 'promtool not installed' }, async () => {
    promtoolCheck((await request(`${gw.url}/metrics`)).text);
  });

  it('is scraped by a real Prometheus', { skip: have('prometheus') ? false : 'prometheus not installed', timeout: 60000 }, async () => {
    const value = await withPrometheus({ omniroute: `127.0.0.1:${gw.port}` }, (query) =>
      waitFor('Prometheus to answer a query about the gateway', async () => {
        const result = await query('sum(omniroute_requests_total{route="chat_completions",status="200"})');
        return result.length ? Number(result[0].value[1]) : null;
      }, { timeoutMs: 45000, intervalMs: 500 }));
    assert.ok(value >= 2, `scraped ${value}`);
  });
});

const distSkip = missingBinaries('distributed').length ? 'service binaries not built' : false;

describe('metrics (distributed)', { timeout: 180000, skip: distSkip }, () => {
  let mock;
  let redis;
  let pg;
  let gw;
  // The gRPC service each process serves, as grpc_server_handled_total labels it.
  const GRPC_SERVICE = {
    router: 'omniroute.router.v1.Router',
    usage: 'omniroute.usage.v1.Usage',
    accounts: 'omniroute.accounts.v1.Accounts',
    translator: 'omniroute.translator.v1.Translator',
  };

  before(async () => {
    mock = await startMock();
    [redis, pg] = await Promise.all([startRedis(), startPostgres()]);
    gw = await startGateway({
      mode: 'distributed',
      redis,
      postgres: pg,
      config: {
        server: { require_api_key: true },
        nodes: [{ id: 'mock', format: 'openai', base_url: `http://127.0.0.1:${mock.port}/v1`, models: ['m'] }],
        connections: [{ provider: 'mock', name: 'a', api_key: 'sk-a' }],
        api_keys: [{ name: 'metrics', key: CLIENT_KEY }],
      },
    });
    // An OpenAI client calling an OpenAI upstream, and an Anthropic client (the translator).
    const calls = [
      [`${gw.baseURL}/chat/completions`, { model: 'mock/m', messages: [{ role: 'user', content: 'hi' }] }],
      [`${gw.baseURL}/messages`, { model: 'mock/m', max_tokens: 16, messages: [{ role: 'user', content: 'hi' }] }],
    ];
    for (const [url, body] of calls) {
      const res = await request(url, {
        method: 'POST',
        headers: { authorization: `Bearer ${CLIENT_KEY}`, 'x-api-key': CLIENT_KEY, 'content-type': 'application/json' },
        body,
      });
      assert.equal(res.status, 200, `${url}: ${res.text}`);
    }
  });
  after(async () => {
    await gw?.stop().catch(() => {});
    await Promise.all([mock?.stop?.(), redis?.stop(), pg?.stop()].map((p) => p?.catch(() => {})));
  });

  it('every internal service serves gRPC server and process metrics on its own port', async () => {
    assert.deepEqual(Object.keys(gw.metrics).sort(), ['accounts', 'router', 'translator', 'usage']);
    for (const [name, url] of Object.entries(gw.metrics)) {
      const res = await request(url);
      assert.equal(res.status, 200, `${name}: ${res.text}`);
      assert.match(res.headers.get('content-type'), /version=0\.0\.4/, name);
      assert.match(res.text, /^process_resident_memory_bytes \d+/m, name);
      assert.match(res.text, /^process_cpu_seconds_total [\d.e+-]+$/m, name);
      const handled = new RegExp(`^grpc_server_handled_total\\{[^}]*grpc_service="${GRPC_SERVICE[name].replace(/\./g, '\\.')}"[^}]*\\} [1-9]`, 'm');
      assert.match(res.text, handled, `${name}:\n${res.text}`);
      assert.match(res.text, /^grpc_server_handling_seconds_bucket\{/m, name);
      const health = await request(url.replace(/\/metrics$/, '/healthz'));
      assert.equal(health.status, 200, name);
    }
  });

  it('the router exposes its breakers and state store; usage its own metrics', async () => {
    const router = (await request(gw.metrics.router)).text;
    assert.match(router, /^omniroute_router_state_store_up\{store="redis"\} 1$/m);
    assert.match(router, /^omniroute_breaker_state\{provider="mock"\} 0$/m);
    await waitFor('usage to count the records', async () => {
      const usage = (await request(gw.metrics.usage)).text;
      return /^omniroute_usage_records_total\{[^}]*\} [1-9]/m.test(usage);
    }, { timeoutMs: 15000, intervalMs: 200 });
  });

  it('passes promtool check metrics on every service', { skip: have('promtool') ? false : 'promtool not installed' }, async () => {
    for (const [name, url] of Object.entries(gw.metrics)) {
      const text = (await request(url)).text;
      assert.ok(text.length > 0, name);
      promtoolCheck(text);
    }
    promtoolCheck((await request(`${gw.url}/metrics`)).text);
  });

  it('is scraped by a real Prometheus, every service', { skip: have('prometheus') ? false : 'prometheus not installed', timeout: 60000 }, async () => {
    const jobs = { edge: `127.0.0.1:${gw.port}` };
    for (const [name, url] of Object.entries(gw.metrics)) jobs[name] = new URL(url).host;
    await withPrometheus(jobs, async (query) => {
      const up = await waitFor('Prometheus to scrape every service', async () => {
        const result = await query('up == 1');
        return result.length === Object.keys(jobs).length ? result : null;
      }, { timeoutMs: 45000, intervalMs: 500 });
      assert.deepEqual(up.map((r) => r.metric.job).sort(), Object.keys(jobs).sort());
      const handled = await waitFor('grpc_server_handled_total of the services', async () => {
        const result = await query('sum by (job, grpc_service) (grpc_server_handled_total)');
        const jobsSeen = new Set(result.map((r) => r.metric.job));
        return ['router', 'usage', 'accounts', 'translator'].every((j) => jobsSeen.has(j)) ? result : null;
      }, { timeoutMs: 30000, intervalMs: 500 });
      for (const name of ['router', 'usage', 'accounts', 'translator']) {
        const row = handled.find((r) => r.metric.job === name && r.metric.grpc_service === GRPC_SERVICE[name]);
        assert.ok(row && Number(row.value[1]) >= 1, `${name}: ${JSON.stringify(handled)}`);
      }
    });
  });
});
