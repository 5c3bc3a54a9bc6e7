// /metrics as Prometheus sees it: the exposition passes `promtool check metrics`, carries
// the OpenTelemetry GenAI metrics and the gateway's overhead, and a real Prometheus server
// scrapes the gateway and answers a query about it.

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  freePort, missingBinaries, request, spawnProcess, startGateway, startMock, tempDir, waitFor,
} from './lib/index.mjs';

const CLIENT_KEY = 'sk-client-metrics-0001';
const have = (bin) => spawnSync('sh', ['-c', `command -v ${bin}`]).status === 0;
const skip = missingBinaries('allinone').length ? 'all-in-one binary not built' : false;

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
    const text = (await request(`${gw.url}/metrics`)).text;
    const r = spawnSync('promtool', ['check', 'metrics'], { input: text, encoding: 'utf8' });
    assert.equal(r.status, 0, `${r.stdout}${r.stderr}`);
  });

  it('is scraped by a real Prometheus', { skip: have('prometheus') ? false : 'prometheus not installed', timeout: 60000 }, async () => {
    const dir = tempDir('prometheus');
    const port = await freePort();
    fs.writeFileSync(path.join(dir, 'prometheus.yml'), [
      'global: { scrape_interval: 1s, evaluation_interval: 1s }',
      'scrape_configs:',
      '  - job_name: omniroute',
      `    static_configs: [ { targets: ["127.0.0.1:${gw.port}"] } ]`,
      '',
    ].join('\n'));
    const prom = spawnProcess('prometheus', 'prometheus', [
      `--config.file=${path.join(dir, 'prometheus.yml')}`,
      `--storage.tsdb.path=${path.join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
    ], { logDir: dir });
    try {
      const query = encodeURIComponent('sum(omniroute_requests_total{route="chat_completions",status="200"})');
      const value = await waitFor('Prometheus to answer a query about the gateway', async () => {
        prom.assertRunning();
        const res = await request(`http://127.0.0.1:${port}/api/v1/query?query=${query}`).catch(() => null);
        const result = res?.json?.data?.result;
        return result && result.length ? Number(result[0].value[1]) : null;
      }, { timeoutMs: 45000, intervalMs: 500 });
      assert.ok(value >= 2, `scraped ${value}`);
    } finally {
      await prom.stop({ sig: 'SIGTERM', timeoutMs: 5000 });
    }
  });
});
