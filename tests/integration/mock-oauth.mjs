#!/usr/bin/env node
// Mock OAuth servers of the subscription providers, for the accounts service's login and
// refresh paths (zero dependencies, Node >= 18).
//
//   node mock-oauth.mjs            # listens on 127.0.0.1:$PORT (0 = any) and prints its URL
//   import { startMockOAuth } from './mock-oauth.mjs';
//   const m = await startMockOAuth({ port: 0 });  // {url, port, calls(), config(obj), close(),
//                                                 //  accessTokens(provider), secrets(), approve()}
//
// Every provider URL https://HOST/PATH is served at <url>/HOST/PATH, which is what the
// accounts service calls with `url_base_override: <url>`. Requests are validated the way the
// real endpoints do (client ids, grant types, redirect URIs, PKCE S256, client secrets,
// device codes) and refused with the provider's own error shape. The facts come from the
// same sources as services/accounts/src/oauth.cc.
//
// Authorization pages (answer 302 to the redirect URI with code and state at once, as if the
// user had approved; an error=access_denied redirect when config.denyAuthorize is set)
//   GET  /claude.ai/oauth/authorize                      claude-code (PKCE S256)
//   GET  /auth.openai.com/oauth/authorize                codex (PKCE S256)
//   GET  /accounts.google.com/o/oauth2/v2/auth           gemini-cli (PKCE optional, offline)
//   GET  /iflow.cn/oauth                                 iflow (`redirect`, not redirect_uri)
// Token endpoints (authorization_code, refresh_token, device_code grants)
//   POST /platform.claude.com/v1/oauth/token             JSON body (also console.anthropic.com)
//   POST /auth.openai.com/oauth/token                    form (code), JSON or form (refresh);
//                                                        id_token carries chatgpt_account_id
//   POST /oauth2.googleapis.com/token                    form + client_secret; no rotation
//   POST /iflow.cn/oauth/token                           form + Basic client auth
//   POST /chat.qwen.ai/api/v1/oauth2/token               device grant (+ code_verifier), refresh
//   POST /github.com/login/oauth/access_token            device grant; errors answered with 200
//   POST /oidc.us-east-1.amazonaws.com/token             AWS CreateToken (camelCase JSON)
// Device authorization
//   POST /github.com/login/device/code                   client_id, scope
//   POST /chat.qwen.ai/api/v1/oauth2/device/code         client_id, scope, code_challenge (S256)
//   POST /oidc.us-east-1.amazonaws.com/client/register   AWS RegisterClient
//   POST /oidc.us-east-1.amazonaws.com/device_authorization   AWS StartDeviceAuthorization
// APIs called after the tokens (Bearer / "token" auth checked against issued tokens)
//   GET  /api.github.com/copilot_internal/v2/token       → {token, expires_at, endpoints.api}
//   GET  /api.github.com/user                            → {login, email}
//   GET  /www.googleapis.com/oauth2/v2/userinfo          → {email}
//   POST /cloudcode-pa.googleapis.com/v1internal:loadCodeAssist   tiers / project
//   POST /cloudcode-pa.googleapis.com/v1internal:onboardUser      long-running op → project
//   GET  /iflow.cn/api/oauth/getUserInfo?accessToken=    → {success, data: {apiKey, email, phone}}
//
// Device codes are approved by themselves after config.devicePendingPolls polls answered
// authorization_pending (-1 = only through /__approve or by opening verification_uri_complete,
// which the mock also serves). config.slowDown answers the first poll of each code slow_down.
//
// Control endpoints
//   GET  /__calls      {"POST /github.com/login/oauth/access_token": 3, ...} (control calls
//                      are not counted)
//   POST /__config     merges the JSON body into the config (below); answers the config
//   POST /__approve    {"user_code": "..."} approves a device code ({"deny": true} denies it)
//   POST /__reset      calls, config, tokens and codes back to the start
//
// Config (defaults)
//   accessTokenTtlS: 3600        lifetime of access tokens (expires_in)
//   copilotTokenTtlS: 1800       lifetime of Copilot tokens (expires_at)
//   devicePendingPolls: 2        polls answered authorization_pending before approval
//   slowDown: false              first poll of each device code answers slow_down
//   denyDevice: false            device logins end in access_denied
//   denyAuthorize: false         authorization pages redirect with error=access_denied
//   failRefresh: false           true | "invalid_grant": refreshes refused with invalid_grant;
//                                "server_error": answered 500
//   onboardPolls: 1              onboardUser answers done:false this many times first
//   geminiOnboarded: false       loadCodeAssist already has a currentTier and project
//   geminiProject: "mock-project-123"
//   qwenResourceUrl: "portal.qwen.ai"
//   copilotApiBase: "https://api.individual.githubcopilot.com"
//   email: "user@example.com"
//   iflowApiKey: null            null = a fresh "sk-iflow-…" per access token

