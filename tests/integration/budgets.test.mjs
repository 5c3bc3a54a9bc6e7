// Usage records, cost and budgets through the real edge, in both modes (the all-in-one with
// SQLite and budgets in memory; the distributed services with PostgreSQL and budgets in Redis):
//   1. every request, in every client format, streamed or not, gets exactly one usage row
//      under its X-Request-Id, with the provider's token counts and a cost from the configured
//      pricing (cached input at its own price);
//   2. a key over its daily budget gets 429 in its client's error shape, with Retry-After and
//      a message naming the limit and the reset; /api/usage/self shows the spend; other keys
//      pass;
//   3. 50 concurrent requests on a key with $0.01 left overspend by less than one estimate;
//   4. (distributed) nothing is lost while PostgreSQL and the usage service are killed and
//      restarted under a steady load, and the edge drains its spool on SIGTERM.
//
// OMNI_IT_MODES=allinone,distributed picks the modes (default both).

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  assertClientError, markFailed, missingBinaries, request, startGateway, startMock, startPostgres,
  startRedis, waitFor, withTimeout,
} from './lib/index.mjs';

const MODES = (process.env.OMNI_IT_MODES || 'allinone,distributed').split(',').map((s) => s.trim()).filter(Boolean);

const KEYS = {
  main: 'sk-client-budgets-main-0001', // no budget
  bud: 'sk-client-budgets-bud-0001', // tiny daily budget
  free: 'sk-client-budgets-free-0001', // no budget
  conc: 'sk-client-budgets-conc-0001', // $0.01 daily
  load: 'sk-client-budgets-load-0001', // no budget (the chaos test)
};
const keyId = (name) => `cfg:${name}`;

// One node per provider format, all on the mock, so no translation is needed.
const PROVIDERS = {
  openai: { node: 'p-openai', model: 'gpt-4o-mini' },
  responses: { node: 'p-responses', model: 'gpt-5-mini' },
  anthropic: { node: 'p-anthropic', model: 'claude-sonnet-4-5' },
  gemini: { node: 'p-gemini', model: 'gemini-2.5-pro' },
};
const FORMATS = Object.keys(PROVIDERS);
// USD per 1M tokens: large, so that every token shows; cached input at a tenth.
const PRICE = { input: 1000, output: 4000, cached_input: 100 };
// The concurrency node: output only, so that one request's cost and estimate are both
// max_tokens × output price: 2 tokens × $1000/M = $0.002.
const CONC = { node: 'p-conc', model: 'conc-model', price: { input: 0, output: 1000 }, maxTokens: 2 };
const CONC_COST = (CONC.maxTokens * CONC.price.output) / 1e6;
const CONC_LIMIT = 0.01;
const BUD_DAILY = 0.001;
// The load node: the mock answers it late, so that the load spans the outages.
const LOAD = { node: 'p-load', model: 'load-model' };

function gatewayConfig(mockUrl) {
  const node = (format, id, model) => ({ id, name: `${id} on the mock`, format,
    base_url: format === 'gemini' ? `${mockUrl}/v1beta` : `${mockUrl}/v1`, models: [model] });
  return {
    server: { host: '127.0.0.1', require_api_key: true, threads: 4, upstream_connect_timeout_ms: 2000,
      upstream_timeout_ms: 20000, drain_timeout_ms: 15000 },
    nodes: [
      ...FORMATS.map((f) => node(f, PROVIDERS[f].node, PROVIDERS[f].model)),
      node('openai', CONC.node, CONC.model),
      node('openai', LOAD.node, LOAD.model),
    ],
    connections: [...FORMATS.map((f) => PROVIDERS[f].node), CONC.node, LOAD.node]
      .map((id) => ({ provider: id, name: 'main', api_key: `sk-up-${id}` })),
    api_keys: Object.entries(KEYS).map(([name, key]) => ({ name, key })),
    pricing: [
      ...FORMATS.map((f) => ({ provider: PROVIDERS[f].node, model: '*', ...PRICE })),
      { provider: CONC.node, model: CONC.model, ...CONC.price },
      { provider: LOAD.node, model: '*', input: 1, output: 1 },
    ],
    budgets: [{ key: 'bud', daily: BUD_DAILY }, { key: 'conc', daily: CONC_LIMIT }],
    usage: { budget_reset_utc: '00:00' },
    resilience: { cooldown: { base_ms: 1, max_ms: 50 } },
  };
}

