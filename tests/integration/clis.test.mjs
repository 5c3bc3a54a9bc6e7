// The real coding CLIs against the gateway (all-in-one), each on providers of the three other
// formats, served by the mock (the first of each list is the pairing the CLIs are known for):
//   Claude Code (Anthropic Messages)     → OpenAI Chat, Responses, Gemini 3
//   Codex CLI (OpenAI Responses)         → Anthropic (with thinking), OpenAI Chat, Gemini 3
//   Gemini CLI (Gemini generateContent)  → OpenAI Chat, Anthropic, Responses
//   opencode (OpenAI Chat Completions)   → Gemini 3, Anthropic, Responses
// Each runs non-interactively twice: a plain question whose answer the mock makes up, and a
// tool loop (the mock asks the CLI to run a shell command with the CLI's own tool, with
// reasoning, and answers from the command's output). Checked: exit code 0, the mock's answer
// on stdout, the provider saw requests in its own format, for the upstream model, with its
// own auth, and the reasoning token of the call's turn came back byte-exact where the CLI
// keeps it.
//
// The CLIs come from tests/integration/clis (npm ci --prefix tests/integration/clis, which
// scripts/test.sh runs); without them these tests skip. They need no network: every other
// host they try (telemetry, updates) is switched off or fails fast.

import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import {
  IT_DIR, markFailed, missingBinaries, startGateway, startMock, tempDir,
} from './lib/index.mjs';

const MODES = (process.env.OMNI_IT_MODES || 'allinone,distributed').split(',').map((s) => s.trim());
const CLIS_DIR = path.join(IT_DIR, 'clis');
const BIN = path.join(CLIS_DIR, 'node_modules', '.bin');
const CLIENT_KEY = 'sk-client-clis-0001';

const PROVIDERS = {
  openai: { node: 'p-openai', format: 'openai', model: 'deepseek-reasoner', key: 'sk-up-openai' },
  responses: { node: 'p-responses', format: 'responses', model: 'gpt-5-mini', key: 'sk-up-responses' },
  anthropic: { node: 'p-anthropic', format: 'anthropic', model: 'claude-sonnet-4-5', key: 'sk-up-anthropic' },
  gemini: { node: 'p-gemini', format: 'gemini', model: 'gemini-3-pro-preview', key: 'sk-up-gemini' },
};

// The command the mock has a CLI run; its output is not in the command line itself.
const MARK_CMD = "printf 'tool-ran-%d\\n' 42";
const MARK_OUT = 'tool-ran-42';

// opencode's own binary package (its wrapper, opencode-ai, picks one the same way): the
// baseline build for CPUs without AVX2.
const OPENCODE = path.join(CLIS_DIR, 'node_modules', (() => {
  try {
    return /(^|\s)avx2(\s|$)/i.test(fs.readFileSync('/proc/cpuinfo', 'utf8'))
      ? 'opencode-linux-x64' : 'opencode-linux-x64-baseline';
  } catch {
    return 'opencode-linux-x64';
  }
})(), 'bin', 'opencode');

function installed() {
  const missing = ['claude', 'codex', 'gemini', 'node'].map((b) => path.join(BIN, b)).concat(OPENCODE)
    .filter((b) => !fs.existsSync(b));
  if (missing.length) {
    return `coding CLIs not installed (missing ${missing.join(', ')}): ` +
      'run `npm ci --prefix tests/integration/clis` (linux-x64 only)';
  }
  // An install whose postinstall did not run leaves stubs (Claude Code copies its native
  // binary in its postinstall): each must at least tell its version.
  for (const cmd of [path.join(BIN, 'claude'), path.join(BIN, 'codex'), path.join(BIN, 'gemini'), OPENCODE]) {
    const r = spawnSync(cmd, ['--version'], { encoding: 'utf8', timeout: 30000,
      env: { ...process.env, PATH: `${BIN}:${process.env.PATH}` } });
    if (r.status !== 0) {
      return `${cmd} --version failed (exit ${r.status}, ${r.error?.message || r.stderr.slice(0, 300)}): ` +
        'reinstall with `npm ci --prefix tests/integration/clis`';
    }
  }
  return null;
}

function version(pkg) {
  try {
    return JSON.parse(fs.readFileSync(path.join(CLIS_DIR, 'node_modules', pkg, 'package.json'), 'utf8')).version;
  } catch {
    return '?';
  }
}