import crypto from 'node:crypto';
import http from 'node:http';
import { pathToFileURL } from 'node:url';

const DEFAULT_CONFIG = {
  accessTokenTtlS: 3600,
  copilotTokenTtlS: 1800,
  devicePendingPolls: 2,
  slowDown: false,
  denyDevice: false,
  denyAuthorize: false,
  failRefresh: false,
  onboardPolls: 1,
  geminiOnboarded: false,
  geminiProject: 'mock-project-123',
  qwenResourceUrl: 'portal.qwen.ai',
  copilotApiBase: 'https://api.individual.githubcopilot.com',
  email: 'user@example.com',
  iflowApiKey: null,
};

const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

// Public client ids of the real CLIs (see oauth.cc).
const CLIENTS = {
  'claude-code': { clientId: '9d1c250a-e61b-44d9-88ed-5944d1962f5e', rotate: true, pkce: true },
  codex: { clientId: 'app_EMoamEEZ73f0CkXaXp7hrann', rotate: true, pkce: true },
  'gemini-cli': {
    clientId: '681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com',
    clientSecret: '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',
    rotate: false,
  },
  copilot: { clientId: 'Iv1.b507a08c87ecfe98' },
  qwen: { clientId: 'f0304373b74a44d2b584a3fb70ca9e56', rotate: true },
  kiro: { rotate: false },
  iflow: { clientId: '10009311001', clientSecret: '4Z3YjXycVsQvyGF1etiNlIBB4RsqSDtW', rotate: true },
};

const CODEX_AUTH_CLAIM = 'https://api.openai.com/auth';

function randomToken(prefix, bytes = 24) {
  return prefix + crypto.randomBytes(bytes).toString('base64url');
}

function s256(verifier) {
  return crypto.createHash('sha256').update(verifier).digest('base64url');
}

function userCode() {
  const abc = 'BCDFGHJKLMNPQRSTVWXZ';
  const pick = () => abc[crypto.randomInt(abc.length)];
  return `${pick()}${pick()}${pick()}${pick()}-${pick()}${pick()}${pick()}${pick()}`;
}

function unsignedJwt(claims) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  return `${enc({ alg: 'none', typ: 'JWT' })}.${enc(claims)}.mock`;
}

class OAuthError extends Error {
  constructor(status, error, description, shape = 'oauth') {
    super(description || error);
    this.status = status;
    this.error = error;
    this.description = description;
    this.shape = shape;
  }
}

class MockOAuth {
  constructor() {
    this.reset();
  }

  reset() {
    this.config = { ...DEFAULT_CONFIG };
    this.counts = {};
    this.codes = new Map(); // authorization code → {provider, clientId, redirectUri, challenge, state}
    this.devices = new Map(); // device code → {provider, clientId, userCode, challenge, polls, approved, denied, expiresAt, slowed}
    this.access = new Map(); // access token → {provider, expiresAt, email, accountId}
    this.refresh = new Map(); // refresh token → {provider, clientId, email, accountId}
    this.copilotTokens = new Map(); // Copilot token → expiresAt
    this.kiroClients = new Map(); // clientId → clientSecret
    this.geminiUsers = new Map(); // email → {onboardCalls, project}
    this.issued = new Set(); // every access and refresh token ever issued (rotated ones too)
  }

  setConfig(patch) {
    if (patch && typeof patch === 'object') Object.assign(this.config, patch);
    return this.config;
  }