// One request in a client format, through fetch; returns {status, headers, text, json, id}.
async function send(gw, format, { key = KEYS.main, stream = false, text = 'hello', model, maxTokens,
  timeoutMs = 20000 } = {}) {
  const prov = PROVIDERS[format];
  const m = model || `${prov.node}/${prov.model}`;
  const user = [{ role: 'user', content: text }];
  let url;
  let headers = { 'content-type': 'application/json' };
  let body;
  if (format === 'openai') {
    url = `${gw.url}/v1/chat/completions`;
    headers.authorization = `Bearer ${key}`;
    body = { model: m, messages: user, stream };
    if (stream) body.stream_options = { include_usage: true };
    if (maxTokens) body.max_tokens = maxTokens;
  } else if (format === 'responses') {
    url = `${gw.url}/v1/responses`;
    headers.authorization = `Bearer ${key}`;
    body = { model: m, input: text, stream };
    if (maxTokens) body.max_output_tokens = maxTokens;
  } else if (format === 'anthropic') {
    url = `${gw.url}/v1/messages`;
    headers = { ...headers, 'x-api-key': key, 'anthropic-version': '2023-06-01' };
    body = { model: m, max_tokens: maxTokens || 256, messages: user, stream };
  } else {
    url = `${gw.url}/v1beta/models/${m}:${stream ? 'streamGenerateContent?alt=sse' : 'generateContent'}`;
    headers['x-goog-api-key'] = key;
    body = { contents: [{ role: 'user', parts: [{ text }] }] };
    if (maxTokens) body.generationConfig = { maxOutputTokens: maxTokens };
  }
  const r = await request(url, { method: 'POST', headers, body, timeoutMs });
  return { ...r, id: r.headers.get('x-request-id') };
}

const cost = (u, p = PRICE) => ((u.input - u.cached) * p.input + u.cached * (p.cached_input ?? p.input)
  + u.output * p.output) / 1e6;
const near = (a, b, eps = 1e-9) => Math.abs(Number(a) - Number(b)) <= eps;

// The undelivered bytes of a spool directory (segments from the head on).
function spoolPending(dir) {
  if (!fs.existsSync(dir)) return 0;
  const segs = fs.readdirSync(dir).filter((n) => /^\d{20}\.seg$/.test(n)).sort();
  let head = [0, 0];
  try {
    head = fs.readFileSync(path.join(dir, 'head'), 'utf8').trim().split(/\s+/).map(Number);
  } catch {
    // no head yet: everything from the first segment
    if (segs.length) head = [Number(segs[0].slice(0, 20)), 0];
  }
  let pending = 0;
  for (const s of segs) {
    const n = Number(s.slice(0, 20));
    const size = fs.statSync(path.join(dir, s)).size;
    if (n > head[0]) pending += size;
    else if (n === head[0]) pending += Math.max(0, size - head[1]);
  }
  return pending;
}