// The environment of a CLI run: nothing inherited that points a CLI somewhere else, a home
// of its own, our Node first on PATH (Claude Code and Gemini CLI want Node 22 or later).
function cliEnv(home, extra) {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) {
    if (/^(ANTHROPIC_|OPENAI_|GEMINI_|GOOGLE_|CLAUDE_|CODEX_|OPENCODE|XDG_|OMNI|NODE_OPTIONS|NODE_TEST)/.test(k)) continue;
    env[k] = v;
  }
  return { ...env, HOME: home, PATH: `${BIN}:${process.env.PATH}`, NO_COLOR: '1', TERM: 'dumb', CI: '1', ...extra };
}

// Runs a CLI to its end; resolves {code, signal, stdout, stderr, ms}.
function run(cmd, args, { cwd, env, timeoutMs = 120000 }) {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const child = spawn(cmd, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'], detached: true });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // gone
      }
    }, timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      resolve({ code: null, signal: null, stdout, stderr: `${stderr}\n${e.message}`, ms: Date.now() - t0 });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      // A CLI may leave helpers in its process group: end them with it.
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {
        // gone
      }
      resolve({ code, signal, stdout, stderr, ms: Date.now() - t0 });
    });
  });
}

const onlyAllInOne = !MODES.includes('allinone') ? 'OMNI_IT_MODES has no allinone' : null;
const skip = installed() || onlyAllInOne
  || (missingBinaries('allinone').length && process.env.OMNI_IT_SKIP_MISSING === '1' ? 'omniroute not built' : null);
if (skip) console.log(`# clis.test.mjs skipped: ${skip}`);

