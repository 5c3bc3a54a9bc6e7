// Self-test of mock-oauth.mjs (no gateway binary needed): authorize redirects, PKCE, device
// polling, refresh rotation and the control endpoints.

import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, before, beforeEach, test } from 'node:test';
import { startMockOAuth } from './mock-oauth.mjs';

let mock;
before(async () => {
  mock = await startMockOAuth({ port: 0 });
});
after(() => mock.close());
beforeEach(() => mock.reset());

const s256 = (v) => crypto.createHash('sha256').update(v).digest('base64url');

async function call(method, path, { form, json, headers = {} } = {}) {
  const init = { method, headers: { ...headers }, redirect: 'manual' };
  if (form) {
    init.headers['content-type'] = 'application/x-www-form-urlencoded';
    init.body = new URLSearchParams(form).toString();
  } else if (json) {
    init.headers['content-type'] = 'application/json';
    init.body = JSON.stringify(json);
  }
  const r = await fetch(`${mock.url}${path}`, init);
  const text = await r.text();
  let body = text;
  try {
    body = JSON.parse(text);
  } catch {}
  return { status: r.status, body, location: r.headers.get('location') };
}

test('codex: authorize redirects with code and state; PKCE checked; refresh rotates', async () => {
  const verifier = crypto.randomBytes(32).toString('base64url');
  const redirect = 'http://localhost:1455/auth/callback';
  const q = new URLSearchParams({
    response_type: 'code', client_id: 'app_EMoamEEZ73f0CkXaXp7hrann', redirect_uri: redirect,
    scope: 'openid profile email offline_access', code_challenge: s256(verifier),
    code_challenge_method: 'S256', state: 'st-1',
  });
  const page = await call('GET', `/auth.openai.com/oauth/authorize?${q}`);
  assert.equal(page.status, 302);
  const cb = new URL(page.location);
  assert.equal(`${cb.origin}${cb.pathname}`, redirect);
  assert.equal(cb.searchParams.get('state'), 'st-1');
  const code = cb.searchParams.get('code');

  const form = { grant_type: 'authorization_code', client_id: 'app_EMoamEEZ73f0CkXaXp7hrann', code, redirect_uri: redirect };
  const bad = await call('POST', '/auth.openai.com/oauth/token', { form: { ...form, code_verifier: 'wrong' } });
  assert.equal(bad.status, 400);
  assert.equal(bad.body.error, 'invalid_grant');
  // The code is single use: a fresh one for the good exchange.
  const page2 = await call('GET', `/auth.openai.com/oauth/authorize?${q}`);
  const code2 = new URL(page2.location).searchParams.get('code');
  const ok = await call('POST', '/auth.openai.com/oauth/token', { form: { ...form, code: code2, code_verifier: verifier } });
  assert.equal(ok.status, 200, JSON.stringify(ok.body));
  const claims = JSON.parse(Buffer.from(ok.body.id_token.split('.')[1], 'base64url'));
  assert.ok(claims['https://api.openai.com/auth'].chatgpt_account_id);

  const refresh = (rt) => call('POST', '/auth.openai.com/oauth/token', {
    json: { client_id: 'app_EMoamEEZ73f0CkXaXp7hrann', grant_type: 'refresh_token', refresh_token: rt, scope: 'openid profile email' },
  });
  const r1 = await refresh(ok.body.refresh_token);
  assert.equal(r1.status, 200);
  assert.notEqual(r1.body.refresh_token, ok.body.refresh_token);
  const reused = await refresh(ok.body.refresh_token);
  assert.equal(reused.body.error, 'invalid_grant');

  mock.config({ failRefresh: true });
  assert.equal((await refresh(r1.body.refresh_token)).body.error, 'invalid_grant');
  assert.equal(mock.calls()['POST /auth.openai.com/oauth/token'], 5);
});

