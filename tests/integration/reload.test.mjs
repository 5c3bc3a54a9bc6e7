// Config reload without a restart: the harness's YAML file is rewritten, then SIGHUP goes to
// every process that reads it (or the 2-second file watch notices). A new alias, combo and
// client key work afterwards, a connection removed from the file stops being used, and an
// invalid file is refused with one log line while the config in force keeps working.
//
// OMNI_IT_MODES=allinone,distributed picks the modes (default both).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, describe, it } from 'node:test';
import {
  markFailed, missingBinaries, request, startGateway, startMock, startPostgres, startRedis,
  waitFor,
} from './lib/index.mjs';

const MODES = (process.env.OMNI_IT_MODES || 'allinone,distributed').split(',').map((s) => s.trim()).filter(Boolean);

const FIRST_KEY = 'sk-client-reload-0001';
const SECOND_KEY = 'sk-client-reload-0002';

function reloadConfig(mockURL) {
  return {
    server: { host: '127.0.0.1', require_api_key: true, threads: 2, upstream_connect_timeout_ms: 2000,
      upstream_timeout_ms: 20000 },
    nodes: [{ id: 'mock', format: 'openai', base_url: mockURL, models: ['gpt-4o-mini'] }],
    connections: [
      { provider: 'mock', name: 'a', api_key: 'sk-up-a', priority: 1 },
      { provider: 'mock', name: 'b', api_key: 'sk-up-b', priority: 2 },
    ],
    api_keys: [{ name: 'first', key: FIRST_KEY }],
    aliases: [{ pattern: 'old-alias', target: 'mock/gpt-4o-mini' }],
    resilience: { cooldown: { base_ms: 1, max_ms: 50 } },
  };
}