  listen(port = 0, host = '127.0.0.1') {
    this.server = http.createServer((req, res) => {
      this.handle(req, res).catch((err) => {
        if (!res.headersSent) this.json(res, 500, { error: 'server_error', error_description: String(err) });
        else res.destroy();
      });
    });
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, host, () => {
        this.port = this.server.address().port;
        this.url = `http://${host}:${this.port}`;
        resolve(this.port);
      });
    });
  }

  close() {
    return new Promise((resolve) => {
      if (!this.server) return resolve();
      this.server.closeAllConnections?.();
      this.server.close(() => resolve());
    });
  }

  // ---- plumbing ----

  json(res, status, body, headers = {}) {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text), ...headers });
    res.end(text);
  }

  redirect(res, location) {
    res.writeHead(302, { location, 'content-length': 0 });
    res.end();
  }

  fail(res, err) {
    if (err.shape === 'github') return this.json(res, 200, { error: err.error, error_description: err.description });
    if (err.shape === 'message') return this.json(res, err.status, { message: err.description || err.error });
    const body = { error: err.error };
    if (err.description) body.error_description = err.description;
    return this.json(res, err.status, body);
  }

  async readBody(req) {
    const chunks = [];
    for await (const c of req) chunks.push(c);
    const text = Buffer.concat(chunks).toString('utf8');
    const type = (req.headers['content-type'] || '').split(';')[0].trim().toLowerCase();
    if (!text) return { text, fields: {}, type };
    if (type === 'application/json') {
      try {
        const parsed = JSON.parse(text);
        return { text, fields: parsed && typeof parsed === 'object' ? parsed : {}, type };
      } catch {
        throw new OAuthError(400, 'invalid_request', 'body is not JSON');
      }
    }
    if (type === 'application/x-www-form-urlencoded') {
      return { text, fields: Object.fromEntries(new URLSearchParams(text)), type };
    }
    throw new OAuthError(400, 'invalid_request', `unsupported content type ${type || '(none)'}`);
  }

  bearer(req, scheme = 'bearer') {
    const auth = req.headers.authorization || '';
    const m = /^(\S+)\s+(.+)$/.exec(auth);
    if (!m || m[1].toLowerCase() !== scheme) return null;
    return m[2].trim();
  }

  // The record of a live access token of `provider`, or a 401.
  requireAccess(token, provider, shape = 'oauth') {
    const rec = token && this.access.get(token);
    if (!rec || rec.provider !== provider) throw new OAuthError(401, 'invalid_token', 'Bad credentials', shape);
    if (rec.expiresAt <= Date.now()) throw new OAuthError(401, 'invalid_token', 'access token expired', shape);
    return rec;
  }

  // New tokens of `provider`; ttlS null = an access token that does not expire.
  issue(provider, { clientId, email = this.config.email, accountId, withRefresh = true, prefix, ttlS } = {}) {
    const ttl = ttlS === undefined ? Number(this.config.accessTokenTtlS) : ttlS;
    const access = randomToken(prefix ?? `${provider}-at-`);
    this.issued.add(access);
    const expiresAt = ttl === null ? Number.MAX_SAFE_INTEGER : Date.now() + ttl * 1000;
    this.access.set(access, { provider, expiresAt, email, accountId });
    const out = { access_token: access, token_type: 'Bearer' };
    if (ttl !== null) out.expires_in = ttl;
    if (withRefresh) {
      const refresh = randomToken(`${provider}-rt-`);
      this.issued.add(refresh);
      this.refresh.set(refresh, { provider, clientId, email, accountId });
      out.refresh_token = refresh;
    }
    return out;
  }

  // A refresh_token grant: the token must be live and of this provider (rotated ones are not).
  refreshGrant(provider, refreshToken, clientId) {
    const cfg = this.config.failRefresh;
    if (cfg === 'server_error') throw new OAuthError(500, 'server_error', 'refresh unavailable');
    if (cfg) throw new OAuthError(400, 'invalid_grant', 'Refresh token revoked');
    const rec = refreshToken && this.refresh.get(refreshToken);
    if (!rec || rec.provider !== provider) throw new OAuthError(400, 'invalid_grant', 'Invalid refresh token');
    if (rec.clientId && clientId !== rec.clientId) throw new OAuthError(400, 'invalid_grant', 'refresh token was issued to another client');
    const rotate = CLIENTS[provider].rotate;
    if (rotate) this.refresh.delete(refreshToken);
    const out = this.issue(provider, { clientId: rec.clientId, email: rec.email, accountId: rec.accountId, withRefresh: rotate });
    return { out, rec };
  }

  checkClient(provider, clientId) {
    if (clientId !== CLIENTS[provider].clientId) {
      throw new OAuthError(401, 'invalid_client', `unknown client_id ${clientId ?? '(none)'}`);
    }
  }

  count(method, path) {
    const key = `${method} ${path}`;
    this.counts[key] = (this.counts[key] || 0) + 1;
  }

  async handle(req, res) {
    const url = new URL(req.url, 'http://mock');
    const path = url.pathname;
    if (path.startsWith('/__')) return this.control(req, res, path);
    this.count(req.method, path);
    const route = ROUTES[`${req.method} ${path}`];
    if (!route) return this.json(res, 404, { error: 'not_found', error_description: `${req.method} ${path}` });
    try {
      const body = req.method === 'GET' ? { fields: {}, text: '' } : await this.readBody(req);
      await route.call(this, req, res, url, body.fields, body);
    } catch (err) {
      if (err instanceof OAuthError) return this.fail(res, err);
      throw err;
    }
  }

  async control(req, res, path) {
    if (req.method === 'GET' && path === '/__calls') return this.json(res, 200, this.counts);
    if (req.method === 'POST' && ['/__config', '/__approve', '/__reset'].includes(path)) {
      let fields = {};
      try {
        fields = (await this.readBody(req)).fields;
      } catch {
        fields = {};
      }
      if (path === '/__config') return this.json(res, 200, this.setConfig(fields));
      if (path === '/__reset') {
        this.reset();
        return this.json(res, 200, { ok: true });
      }
      const dev = [...this.devices.values()].find((d) => d.userCode === fields.user_code);
      if (!dev) return this.json(res, 404, { error: 'unknown user_code' });
      if (fields.deny) dev.denied = true;
      else dev.approved = true;
      return this.json(res, 200, { ok: true });
    }
    return this.json(res, 404, { error: 'not_found' });
  }

  // ---- authorization pages ----

  authorize(provider, res, q, { redirectParam = 'redirect_uri', requirePkce = true } = {}) {
    const redirect = q.get(redirectParam);
    if (!redirect || !/^https?:\/\//.test(redirect)) {
      throw new OAuthError(400, 'invalid_request', `missing or bad ${redirectParam}`);
    }
    this.checkClient(provider, q.get('client_id'));
    if (redirectParam === 'redirect_uri' && q.get('response_type') !== 'code') {
      throw new OAuthError(400, 'unsupported_response_type', 'response_type must be code');
    }
    const challenge = q.get('code_challenge');
    if (challenge || requirePkce) {
      if (q.get('code_challenge_method') !== 'S256' || !challenge) {
        throw new OAuthError(400, 'invalid_request', 'code_challenge with method S256 is required');
      }
    }
    const target = new URL(redirect);
    const state = q.get('state');
    if (this.config.denyAuthorize) {
      target.searchParams.set('error', 'access_denied');
      target.searchParams.set('error_description', 'The user denied the request');
    } else {
      const code = randomToken('code-', 16);
      this.codes.set(code, { provider, clientId: q.get('client_id'), redirectUri: redirect, challenge, state });
      target.searchParams.set('code', code);
    }
    if (state != null) target.searchParams.set('state', state);
    return this.redirect(res, target.toString());
  }

  // An authorization_code grant: code issued to this client and redirect URI, PKCE verified.
  codeGrant(provider, f, { verifierRequired = false } = {}) {
    const rec = f.code && this.codes.get(f.code);
    if (!rec || rec.provider !== provider) throw new OAuthError(400, 'invalid_grant', 'Invalid authorization code');
    this.codes.delete(f.code); // single use
    if (f.client_id !== rec.clientId) throw new OAuthError(400, 'invalid_grant', 'code was issued to another client');
    if (f.redirect_uri !== rec.redirectUri) throw new OAuthError(400, 'invalid_grant', 'redirect_uri does not match');
    if (rec.challenge || verifierRequired) {
      if (!f.code_verifier) throw new OAuthError(400, 'invalid_request', 'code_verifier is required');
      if (s256(f.code_verifier) !== rec.challenge) throw new OAuthError(400, 'invalid_grant', 'PKCE verification failed');
    }
    return rec;
  }

  // ---- device codes ----

  newDevice(provider, clientId, { challenge, expiresIn = 900, interval = 5 } = {}) {
    const deviceCode = randomToken('dc-', 20);
    const dev = {
      provider, clientId, challenge, userCode: userCode(), polls: 0, approved: false, denied: false,
      slowed: false, expiresAt: Date.now() + expiresIn * 1000, interval,
    };
    this.devices.set(deviceCode, dev);
    return { deviceCode, dev, expiresIn };
  }

  // One poll: null when the code is approved; else throws the RFC 8628 error.
  pollDevice(provider, deviceCode, status, shape) {
    const dev = deviceCode && this.devices.get(deviceCode);
    if (!dev || dev.provider !== provider) throw new OAuthError(400, 'invalid_grant', 'unknown device code', shape);
    if (dev.expiresAt <= Date.now()) throw new OAuthError(400, 'expired_token', 'device code expired', shape);
    dev.polls += 1;
    if (this.config.slowDown && !dev.slowed) {
      dev.slowed = true;
      dev.interval += 5;
      throw new OAuthError(status.slowDown, 'slow_down', 'polling too fast', shape);
    }
    if (dev.denied || this.config.denyDevice) throw new OAuthError(400, 'access_denied', 'user denied the request', shape);
    const pending = Number(this.config.devicePendingPolls);
    if (!dev.approved && (pending < 0 || dev.polls <= pending + (dev.slowed ? 1 : 0))) {
      throw new OAuthError(status.pending, 'authorization_pending', 'authorization is pending', shape);
    }
    this.devices.delete(deviceCode);
    return dev;
  }

  // verification_uri_complete of the mock: opening it approves the code.
  approvePage(res, q) {
    const dev = [...this.devices.values()].find((d) => d.userCode === q.get('user_code'));
    if (dev) dev.approved = true;
    res.writeHead(dev ? 200 : 404, { 'content-type': 'text/plain' });
    res.end(dev ? 'approved\n' : 'unknown code\n');
  }
}