test('copilot: device flow with slow_down, pending, then the Copilot token exchange', async () => {
  mock.config({ slowDown: true, devicePendingPolls: 1, copilotTokenTtlS: 600 });
  const dc = await call('POST', '/github.com/login/device/code', {
    form: { client_id: 'Iv1.b507a08c87ecfe98', scope: 'read:user' }, headers: { accept: 'application/json' },
  });
  assert.equal(dc.status, 200);
  const poll = () => call('POST', '/github.com/login/oauth/access_token', {
    form: { client_id: 'Iv1.b507a08c87ecfe98', device_code: dc.body.device_code, grant_type: 'urn:ietf:params:oauth:grant-type:device_code' },
    headers: { accept: 'application/json' },
  });
  assert.deepEqual([(await poll()).body.error, (await poll()).body.error], ['slow_down', 'authorization_pending']);
  const done = await poll();
  assert.equal(done.status, 200);
  assert.match(done.body.access_token, /^gho_/);
  const ct = await call('GET', '/api.github.com/copilot_internal/v2/token', { headers: { authorization: `token ${done.body.access_token}` } });
  assert.equal(ct.status, 200);
  assert.ok(ct.body.token && ct.body.endpoints.api);
  assert.ok(Math.abs(ct.body.expires_at - (Date.now() / 1000 + 600)) < 5);
  const unknown = await call('GET', '/api.github.com/copilot_internal/v2/token', { headers: { authorization: 'token gho_nope' } });
  assert.equal(unknown.status, 401);

  const calls = (await call('GET', '/__calls')).body;
  assert.equal(calls['POST /github.com/login/oauth/access_token'], 3);
});

test('kiro: AWS OIDC register, device authorization, explicit approval, refresh', async () => {
  mock.config({ devicePendingPolls: -1 });
  const reg = await call('POST', '/oidc.us-east-1.amazonaws.com/client/register', {
    json: { clientName: 'kiro-oauth-client', clientType: 'public', scopes: ['codewhisperer:completions'] },
  });
  const { clientId, clientSecret } = reg.body;
  const da = await call('POST', '/oidc.us-east-1.amazonaws.com/device_authorization', {
    json: { clientId, clientSecret, startUrl: 'https://view.awsapps.com/start' },
  });
  const token = (extra) => call('POST', '/oidc.us-east-1.amazonaws.com/token', { json: { clientId, clientSecret, ...extra } });
  const device = { grantType: 'urn:ietf:params:oauth:grant-type:device_code', deviceCode: da.body.deviceCode };
  const pending = await token(device);
  assert.equal(pending.status, 400);
  assert.equal(pending.body.error, 'authorization_pending');
  assert.equal((await call('GET', new URL(da.body.verificationUriComplete).pathname + new URL(da.body.verificationUriComplete).search)).status, 200);
  const done = await token(device);
  assert.equal(done.status, 200);
  assert.ok(done.body.accessToken && done.body.refreshToken && done.body.expiresIn);
  const refreshed = await token({ grantType: 'refresh_token', refreshToken: done.body.refreshToken });
  assert.equal(refreshed.status, 200);
  assert.equal(refreshed.body.refreshToken, undefined); // AWS keeps the refresh token
  const wrongSecret = await call('POST', '/oidc.us-east-1.amazonaws.com/token', { json: { clientId, clientSecret: 'x', ...device } });
  assert.equal(wrongSecret.body.error, 'invalid_client');
});

test('gemini-cli: code assist onboarding gives a project; control config over HTTP', async () => {
  const cfg = await call('POST', '/__config', { json: { onboardPolls: 0 } });
  assert.equal(cfg.body.onboardPolls, 0);
  const q = new URLSearchParams({
    client_id: '681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com',
    redirect_uri: 'https://codeassist.google.com/authcode', response_type: 'code', access_type: 'offline', state: 's',
  });
  const code = new URL((await call('GET', `/accounts.google.com/o/oauth2/v2/auth?${q}`)).location).searchParams.get('code');
  const tok = await call('POST', '/oauth2.googleapis.com/token', {
    form: {
      grant_type: 'authorization_code', code, redirect_uri: 'https://codeassist.google.com/authcode',
      client_id: '681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com',
      client_secret: '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',
    },
  });
  assert.equal(tok.status, 200, JSON.stringify(tok.body));
  const auth = { authorization: `Bearer ${tok.body.access_token}` };
  const meta = { metadata: { ideType: 'IDE_UNSPECIFIED', platform: 'PLATFORM_UNSPECIFIED', pluginType: 'GEMINI' } };
  const load = await call('POST', '/cloudcode-pa.googleapis.com/v1internal:loadCodeAssist', { json: meta, headers: auth });
  assert.equal(load.body.allowedTiers.find((t) => t.isDefault).id, 'free-tier');
  const op = await call('POST', '/cloudcode-pa.googleapis.com/v1internal:onboardUser', { json: { tierId: 'free-tier', ...meta }, headers: auth });
  assert.equal(op.body.done, true);
  assert.equal(op.body.response.cloudaicompanionProject.id, 'mock-project-123');
  const again = await call('POST', '/cloudcode-pa.googleapis.com/v1internal:loadCodeAssist', { json: meta, headers: auth });
  assert.equal(again.body.cloudaicompanionProject, 'mock-project-123');
});