function metricValue(text, name, labels) {
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels}`));
  return line ? Number(line.trim().split(/\s+/).pop()) : 0;
}

for (const mode of MODES) {
  const missing = missingBinaries(mode);
  const skip = missing.length && process.env.OMNI_IT_SKIP_MISSING === '1'
    ? `binaries not built: ${missing.join('; ')}` : false;
  const distributed = mode === 'distributed';

  describe(`config reload (${mode})`, { timeout: 300000, skip }, () => {
    let mock;
    let redis;
    let pg;
    let gw;

    const test = (name, fn) => it(name, { timeout: 60000 }, async () => {
      try {
        await fn();
        const dead = Object.values(gw.procs).filter((p) => !p.running);
        if (dead.length) throw new Error(`gateway process died: ${dead.map((p) => p.name).join(', ')}`);
      } catch (e) {
        markFailed();
        e.message += `\n===== process logs (${mode}) =====\n${gw ? gw.logs(40) : ''}`;
        throw e;
      }
    });

    const chat = (model, key = FIRST_KEY) => request(`${gw.baseURL}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
      body: { model, messages: [{ role: 'user', content: 'hello' }], max_tokens: 8 },
    });
    // The processes that read the config file.
    const readers = () => Object.values(gw.procs).filter((p) => p.name !== 'translator');
    const writeConfig = (cfg) => fs.writeFileSync(gw.configPath, typeof cfg === 'string' ? cfg : `${JSON.stringify(cfg, null, 2)}\n`);
    const hangUp = () => readers().forEach((p) => p.signal('SIGHUP'));
    const logsOf = () => readers().map((p) => p.tail(400)).join('');
    const countLines = (text) => logsOf().split('\n').filter((l) => l.includes(text)).length;
    const upstreamKeys = async (from) => (await mock.requests({ since: from })).map((x) => x.key);

    let current;

    before(async () => {
      mock = await startMock();
      if (distributed) [redis, pg] = await Promise.all([startRedis(), startPostgres()]);
      try {
        gw = await startGateway({ mode, config: reloadConfig(mock.baseURL), redis, postgres: pg });
      } catch (e) {
        markFailed();
        throw e;
      }
      current = structuredClone(gw.config);
    });

    after(async () => {
      await gw?.stop();
      await Promise.all([mock?.stop(), redis?.stop(), pg?.stop()]);
    });

    test('before the reload: the old alias routes, the new key and alias do not', async () => {
      assert.equal((await chat('old-alias')).status, 200);
      assert.equal((await chat('old-alias', SECOND_KEY)).status, 401);
      const r = await chat('new-alias');
      assert.ok(r.status >= 400, `new-alias answered ${r.status}`);
    });

    test('SIGHUP: a new alias, combo and client key work; a removed connection is no longer used', async () => {
      const reloadsBefore = countLines('"config reloaded');
      current.aliases.push({ pattern: 'new-alias', target: 'mock/gpt-4o-mini' });
      current.combos = [{ name: 'new-combo', models: ['mock/gpt-4o-mini'] }];
      current.api_keys.push({ name: 'second', key: SECOND_KEY });
      current.connections = current.connections.filter((c) => c.name !== 'a');  // sk-up-a goes
      writeConfig(current);
      hangUp();
      await waitFor('every process to log the reload', () => countLines('"config reloaded') >= reloadsBefore + readers().length,
        { timeoutMs: 10000, intervalMs: 100 });
      // The edge may keep a refused key for key_cache_ttl_s; the router learns connections
      // from the accounts catalog within a second in distributed mode.
      await waitFor('the new key and alias to be accepted', async () => (await chat('new-alias', SECOND_KEY)).status === 200,
        { timeoutMs: 15000, intervalMs: 250 });
      assert.equal((await chat('new-combo', SECOND_KEY)).status, 200);
      assert.equal((await chat('old-alias')).status, 200);
      await waitFor('connection a to leave the candidates', async () => {
        const from = await mock.mark();
        const r = await chat('mock/gpt-4o-mini');
        return r.status === 200 && (await upstreamKeys(from)).every((k) => k === 'sk-up-b');
      }, { timeoutMs: 10000, intervalMs: 250 });
      assert.match(logsOf(), /"config reloaded".*"changes":"[^"]*aliases 1->2/);
    });

    test('an invalid file is refused with its key path and the config in force stays', async () => {
      const refusedBefore = countLines('config reload refused');
      const bad = structuredClone(current);
      bad.combos.push({ name: 'broken', models: ['mock/gpt-4o-mini'], colour: 'red' });
      writeConfig(bad);
      hangUp();
      await waitFor('every process to refuse the file', () => countLines('config reload refused') >= refusedBefore + readers().length,
        { timeoutMs: 10000, intervalMs: 100 });
      const refusal = logsOf().split('\n').filter((l) => l.includes('config reload refused')).pop();
      assert.match(refusal, /combos.*colour/, refusal);
      // Not half-applied, and nothing died.
      assert.equal((await chat('new-alias', SECOND_KEY)).status, 200);
      assert.equal((await chat('old-alias')).status, 200);
      assert.ok((await chat('broken')).status >= 400);
      // Not even YAML.
      writeConfig('aliases: [ { pattern: oops\n');
      hangUp();
      await waitFor('every process to refuse the broken YAML',
        () => countLines('config reload refused') >= refusedBefore + 2 * readers().length,
        { timeoutMs: 10000, intervalMs: 100 });
      assert.equal((await chat('new-alias', SECOND_KEY)).status, 200);
    });

    test('the file watch reloads without a signal', async () => {
      current.aliases.push({ pattern: 'watched-alias', target: 'new-combo' });
      writeConfig(current);
      await waitFor('the watched alias to route', async () => (await chat('watched-alias')).status === 200,
        { timeoutMs: 15000, intervalMs: 250 });
    });

    test('reloads are counted in omniroute_config_reloads_total', async () => {
      const url = distributed ? gw.metrics.router : `${gw.url}/metrics`;
      await waitFor('the reload metrics', async () => {
        const text = (await request(url)).text;
        return metricValue(text, 'omniroute_config_reloads_total', '{result="ok"}') >= 2
          && metricValue(text, 'omniroute_config_reloads_total', '{result="error"}') >= 2;
      }, { timeoutMs: 5000, intervalMs: 200 });
    });
  });
}