// ---- routes ----------------------------------------------------------------------------

async function claudeToken(req, res, url, f) {
  this.checkClient('claude-code', f.client_id);
  if (f.grant_type === 'authorization_code') {
    const rec = this.codeGrant('claude-code', f, { verifierRequired: true });
    if (f.state !== rec.state) throw new OAuthError(400, 'invalid_grant', 'state does not match');
    const accountId = crypto.randomUUID();
    const out = this.issue('claude-code', { clientId: f.client_id, accountId });
    return this.json(res, 200, {
      ...out, scope: 'user:inference user:profile',
      account: { uuid: accountId, email_address: this.config.email },
      organization: { uuid: crypto.randomUUID(), name: 'Mock Org' },
    });
  }
  if (f.grant_type === 'refresh_token') {
    const { out, rec } = this.refreshGrant('claude-code', f.refresh_token, f.client_id);
    return this.json(res, 200, { ...out, account: { uuid: rec.accountId, email_address: rec.email } });
  }
  throw new OAuthError(400, 'unsupported_grant_type', `grant_type ${f.grant_type}`);
}

function codexIdToken(email, accountId) {
  return unsignedJwt({
    iss: 'https://auth.openai.com', aud: [CLIENTS.codex.clientId], email,
    [CODEX_AUTH_CLAIM]: { chatgpt_account_id: accountId, chatgpt_plan_type: 'plus' },
    exp: Math.floor(Date.now() / 1000) + 3600,
  });
}