for (const mode of MODES) {
  const missing = missingBinaries(mode);
  const skip = missing.length && process.env.OMNI_IT_SKIP_MISSING === '1'
    ? `binaries not built: ${missing.join('; ')}` : false;

  describe(`budgets (${mode})`, { timeout: 400000, skip }, () => {
    let mock;
    let redis;
    let pg;
    let gw;

    // A test that carries the processes' logs when it fails.
    const test = (name, fn, opts = {}) => it(name, { timeout: 60000, ...opts }, async (t) => {
      try {
        await fn(t);
      } catch (e) {
        markFailed();
        e.message += `\n===== process logs (${mode}) =====\n${gw ? gw.logs(40) : ''}${mock ? mock.proc.tail(10) : ''}`;
        throw e;
      }
    });

    // Rows of the usage table, by SQL, from wherever this mode stores them.
    const rowsWhere = (where) => {
      if (mode === 'distributed') return pg.rows(`select * from usage_records where ${where}`);
      return fs.existsSync(gw.sqlitePath) ? sqliteAll(where) : Promise.resolve([]);
    };
    const sqliteAll = async (where) => {
      const { execFile } = await import('node:child_process');
      return new Promise((resolve, reject) => {
        execFile('sqlite3', ['-json', '-cmd', '.timeout 2000', gw.sqlitePath, `select * from usage_records where ${where}`],
          { timeout: 10000, encoding: 'utf8', maxBuffer: 64 << 20 }, (err, out, stderr) => {
            if (err) reject(new Error(`${err.message}\n${stderr}`));
            else resolve(out.trim() ? JSON.parse(out) : []);
          });
      });
    };
    const inList = (ids) => `request_id in (${ids.map((i) => `'${i.replace(/'/g, "''")}'`).join(',')})`;
    // Waits until every id has a row; returns the rows by id (and fails on duplicates).
    const rowsFor = async (ids, timeoutMs = 20000) => {
      let rows = [];
      await waitFor(`usage rows of ${ids.length} requests`, async () => {
        rows = await rowsWhere(inList(ids));
        return new Set(rows.map((r) => r.request_id)).size >= ids.length;
      }, { timeoutMs, intervalMs: 200 }).catch((e) => {
        const have = new Set(rows.map((r) => r.request_id));
        e.message += `; missing: ${ids.filter((i) => !have.has(i)).join(', ')}`;
        throw e;
      });
      const byId = new Map();
      for (const r of rows) {
        assert.ok(!byId.has(r.request_id), `two rows for request ${r.request_id}`);
        byId.set(r.request_id, r);
      }
      return byId;
    };
    const self = (key) => request(`${gw.url}/api/usage/self`, { headers: { authorization: `Bearer ${key}` } });
    const admin = (p) => request(`${gw.url}${p}`, { headers: { authorization: `Bearer ${gw.adminKey}` } });

    before(async () => {
      try {
        mock = await startMock();
        if (mode === 'distributed') {
          // Commits must survive the crash test's SIGKILL (the default synchronous_commit=off
          // loses the last few hundred ms of acknowledged commits).
          [redis, pg] = await Promise.all([startRedis(), startPostgres({ settings: { synchronous_commit: 'on' } })]);
        }
        gw = await startGateway({ mode, redis, postgres: pg, config: gatewayConfig(mock.url) });
      } catch (e) {
        markFailed();
        throw e;
      }
    });

    after(async () => {
      await gw?.stop();
      await Promise.all([mock?.stop(), redis?.stop(), pg?.stop()]);
    });

    test('one usage row per request, in every client format, streamed or not, priced (cache-aware)', async () => {
      const sent = [];
      for (const format of FORMATS) {
        for (const stream of [false, true]) {
          for (const cached of [0, 4]) {
            if (cached) await mock.fault({ cached_tokens: cached });
            const since = await mock.mark();
            const r = await send(gw, format, { stream, text: `usage ${format} ${stream} ${cached} one two three` });
            const what = `${format} ${stream ? 'streamed' : 'plain'} cached=${cached}`;
            assert.equal(r.status, 200, `${what}: ${r.text.slice(0, 500)}`);
            assert.ok(r.id, `${what}: X-Request-Id`);
            const up = await mock.requests({ since });
            assert.equal(up.length, 1, `${what}: one upstream request`);
            assert.equal(up[0].answer.usage.cached, cached, `${what}: the mock reported the cached tokens`);
            sent.push({ what, id: r.id, usage: up[0].answer.usage, format, stream });
          }
        }
      }
      assert.equal(new Set(sent.map((s) => s.id)).size, sent.length, 'request ids are unique');
      const rows = await rowsFor(sent.map((s) => s.id));
      const bad = [];
      for (const s of sent) {
        const row = rows.get(s.id);
        const want = { input: s.usage.input, output: s.usage.output, cached: s.usage.cached, cost: cost(s.usage) };
        const got = { input: Number(row.input_tokens), output: Number(row.output_tokens),
          cached: Number(row.cached_tokens ?? 0), cost: Number(row.cost_usd) };
        if (got.input !== want.input || got.output !== want.output || got.cached !== want.cached
          || !near(got.cost, want.cost) || Number(row.status) !== 200 || row.client_key_id !== keyId('main')
          || row.provider !== PROVIDERS[s.format].node) {
          bad.push(`${s.what}: want ${JSON.stringify(want)}, row ${JSON.stringify({ ...got, status: row.status,
            key: row.client_key_id, provider: row.provider, stream: row.stream })}`);
        }
      }
      assert.deepEqual(bad, [], `rows that do not match their requests:\n${bad.join('\n')}`);
      // The admin request log shows them too, with the same costs.
      const log = await admin(`/api/usage/requests?key_id=${keyId('main')}&limit=100`);
      assert.equal(log.status, 200, log.text);
      for (const s of sent) {
        const row = log.json.data.find((x) => x.request_id === s.id);
        assert.ok(row, `${s.id} in /api/usage/requests`);
        assert.ok(near(row.cost_usd, cost(s.usage)), `${s.what}: request log cost ${row.cost_usd}`);
      }
    });

    test('over its daily budget a key gets 429 in its client\'s shape; /api/usage/self shows the spend', async () => {
      const first = await send(gw, 'openai', { key: KEYS.bud, text: 'spend it' });
      assert.equal(first.status, 200, first.text);
      const [row] = (await rowsFor([first.id])).values();
      assert.ok(Number(row.cost_usd) > BUD_DAILY, `one request costs more than the budget: ${row.cost_usd}`);
      const refused = [];
      for (const format of FORMATS) {
        for (const stream of [false, true]) {
          const since = await mock.mark();
          const r = await send(gw, format, { key: KEYS.bud, stream, text: 'over budget' });
          const what = `${format}${stream ? ' streamed' : ''}`;
          const e = assertClientError(format, r, 429);
          if (format === 'openai' || format === 'responses') {
            assert.equal(e.code, 'budget_exceeded', `${what}: error.code (${r.text})`);
          }
          assert.match(e.message, /daily budget exceeded/i, `${what}: names the limit (${e.message})`);
          assert.match(e.message, /\$0\.0010|\$0\.001\b/, `${what}: names the limit's amount (${e.message})`);
          assert.match(e.message, /resets at \d{4}-\d\d-\d\dT00:00:00Z/, `${what}: names the reset (${e.message})`);
          const ra = Number(r.headers.get('retry-after'));
          assert.ok(Number.isInteger(ra) && ra >= 1 && ra <= 86400, `${what}: Retry-After ${r.headers.get('retry-after')}`);
          const reset = Date.parse(/resets at (\S+?Z)/.exec(e.message)[1]);
          assert.ok(Math.abs(Date.now() + ra * 1000 - reset) < 5000, `${what}: Retry-After ${ra} s points at the reset`);
          assert.equal((await mock.requests({ since })).length, 0, `${what}: nothing reached the provider`);
          assert.ok(r.id, `${what}: X-Request-Id`);
          refused.push(r.id);
        }
      }
      // The refusals are recorded too, as 429s that cost nothing.
      const rows = await rowsFor(refused);
      for (const id of refused) {
        assert.equal(Number(rows.get(id).status), 429, JSON.stringify(rows.get(id)));
        assert.equal(Number(rows.get(id).cost_usd), 0, JSON.stringify(rows.get(id)));
      }
      // The key sees its own spend and budget.
      const s = await self(KEYS.bud);
      assert.equal(s.status, 200, s.text);
      assert.equal(s.json.keyId, keyId('bud'), s.text);
      assert.ok(near(s.json.today.cost_usd, row.cost_usd), `today.cost_usd ${s.json.today.cost_usd} vs ${row.cost_usd}: ${s.text}`);
      assert.equal(s.json.budget.dailyLimitUsd, BUD_DAILY, s.text);
      assert.ok(near(s.json.budget.totalCostToday, row.cost_usd), `budget.totalCostToday: ${s.text}`);
      // A client key may not read the others' usage.
      const other = await request(`${gw.url}/api/usage/requests`, { headers: { authorization: `Bearer ${KEYS.bud}` } });
      assert.ok(other.status === 401 || other.status === 403, `client key on /api/usage/requests: ${other.status}`);
      // A key without a budget still passes, in every format.
      for (const format of FORMATS) {
        const r = await send(gw, format, { key: KEYS.free, text: 'free to go' });
        assert.equal(r.status, 200, `${format}: ${r.text.slice(0, 300)}`);
      }
    });

    test('50 concurrent requests on a key with $0.01 left overspend by less than one estimate', async () => {
      const N = 50;
      const results = await Promise.all(Array.from({ length: N }, (_, i) => send(gw, 'openai', {
        key: KEYS.conc, model: `${CONC.node}/${CONC.model}`, text: `c${i}`, maxTokens: CONC.maxTokens })));
      const ok = results.filter((r) => r.status === 200);
      const other = results.filter((r) => r.status !== 200);
      for (const r of other) {
        const e = assertClientError('openai', r, 429);
        assert.equal(e.code, 'budget_exceeded', r.text);
      }
      assert.ok(ok.length >= 1, 'at least one request admitted');
      // Every admitted request cost exactly CONC_COST (the mock's usage).
      const rows = await rowsFor(results.map((r) => r.id));
      for (const r of ok) {
        assert.ok(near(rows.get(r.id).cost_usd, CONC_COST), `admitted request cost: ${JSON.stringify(rows.get(r.id))}`);
      }
      // After everything settled: the holds are gone and the spend is the admitted requests'.
      let st;
      await waitFor('the conc key\'s holds to be released', async () => {
        st = await admin(`/api/usage/budget?apiKeyId=${keyId('conc')}`);
        const b = st.json?.budget ?? st.json?.budgets?.[0] ?? st.json;
        const daily = (b?.windows || []).find((w) => w.window === 'daily');
        return daily && daily.reservedUsd === 0 ? daily : null;
      }, { timeoutMs: 15000, intervalMs: 200 }).catch((e) => {
        e.message += `: ${st?.text}`;
        throw e;
      });
      const s = await self(KEYS.conc);
      assert.equal(s.status, 200, s.text);
      const spent = s.json.budget.totalCostToday;
      const ctx = `${ok.length} × 200, ${other.length} × 429; spent ${spent}; ${s.text}`;
      assert.ok(near(spent, ok.length * CONC_COST, 1e-7), `spend = admitted × cost (${ctx})`);
      assert.ok(spent <= CONC_LIMIT + CONC_COST + 1e-9, `overspend below one estimate (${ctx})`);
      // Admitted while spent + held < limit: with equal cost and estimate, exactly
      // ceil(limit / cost) requests (5), give or take float rounding at the boundary.
      assert.ok(ok.length >= Math.floor(CONC_LIMIT / CONC_COST) && ok.length <= Math.ceil(CONC_LIMIT / CONC_COST) + 1,
        `admitted count (${ctx})`);
      // And now the key is over: the next one is refused.
      const next = await send(gw, 'openai', { key: KEYS.conc, model: `${CONC.node}/${CONC.model}`, text: 'one more',
        maxTokens: CONC.maxTokens });
      assertClientError('openai', next, 429);
    });

    if (mode === 'distributed') {
      test('nothing lost: PostgreSQL and the usage service killed and restarted under load; the edge drains on SIGTERM',
        async () => {
          const TOTAL = 300;
          const CONCURRENCY = 10;
          await mock.fault({ match: { model: LOAD.model }, delay_ms: 200, times: -1 });
          const responses = []; // {id, status}
          const failures = []; // requests without a gateway response
          let next = 0;
          let done = 0;
          const worker = async () => {
            while (next < TOTAL) {
              const i = next++;
              try {
                const r = await request(`${gw.url}/v1/chat/completions`, { method: 'POST', timeoutMs: 30000,
                  headers: { authorization: `Bearer ${KEYS.load}`, 'content-type': 'application/json' },
                  body: { model: `${LOAD.node}/${LOAD.model}`, messages: [{ role: 'user', content: `load ${i}` }] } });
                responses.push({ id: r.headers.get('x-request-id'), status: r.status, text: r.text.slice(0, 200) });
              } catch (e) {
                failures.push(`${i}: ${e.message}`);
              }
              done += 1;
            }
          };
          const at = (n) => waitFor(`${n} requests done`, () => done >= n, { timeoutMs: 60000, intervalMs: 10 });
          const events = [];
          const t0 = Date.now();
          const log = (what) => events.push(`${Date.now() - t0} ms (${done} done): ${what}`);
          const chaos = async () => {
            await at(40);
            log('SIGKILL postgres');
            await pg.kill();
            await at(90);
            log('restart postgres');
            await pg.start();
            log('postgres up');
            await at(150);
            log('SIGKILL usage');
            await gw.kill('usage');
            await at(200);
            log('restart usage');
            await gw.respawn('usage');
            log('usage up');
          };
          const [, chaosResult] = await Promise.all([
            Promise.all(Array.from({ length: CONCURRENCY }, worker)),
            chaos().then(() => null, (e) => e),
          ]);
          await mock.clearFaults();
          log('load done');
          if (chaosResult) throw chaosResult;
          const ctx = () => `\nevents:\n  ${events.join('\n  ')}`;
          assert.deepEqual(failures, [], `every request got a response${ctx()}`);
          const statuses = {};
          for (const r of responses) statuses[r.status] = (statuses[r.status] || 0) + 1;
          const ids = responses.map((r) => r.id);
          assert.ok(ids.every(Boolean), `every response has an X-Request-Id${ctx()}`);
          assert.equal(new Set(ids).size, ids.length, 'request ids are unique');
          // The records: after a drain period, exactly the requests answered.
          let rows = [];
          const want = new Set(ids);
          await waitFor('every answered request to have its row', async () => {
            rows = await pg.rows(`select request_id from usage_records where client_key_id = '${keyId('load')}'`);
            return rows.length >= want.size;
          }, { timeoutMs: 60000, intervalMs: 500 }).catch(() => {});
          const have = new Set(rows.map((r) => r.request_id));
          const missingIds = ids.filter((i) => !have.has(i));
          const extra = [...have].filter((i) => !want.has(i));
          const spool = await admin('/metrics').then((m) => m.text.split('\n')
            .filter((l) => /^omniroute_usage_(client_|spool_)/.test(l)).join('\n'));
          assert.deepEqual({ missing: missingIds.length, extra: extra.length, rows: rows.length },
            { missing: 0, extra: 0, rows: ids.length },
            `usage rows vs answered requests (statuses ${JSON.stringify(statuses)}); missing ` +
            `${missingIds.slice(0, 10).join(', ')}; extra ${extra.slice(0, 10).join(', ')}${ctx()}\n${spool}`);
          // SIGTERM the edge: it exits 0 and leaves nothing in its spool.
          const edge = gw.edge;
          const spoolDir = path.join(gw.dataDir, 'edge', 'spool', 'usage-edge');
          edge.signal('SIGTERM');
          const exit = await withTimeout(edge.exited, 20000);
          assert.ok(exit, `the edge did not exit within 20 s of SIGTERM${ctx()}`);
          assert.equal(exit.code, 0, `edge exit ${JSON.stringify(exit)}`);
          assert.equal(spoolPending(spoolDir), 0, `the edge's spool ${spoolDir} is drained: ` +
            `${fs.existsSync(spoolDir) ? fs.readdirSync(spoolDir).join(', ') : '(none)'}`);
          const final = await pg.rows(`select count(*)::int as n from usage_records where client_key_id = '${keyId('load')}'`);
          assert.equal(final[0].n, ids.length, 'no rows appeared or vanished at the edge\'s exit');
        }, { timeout: 180000 });
    }
  });
}
