// Legacy text completions (POST /v1/completions) through the gateway: the official `openai`
// SDK's completions.create, streamed and not, on an OpenAI-format provider and, translated,
// on an Anthropic-format one.

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import OpenAI from 'openai';
import { missingBinaries, startGateway, startMock } from './lib/index.mjs';

const CLIENT_KEY = 'sk-client-completions-0001';
const skip = missingBinaries('allinone').length ? 'all-in-one binary not built' : false;

describe('legacy completions (allinone)', { timeout: 120000, skip }, () => {
  let mock;
  let gw;
  let sdk;

  before(async () => {
    mock = await startMock();
    gw = await startGateway({
      mode: 'allinone',
      config: {
        server: { require_api_key: true },
        nodes: [
          { id: 'chat', format: 'openai', base_url: `http://127.0.0.1:${mock.port}/v1`, models: ['m'] },
          { id: 'ant', format: 'anthropic', base_url: `http://127.0.0.1:${mock.port}/v1`, models: ['claude-x'] },
        ],
        connections: [
          { provider: 'chat', name: 'a', api_key: 'sk-a' },
          { provider: 'ant', name: 'a', api_key: 'sk-ant' },
        ],
        api_keys: [{ name: 'completions', key: CLIENT_KEY }],
      },
    });
    sdk = new OpenAI({ baseURL: gw.baseURL, apiKey: CLIENT_KEY, maxRetries: 0 });
  });
  after(async () => {
    await gw?.stop().catch(() => {});
    await mock?.stop?.().catch(() => {});
  });

  for (const model of ['chat/m', 'ant/claude-x']) {
    it(`answers a text_completion from ${model}`, async () => {
      const since = await mock.mark();
      const c = await sdk.completions.create({ model, prompt: 'tell me more', max_tokens: 16 });
      assert.equal(c.object, 'text_completion');
      assert.match(c.id, /^cmpl-/);
      assert.equal(c.choices[0].text, 'echo: tell me more');
      assert.ok(['stop', 'length'].includes(c.choices[0].finish_reason), c.choices[0].finish_reason);
      assert.ok(c.usage.prompt_tokens > 0);
      const seen = (await mock.requests({ since })).at(-1);
      // The provider saw a chat (or Messages) request with the prompt as the user's message.
      assert.equal(JSON.stringify(seen.body.messages).includes('tell me more'), true);
      assert.equal(seen.body.prompt, undefined);
    });

    it(`streams text_completion chunks from ${model}`, async () => {
      const stream = await sdk.completions.create({ model, prompt: 'stream this please', stream: true });
      let text = '';
      let chunks = 0;
      for await (const chunk of stream) {
        assert.equal(chunk.object, 'text_completion');
        text += chunk.choices[0]?.text ?? '';
        chunks += 1;
      }
      assert.equal(text, 'echo: stream this please');
      assert.ok(chunks > 1, `${chunks} chunks`);
    });
  }

  it('refuses token-array prompts with a 400 in OpenAI\'s shape', async () => {
    await assert.rejects(sdk.completions.create({ model: 'chat/m', prompt: [1, 2, 3] }),
      (e) => e.status === 400 && /token arrays/.test(e.message));
  });
});