async function codexToken(req, res, url, f) {
  this.checkClient('codex', f.client_id);
  if (f.grant_type === 'authorization_code') {
    this.codeGrant('codex', f, { verifierRequired: true });
    const accountId = crypto.randomUUID();
    const out = this.issue('codex', { clientId: f.client_id, accountId });
    return this.json(res, 200, { ...out, id_token: codexIdToken(this.config.email, accountId) });
  }
  if (f.grant_type === 'refresh_token') {
    const { out, rec } = this.refreshGrant('codex', f.refresh_token, f.client_id);
    return this.json(res, 200, { ...out, id_token: codexIdToken(rec.email, rec.accountId) });
  }
  throw new OAuthError(400, 'unsupported_grant_type', `grant_type ${f.grant_type}`);
}

async function googleToken(req, res, url, f) {
  this.checkClient('gemini-cli', f.client_id);
  if (f.client_secret !== CLIENTS['gemini-cli'].clientSecret) {
    throw new OAuthError(401, 'invalid_client', 'Unauthorized');
  }
  if (f.grant_type === 'authorization_code') {
    this.codeGrant('gemini-cli', f);
    const out = this.issue('gemini-cli', { clientId: f.client_id });
    return this.json(res, 200, { ...out, scope: 'https://www.googleapis.com/auth/cloud-platform', id_token: unsignedJwt({ email: this.config.email }) });
  }
  if (f.grant_type === 'refresh_token') {
    const { out } = this.refreshGrant('gemini-cli', f.refresh_token, f.client_id);
    return this.json(res, 200, { ...out, scope: 'https://www.googleapis.com/auth/cloud-platform' });
  }
  throw new OAuthError(400, 'unsupported_grant_type', 'Invalid grant_type');
}

async function googleUserInfo(req, res) {
  const rec = this.requireAccess(this.bearer(req), 'gemini-cli');
  return this.json(res, 200, { id: '1234567890', email: rec.email, verified_email: true, name: 'Mock User' });
}

function geminiUser(mock, email) {
  if (!mock.geminiUsers.has(email)) mock.geminiUsers.set(email, { onboardCalls: 0, project: null });
  return mock.geminiUsers.get(email);
}

async function loadCodeAssist(req, res, url, f) {
  const rec = this.requireAccess(this.bearer(req), 'gemini-cli');
  if (!f.metadata || f.metadata.pluginType !== 'GEMINI') {
    throw new OAuthError(400, 'INVALID_ARGUMENT', 'metadata.pluginType must be GEMINI');
  }
  const user = geminiUser(this, rec.email);
  if (this.config.geminiOnboarded || user.project) {
    return this.json(res, 200, {
      currentTier: { id: 'free-tier', name: 'Gemini Code Assist for individuals' },
      allowedTiers: [{ id: 'free-tier', isDefault: true }],
      cloudaicompanionProject: user.project || this.config.geminiProject,
    });
  }
  return this.json(res, 200, {
    allowedTiers: [
      { id: 'free-tier', name: 'Gemini Code Assist for individuals', isDefault: true },
      { id: 'standard-tier', name: 'Gemini Code Assist', userDefinedCloudaicompanionProject: true },
    ],
  });
}