describe('coding CLIs against the gateway (allinone)', { skip: skip || false, timeout: 600000 }, () => {
  let mock;
  let gw;

  before(async () => {
    mock = await startMock({ keys: Object.values(PROVIDERS).map((p) => p.key) });
    try {
      gw = await startGateway({
        mode: 'allinone',
        config: {
          server: { host: '127.0.0.1', require_api_key: true, threads: 2, upstream_timeout_ms: 60000 },
          nodes: Object.values(PROVIDERS).map((p) => ({ id: p.node, name: `${p.format} on the mock`, format: p.format,
            base_url: p.format === 'gemini' ? `${mock.url}/v1beta` : `${mock.url}/v1`, models: [p.model] })),
          connections: Object.values(PROVIDERS).map((p) => ({ provider: p.node, name: 'main', api_key: p.key })),
          api_keys: [{ name: 'clis', key: CLIENT_KEY }],
        },
      });
    } catch (e) {
      markFailed();
      throw e;
    }
  });

  after(async () => {
    await gw?.stop();
    await mock?.stop();
  });

  // One CLI against providers of several formats: a plain answer, then a tool loop.
  // `replays`: the provider formats whose reasoning token (Anthropic signature, Gemini
  // thought signature, Responses encrypted_content) this CLI is known to send back, so that
  // it must come back byte-exact; for the others whether it did is only reported.
  const cliTest = (name, pkg, provs, setup, { replays = [] } = {}) => {
    for (const prov of provs) {
      const check = (up, what) => {
        const ctx = `${what}: ${JSON.stringify({ path: up.path, status: up.status, refused: up.refused,
          headers: up.headers }).slice(0, 1500)}`;
        assert.equal(up.status, 200, ctx);
        if (prov.format !== 'gemini') {
          // Gemini CLI's placeholder for a missing signature is Gemini's business only.
          assert.ok(!JSON.stringify(up.body).includes('skip_thought_signature_validator'), ctx);
        }
        if (prov.format === 'openai' || prov.format === 'responses') {
          assert.equal(up.path, prov.format === 'openai' ? '/v1/chat/completions' : '/v1/responses', ctx);
          assert.equal(up.headers.authorization, `Bearer ${prov.key}`, ctx);
          assert.equal(up.body.model, prov.model, ctx);
          assert.ok(Array.isArray(prov.format === 'openai' ? up.body.messages : up.body.input), ctx);
        } else if (prov.format === 'anthropic') {
          assert.equal(up.path, '/v1/messages', ctx);
          assert.equal(up.headers['x-api-key'], prov.key, ctx);
          assert.ok(up.headers['anthropic-version'], ctx);
          assert.equal(up.body.model, prov.model, ctx);
          assert.ok(Array.isArray(up.body.messages), ctx);
        } else {
          assert.match(up.path, new RegExp(`^/v1beta/models/${prov.model}:(stream)?[gG]enerateContent$`), ctx);
          assert.equal(up.headers['x-goog-api-key'], prov.key, ctx);
          assert.ok(Array.isArray(up.body.contents), ctx);
        }
      };

      it(`${name} ${version(pkg)} → ${prov.format} provider`, { timeout: 300000 }, async (t) => {
        const slug = `${name}-${prov.format}`.replace(/\W+/g, '-').toLowerCase();
        const home = tempDir(`${slug}-home`);
        const work = tempDir(`${slug}-work`);
        const cli = setup({ home, work, model: `${prov.node}/${prov.model}` });
        const logs = [];
        const attempt = async (what, prompt) => {
          const r = await run(cli.cmd, cli.args(prompt), { cwd: work, env: cli.env, timeoutMs: 120000 });
          logs.push(`----- ${what}: exit ${r.code} ${r.signal || ''} in ${r.ms} ms\n--- stdout\n` +
            `${r.stdout.slice(-3000)}\n--- stderr\n${r.stderr.slice(-3000)}`);
          t.diagnostic(`${what}: exit ${r.code} in ${r.ms} ms`);
          return r;
        };
        try {
          // 1. A plain question: the answer is the mock's.
          const answer = `The secret word is ${slug.toUpperCase()}-7`;
          await mock.clearFaults();
          await mock.fault({ reply: answer, times: -1 });
          let since = await mock.mark();
          const r1 = await attempt('plain answer', 'What is the secret word? Answer in one line.');
          await mock.clearFaults();
          assert.equal(r1.code, 0, 'exit code');
          assert.ok(r1.stdout.includes(answer), `stdout has the mock's answer "${answer}"`);
          const ups1 = await mock.requests({ since });
          assert.ok(ups1.length >= 1, 'the mock saw the CLI\'s request');
          for (const up of ups1) check(up, 'plain answer');
          assert.ok(ups1.some((u) => JSON.stringify(u.body).includes('What is the secret word?')),
            'the prompt reached the provider');

          // 2. A tool loop: the mock has the CLI run a command, then answers from its output.
          await mock.fault({ match: { body_contains: `"${cli.tool}"` }, thinking: true,
            tool_calls: [{ name: cli.tool, arguments: cli.toolArgs(MARK_CMD) }] });
          since = await mock.mark();
          const r2 = await attempt('tool loop', `Run the marker command with your ${cli.tool} tool [think]`);
          await mock.clearFaults();
          assert.equal(r2.code, 0, 'exit code');
          const ups2 = await mock.requests({ since });
          for (const up of ups2) check(up, 'tool loop');
          const called = ups2.findIndex((u) => u.answer?.tool_calls?.some((c) => c.name === cli.tool));
          assert.ok(called >= 0, `the mock asked for the ${cli.tool} tool: ${JSON.stringify(ups2.map((u) => u.answer))}`);
          const later = ups2.slice(called + 1);
          const after = later.find((u) => (u.answer?.text || '').startsWith('result: '));
          assert.ok(after, `a later request carried the tool's result: ${JSON.stringify(ups2.map((u) => u.answer?.text))}`);
          assert.ok(after.answer.text.includes(MARK_OUT), `the tool ran: ${after.answer.text}`);
          assert.ok(r2.stdout.includes('result: ') && r2.stdout.includes(MARK_OUT),
            'stdout has the mock\'s answer built from the tool output');

          // The reasoning token of the turn with the call, in the requests after it.
          const a = ups2[called].answer;
          const token = a.signature || a.thought_signature || a.encrypted_content;
          if (token) {
            const back = later.some((u) => JSON.stringify(u.body).includes(token));
            t.diagnostic(`${prov.format} reasoning token sent back byte-exact: ${back}`);
            if (replays.includes(prov.format)) assert.ok(back, `${name} sent the ${prov.format} token back byte-exact`);
          }
        } catch (e) {
          markFailed();
          const err = new Error(`${e.message}\n${logs.join('\n')}\n===== gateway\n${gw.logs(30)}`);
          err.cause = e;
          throw err;
        }
      });
    }
  };

  cliTest('Claude Code', '@anthropic-ai/claude-code', [PROVIDERS.openai, PROVIDERS.responses, PROVIDERS.gemini],
  ({ home, model }) => ({
    cmd: path.join(BIN, 'claude'),
    args: (prompt) => ['-p', prompt, '--model', model, '--allowedTools', 'Bash(printf:*)'],
    env: cliEnv(home, {
      ANTHROPIC_BASE_URL: gw.url,
      ANTHROPIC_API_KEY: CLIENT_KEY,
      ANTHROPIC_DEFAULT_HAIKU_MODEL: model,
      ANTHROPIC_DEFAULT_SONNET_MODEL: model,
      ANTHROPIC_DEFAULT_OPUS_MODEL: model,
      CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC: '1',
      DISABLE_AUTOUPDATER: '1',
      DISABLE_TELEMETRY: '1',
      DISABLE_ERROR_REPORTING: '1',
    }),
    tool: 'Bash',
    toolArgs: (command) => ({ command, description: 'Print the marker' }),
  }), { replays: ['responses', 'gemini'] });

  cliTest('Codex CLI', '@openai/codex', [PROVIDERS.anthropic, PROVIDERS.openai, PROVIDERS.gemini], ({ home, model }) => {
    const codexHome = path.join(home, '.codex');
    fs.mkdirSync(codexHome, { recursive: true });
    fs.writeFileSync(path.join(codexHome, 'config.toml'), [
      `model = "${model}"`,
      'model_provider = "omniroute"',
      'model_reasoning_effort = "low"',
      'model_reasoning_summary = "auto"',
      '',
      '[model_providers.omniroute]',
      'name = "OmniRoute"',
      `base_url = "${gw.baseURL}"`,
      'env_key = "OMNIROUTE_TEST_KEY"',
      'wire_api = "responses"',
      '',
    ].join('\n'));
    return {
      cmd: path.join(BIN, 'codex'),
      args: (prompt) => ['exec', '--skip-git-repo-check', prompt],
      env: cliEnv(home, { CODEX_HOME: codexHome, OMNIROUTE_TEST_KEY: CLIENT_KEY }),
      tool: 'exec_command',
      toolArgs: (cmd) => ({ cmd }),
    };
  }, { replays: ['anthropic', 'gemini'] });

  cliTest('Gemini CLI', '@google/gemini-cli', [PROVIDERS.openai, PROVIDERS.anthropic, PROVIDERS.responses],
  ({ home, model }) => {
    fs.mkdirSync(path.join(home, '.gemini'), { recursive: true });
    fs.writeFileSync(path.join(home, '.gemini', 'settings.json'), JSON.stringify({
      security: { auth: { selectedType: 'gemini-api-key' } },
      privacy: { usageStatisticsEnabled: false },
      telemetry: { enabled: false },
      general: { disableAutoUpdate: true, disableUpdateNag: true },
    }));
    return {
      cmd: path.join(BIN, 'gemini'),
      args: (prompt) => ['-p', prompt, '-m', model, '--yolo'],
      env: cliEnv(home, { GOOGLE_GEMINI_BASE_URL: gw.url, GEMINI_API_KEY: CLIENT_KEY,
        GEMINI_CLI_TRUST_WORKSPACE: 'true' }),
      tool: 'run_shell_command',
      toolArgs: (command) => ({ command, description: 'Print the marker' }),
    };
  });

  cliTest('opencode', 'opencode-linux-x64', [PROVIDERS.gemini, PROVIDERS.anthropic, PROVIDERS.responses],
  ({ home, model }) => {
    const config = path.join(home, '.config', 'opencode');
    fs.mkdirSync(config, { recursive: true });
    fs.writeFileSync(path.join(config, 'opencode.json'), JSON.stringify({
      $schema: 'https://opencode.ai/config.json',
      autoupdate: false,
      share: 'disabled',
      provider: {
        omniroute: {
          npm: '@ai-sdk/openai-compatible',
          name: 'OmniRoute',
          options: { baseURL: gw.baseURL, apiKey: CLIENT_KEY },
          models: { [model]: { name: model } },
        },
      },
      model: `omniroute/${model}`,
    }, null, 2));
    return {
      cmd: OPENCODE,
      args: (prompt) => ['run', prompt, '-m', `omniroute/${model}`],
      env: cliEnv(home, { OPENCODE_DISABLE_AUTOUPDATE: '1', OPENCODE_DISABLE_MODELS_FETCH: '1' }),
      tool: 'bash',
      toolArgs: (command) => ({ command, description: 'Print the marker' }),
    };
  });
});