async function onboardUser(req, res, url, f) {
  const rec = this.requireAccess(this.bearer(req), 'gemini-cli');
  if (f.tierId !== 'free-tier') {
    throw new OAuthError(400, 'FAILED_PRECONDITION', 'the mock onboards the free tier only');
  }
  if (f.cloudaicompanionProject) {
    throw new OAuthError(412, 'FAILED_PRECONDITION', 'the free tier takes no cloudaicompanionProject');
  }
  const user = geminiUser(this, rec.email);
  user.onboardCalls += 1;
  const name = `operations/onboard-${Buffer.from(rec.email).toString('hex').slice(0, 12)}`;
  if (user.onboardCalls <= Number(this.config.onboardPolls)) return this.json(res, 200, { name, done: false });
  user.project = this.config.geminiProject;
  return this.json(res, 200, {
    name, done: true,
    response: { '@type': 'type.googleapis.com/google.internal.cloud.code.v1internal.OnboardUserResponse', cloudaicompanionProject: { id: user.project, name: user.project } },
  });
}

async function githubDeviceCode(req, res, url, f) {
  this.checkClient('copilot', f.client_id);
  const { deviceCode, dev, expiresIn } = this.newDevice('copilot', f.client_id);
  const body = {
    device_code: deviceCode, user_code: dev.userCode, verification_uri: `${this.url}/github.com/login/device`,
    expires_in: expiresIn, interval: dev.interval,
  };
  if (!(req.headers.accept || '').includes('json')) {
    res.writeHead(200, { 'content-type': 'application/x-www-form-urlencoded' });
    return res.end(new URLSearchParams(Object.entries(body).map(([k, v]) => [k, String(v)])).toString());
  }
  return this.json(res, 200, body);
}

async function githubToken(req, res, url, f) {
  if (f.client_id !== CLIENTS.copilot.clientId) throw new OAuthError(200, 'incorrect_client_credentials', 'The client_id is not valid', 'github');
  if (f.grant_type !== DEVICE_GRANT) throw new OAuthError(200, 'unsupported_grant_type', 'The grant type must be device_code', 'github');
  this.pollDevice('copilot', f.device_code, { pending: 200, slowDown: 200 }, 'github');
  // GitHub OAuth tokens of the VS Code app do not expire and come without a refresh token.
  const out = this.issue('copilot', { clientId: f.client_id, withRefresh: false, prefix: 'gho_', ttlS: null });
  return this.json(res, 200, { access_token: out.access_token, token_type: 'bearer', scope: 'read:user' });
}

async function copilotToken(req, res) {
  const rec = this.requireAccess(this.bearer(req, 'token'), 'copilot', 'message');
  const ttl = Number(this.config.copilotTokenTtlS);
  const expiresAt = Math.floor(Date.now() / 1000) + ttl;
  const token = `tid=${crypto.randomBytes(8).toString('hex')};exp=${expiresAt};sku=copilot_for_individuals:${crypto.randomBytes(8).toString('hex')}`;
  this.copilotTokens.set(token, expiresAt * 1000);
  return this.json(res, 200, {
    token, expires_at: expiresAt, refresh_in: Math.max(0, ttl - 300),
    endpoints: { api: this.config.copilotApiBase, proxy: 'https://proxy.individual.githubcopilot.com' },
    chat_enabled: true, sku: 'copilot_for_individuals', login: rec.email,
  });
}

async function githubUser(req, res) {
  this.requireAccess(this.bearer(req, 'token') || this.bearer(req), 'copilot', 'message');
  return this.json(res, 200, { login: 'mock-user', id: 1, email: this.config.email });
}

async function qwenDeviceCode(req, res, url, f) {
  this.checkClient('qwen', f.client_id);
  if (f.code_challenge_method !== 'S256' || !f.code_challenge) {
    throw new OAuthError(400, 'invalid_request', 'code_challenge with method S256 is required');
  }
  const { deviceCode, dev, expiresIn } = this.newDevice('qwen', f.client_id, { challenge: f.code_challenge, expiresIn: 600 });
  const verify = `${this.url}/chat.qwen.ai/authorize`;
  return this.json(res, 200, {
    device_code: deviceCode, user_code: dev.userCode, verification_uri: verify,
    verification_uri_complete: `${verify}?user_code=${dev.userCode}&client=qwen-code`, expires_in: expiresIn,
  });
}

async function qwenToken(req, res, url, f) {
  this.checkClient('qwen', f.client_id);
  if (f.grant_type === DEVICE_GRANT) {
    const dev = this.devices.get(f.device_code);
    if (dev && dev.provider === 'qwen' && s256(f.code_verifier || '') !== dev.challenge) {
      throw new OAuthError(400, 'invalid_grant', 'PKCE verification failed');
    }
    this.pollDevice('qwen', f.device_code, { pending: 400, slowDown: 429 });
    const out = this.issue('qwen', { clientId: f.client_id });
    return this.json(res, 200, { ...out, resource_url: this.config.qwenResourceUrl });
  }
  if (f.grant_type === 'refresh_token') {
    const { out } = this.refreshGrant('qwen', f.refresh_token, f.client_id);
    return this.json(res, 200, { ...out, resource_url: this.config.qwenResourceUrl });
  }
  throw new OAuthError(400, 'unsupported_grant_type', `grant_type ${f.grant_type}`);
}

async function kiroRegister(req, res, url, f) {
  if (f.clientType !== 'public' || !f.clientName) throw new OAuthError(400, 'invalid_request', 'clientName and clientType public are required');
  if (!Array.isArray(f.scopes) || !f.scopes.every((s) => s.startsWith('codewhisperer:'))) {
    throw new OAuthError(400, 'invalid_scope', 'scopes must be codewhisperer scopes');
  }
  const clientId = randomToken('kiro-client-', 12);
  const clientSecret = randomToken('kiro-secret-', 24);
  this.kiroClients.set(clientId, clientSecret);
  const now = Math.floor(Date.now() / 1000);
  return this.json(res, 200, { clientId, clientSecret, clientIdIssuedAt: now, clientSecretExpiresAt: now + 90 * 86400 });
}

function kiroClient(mock, f) {
  if (!f.clientId || mock.kiroClients.get(f.clientId) !== f.clientSecret) {
    throw new OAuthError(401, 'invalid_client', 'Invalid client provided');
  }
}

async function kiroDeviceAuthorization(req, res, url, f) {
  kiroClient(this, f);
  if (!f.startUrl) throw new OAuthError(400, 'invalid_request', 'startUrl is required');
  const { deviceCode, dev, expiresIn } = this.newDevice('kiro', f.clientId, { expiresIn: 600, interval: 1 });
  const verify = `${this.url}/device.sso.us-east-1.amazonaws.com/`;
  return this.json(res, 200, {
    deviceCode, userCode: dev.userCode, verificationUri: verify,
    verificationUriComplete: `${verify}?user_code=${dev.userCode}`, expiresIn, interval: dev.interval,
  });
}

async function kiroToken(req, res, url, f) {
  kiroClient(this, f);
  const camel = (out) => {
    const r = { accessToken: out.access_token, expiresIn: out.expires_in, tokenType: 'Bearer' };
    if (out.refresh_token) r.refreshToken = out.refresh_token;
    return r;
  };
  if (f.grantType === DEVICE_GRANT) {
    const dev = this.devices.get(f.deviceCode);
    if (dev && dev.clientId !== f.clientId) throw new OAuthError(400, 'invalid_grant', 'device code of another client');
    this.pollDevice('kiro', f.deviceCode, { pending: 400, slowDown: 400 });
    return this.json(res, 200, camel(this.issue('kiro', { clientId: f.clientId })));
  }
  if (f.grantType === 'refresh_token') {
    const { out } = this.refreshGrant('kiro', f.refreshToken, f.clientId);
    return this.json(res, 200, camel(out));
  }
  throw new OAuthError(400, 'unsupported_grant_type', `grantType ${f.grantType}`);
}

async function iflowToken(req, res, url, f) {
  const basic = this.bearer(req, 'basic');
  const expected = Buffer.from(`${CLIENTS.iflow.clientId}:${CLIENTS.iflow.clientSecret}`).toString('base64');
  if (basic !== expected) throw new OAuthError(401, 'invalid_client', 'bad client authentication');
  this.checkClient('iflow', f.client_id);
  if (f.grant_type === 'authorization_code') {
    this.codeGrant('iflow', f);
    return this.json(res, 200, { ...this.issue('iflow', { clientId: f.client_id }), scope: 'read' });
  }
  if (f.grant_type === 'refresh_token') {
    const { out } = this.refreshGrant('iflow', f.refresh_token, f.client_id);
    return this.json(res, 200, { ...out, scope: 'read' });
  }
  throw new OAuthError(400, 'unsupported_grant_type', `grant_type ${f.grant_type}`);
}

async function iflowUserInfo(req, res, url) {
  const token = url.searchParams.get('accessToken');
  const rec = token && this.access.get(token);
  if (!rec || rec.provider !== 'iflow' || rec.expiresAt <= Date.now()) {
    return this.json(res, 200, { success: false, code: '401', message: 'invalid accessToken' });
  }
  const apiKey = this.config.iflowApiKey || `sk-iflow-${crypto.createHash('sha256').update(token).digest('hex').slice(0, 32)}`;
  return this.json(res, 200, { success: true, code: '200', message: 'success', data: { apiKey, email: rec.email, phone: '' } });
}

const ROUTES = {
  'GET /claude.ai/oauth/authorize': function (req, res, url) {
    return this.authorize('claude-code', res, url.searchParams);
  },
  'POST /platform.claude.com/v1/oauth/token': claudeToken,
  'POST /console.anthropic.com/v1/oauth/token': claudeToken,
  'GET /auth.openai.com/oauth/authorize': function (req, res, url) {
    return this.authorize('codex', res, url.searchParams);
  },
  'POST /auth.openai.com/oauth/token': codexToken,
  'GET /accounts.google.com/o/oauth2/v2/auth': function (req, res, url) {
    if (url.searchParams.get('access_type') !== 'offline') {
      throw new OAuthError(400, 'invalid_request', 'the mock expects access_type=offline');
    }
    return this.authorize('gemini-cli', res, url.searchParams, { requirePkce: false });
  },
  'POST /oauth2.googleapis.com/token': googleToken,
  'GET /www.googleapis.com/oauth2/v2/userinfo': googleUserInfo,
  'GET /www.googleapis.com/oauth2/v1/userinfo': googleUserInfo,
  'POST /cloudcode-pa.googleapis.com/v1internal:loadCodeAssist': loadCodeAssist,
  'POST /cloudcode-pa.googleapis.com/v1internal:onboardUser': onboardUser,
  'POST /github.com/login/device/code': githubDeviceCode,
  'POST /github.com/login/oauth/access_token': githubToken,
  'GET /github.com/login/device': function (req, res, url) {
    return this.approvePage(res, url.searchParams);
  },
  'GET /api.github.com/copilot_internal/v2/token': copilotToken,
  'GET /api.github.com/user': githubUser,
  'POST /chat.qwen.ai/api/v1/oauth2/device/code': qwenDeviceCode,
  'POST /chat.qwen.ai/api/v1/oauth2/token': qwenToken,
  'GET /chat.qwen.ai/authorize': function (req, res, url) {
    return this.approvePage(res, url.searchParams);
  },
  'POST /oidc.us-east-1.amazonaws.com/client/register': kiroRegister,
  'POST /oidc.us-east-1.amazonaws.com/device_authorization': kiroDeviceAuthorization,
  'POST /oidc.us-east-1.amazonaws.com/token': kiroToken,
  'GET /device.sso.us-east-1.amazonaws.com/': function (req, res, url) {
    return this.approvePage(res, url.searchParams);
  },
  'GET /iflow.cn/oauth': function (req, res, url) {
    return this.authorize('iflow', res, url.searchParams, { redirectParam: 'redirect', requirePkce: false });
  },
  'POST /iflow.cn/oauth/token': iflowToken,
  'GET /iflow.cn/api/oauth/getUserInfo': iflowUserInfo,
};

// Starts the mock in this process. calls() and config() act directly (no HTTP round trip).
export async function startMockOAuth({ port = 0, host = '127.0.0.1' } = {}) {
  const mock = new MockOAuth();
  await mock.listen(port, host);
  return {
    url: mock.url,
    port: mock.port,
    calls: () => ({ ...mock.counts }),
    config: (patch) => ({ ...mock.setConfig(patch) }),
    // Access tokens issued, oldest first: [{token, provider, expiresAt, email, accountId}].
    accessTokens: (provider) => [...mock.access.entries()]
      .filter(([, r]) => !provider || r.provider === provider).map(([token, r]) => ({ token, ...r })),
    // Every secret handed out (access, refresh and Copilot tokens, kiro client secrets, the
    // iFlow API keys of the iFlow access tokens).
    secrets: () => [...mock.issued, ...mock.copilotTokens.keys(),
      ...mock.kiroClients.values(),
      ...[...mock.access].filter(([, r]) => r.provider === 'iflow').map(([t]) => mock.config.iflowApiKey
        || `sk-iflow-${crypto.createHash('sha256').update(t).digest('hex').slice(0, 32)}`)],
    reset: () => mock.reset(),
    approve: (userCodeValue, { deny = false } = {}) => {
      const dev = [...mock.devices.values()].find((d) => d.userCode === userCodeValue);
      if (!dev) return false;
      if (deny) dev.denied = true;
      else dev.approved = true;
      return true;
    },
    close: () => mock.close(),
  };
}

async function main() {
  const m = await startMockOAuth({ port: Number(process.env.PORT || 0), host: process.env.HOST || '127.0.0.1' });
  process.stdout.write(`${m.url}\n`);
  const stop = () => m.close().then(() => process.exit(0));
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

if (import.meta.url === pathToFileURL(process.argv[1] || '').href) {
  main().catch((err) => {
    console.error(err);
    process.exit(1);
  });
}
