#include "oauth.h"

#include <boost/json.hpp>
#include <chrono>
#include <map>
#include <thread>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/crypto.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/strings.h"

// Sources of the provider facts below (endpoints, client ids, parameters, response fields):
//   claude-code  Claude Code CLI constants as used by OmniRoute (src/lib/oauth/constants/
//                oauth.ts), CLIProxyAPI (internal/auth/claude) and pi-ai / opencode ports.
//   codex        openai/codex (codex-rs login + refresh), OmniRoute, CLIProxyAPI.
//   gemini-cli   google-gemini/gemini-cli packages/core/src/code_assist/{oauth2,setup,server}.ts.
//   copilot      GitHub device flow docs (docs.github.com, authorizing OAuth apps) + RFC 8628;
//                the Copilot token exchange as in OmniRoute and CLIProxyAPI internal/auth/copilot.
//   qwen         OmniRoute services/qwen.ts (as qwen-code does it).
//   kiro         AWS SSO OIDC API reference (RegisterClient, StartDeviceAuthorization,
//                CreateToken; error shapes); scopes / start URL of amazon-q-developer-cli.
//   iflow        CLIProxyAPI internal/auth/iflow and OmniRoute services/iflow.ts.

namespace omniroute::accounts {
// Named rather than anonymous: accounts_lib is a unity build.
namespace oauth_impl {

namespace json = boost::json;

constexpr int64_t kRefreshMarginMs = 5 * 60 * 1000;
constexpr int64_t kAuthCodeFlowTtlMs = 15 * 60 * 1000;
constexpr int kSlowDownStepS = 5;  // RFC 8628 §3.5
constexpr int kGeminiOperationPolls = 12;
constexpr int64_t kGeminiOperationWaitMs = 5000;  // as gemini-cli waits between polls

constexpr char kClaudeCode[] = "claude-code";
constexpr char kCodex[] = "codex";
constexpr char kGeminiCli[] = "gemini-cli";
constexpr char kCopilot[] = "copilot";
constexpr char kQwen[] = "qwen";
constexpr char kKiro[] = "kiro";
constexpr char kIflow[] = "iflow";

// ---- claude-code ----
constexpr char kClaudeClientId[] = "9d1c250a-e61b-44d9-88ed-5944d1962f5e";
constexpr char kClaudeAuthorizeUrl[] = "https://claude.ai/oauth/authorize";
// Claude Code 2.x moved the token endpoint and the manual-code page from console.anthropic.com
// to platform.claude.com (several 2026 clients use these; one notes the console URL now 404s).
// OmniRoute still lists console.anthropic.com/v1/oauth/token: not confirmed which is canonical.
constexpr char kClaudeTokenUrl[] = "https://platform.claude.com/v1/oauth/token";
constexpr char kClaudeRedirectUri[] = "https://platform.claude.com/oauth/code/callback";
constexpr char kClaudeScopes[] =
    "org:create_api_key user:profile user:inference user:sessions:claude_code user:mcp_servers";
constexpr char kClaudeBeta[] = "oauth-2025-04-20";
constexpr char kAnthropicVersion[] = "2023-06-01";

// ---- codex ----
constexpr char kCodexClientId[] = "app_EMoamEEZ73f0CkXaXp7hrann";
constexpr char kCodexAuthorizeUrl[] = "https://auth.openai.com/oauth/authorize";
constexpr char kCodexTokenUrl[] = "https://auth.openai.com/oauth/token";
constexpr char kCodexRedirectUri[] = "http://localhost:1455/auth/callback";
constexpr char kCodexScopes[] = "openid profile email offline_access";
constexpr char kCodexRefreshScopes[] = "openid profile email";  // codex-rs refresh request
constexpr char kCodexOriginator[] = "codex_cli_rs";
constexpr char kCodexAuthClaim[] = "https://api.openai.com/auth";

// ---- gemini-cli ----
// The Gemini CLI's installed-app client; Google documents that such a secret is not secret.
constexpr char kGeminiClientId[] =
    "681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com";
constexpr char kGeminiClientSecret[] = "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";
constexpr char kGoogleAuthorizeUrl[] = "https://accounts.google.com/o/oauth2/v2/auth";
constexpr char kGoogleTokenUrl[] = "https://oauth2.googleapis.com/token";
constexpr char kGoogleUserInfoUrl[] = "https://www.googleapis.com/oauth2/v2/userinfo";
// gemini-cli's "user code" login (NO_BROWSER): Google shows the code on this page.
constexpr char kGeminiRedirectUri[] = "https://codeassist.google.com/authcode";
constexpr char kGeminiScopes[] =
    "https://www.googleapis.com/auth/cloud-platform "
    "https://www.googleapis.com/auth/userinfo.email "
    "https://www.googleapis.com/auth/userinfo.profile";
constexpr char kCodeAssistBase[] = "https://cloudcode-pa.googleapis.com/v1internal";
constexpr char kFreeTierId[] = "free-tier";
constexpr char kLegacyTierId[] = "legacy-tier";

// ---- copilot ----
constexpr char kCopilotClientId[] = "Iv1.b507a08c87ecfe98";  // the VS Code Copilot app
constexpr char kGithubDeviceCodeUrl[] = "https://github.com/login/device/code";
constexpr char kGithubTokenUrl[] = "https://github.com/login/oauth/access_token";
constexpr char kGithubUserUrl[] = "https://api.github.com/user";
constexpr char kCopilotTokenUrl[] = "https://api.github.com/copilot_internal/v2/token";
constexpr char kGithubScopes[] = "read:user";
// What OmniRoute sends (GITHUB_CONFIG); VS Code's own values change with every release.
constexpr char kCopilotUserAgent[] = "GitHubCopilotChat/0.26.7";
constexpr char kCopilotEditorVersion[] = "vscode/1.85.0";
constexpr char kCopilotPluginVersion[] = "copilot-chat/0.26.7";
constexpr char kCopilotIntegrationId[] = "vscode-chat";
constexpr char kCopilotIntent[] = "conversation-panel";

// ---- qwen ----
constexpr char kQwenClientId[] = "f0304373b74a44d2b584a3fb70ca9e56";
constexpr char kQwenDeviceCodeUrl[] = "https://chat.qwen.ai/api/v1/oauth2/device/code";
constexpr char kQwenTokenUrl[] = "https://chat.qwen.ai/api/v1/oauth2/token";
constexpr char kQwenScopes[] = "openid profile email model.completion";

// ---- kiro (AWS Builder ID through AWS SSO OIDC) ----
constexpr char kKiroOidcBase[] = "https://oidc.us-east-1.amazonaws.com";
constexpr char kKiroStartUrl[] = "https://view.awsapps.com/start";  // Builder ID
constexpr char kKiroClientName[] = "kiro-oauth-client";
// No issuerUrl at registration: the API reference ties it to IAM Identity Center
// authorization-code clients, and amazon-q-developer-cli registers Builder ID clients without.

// ---- iflow ----
constexpr char kIflowClientId[] = "10009311001";
constexpr char kIflowClientSecret[] = "4Z3YjXycVsQvyGF1etiNlIBB4RsqSDtW";
constexpr char kIflowAuthorizeUrl[] = "https://iflow.cn/oauth";
constexpr char kIflowTokenUrl[] = "https://iflow.cn/oauth/token";
constexpr char kIflowUserInfoUrl[] = "https://iflow.cn/api/oauth/getUserInfo";
constexpr char kIflowRedirectUri[] = "http://localhost:11451/oauth2callback";

constexpr char kDeviceGrant[] = "urn:ietf:params:oauth:grant-type:device_code";

using Headers = std::vector<std::pair<std::string, std::string>>;
using Params = std::vector<std::pair<std::string, std::string>>;

// ---- encodings ----

std::string PercentEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size() * 3);
  for (unsigned char c : s) {
    if (absl::ascii_isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string EncodeParams(const Params& params) {
  std::string out;
  for (const auto& [k, v] : params) {
    if (!out.empty()) out.push_back('&');
    absl::StrAppend(&out, PercentEncode(k), "=", PercentEncode(v));
  }
  return out;
}

// ---- JSON ----

std::optional<json::object> ParseObject(std::string_view text) {
  boost::system::error_code ec;
  json::value v = json::parse(json::string_view(text.data(), text.size()), ec);
  if (ec || !v.is_object()) return std::nullopt;
  return std::move(v.as_object());
}

std::string Str(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(json::string_view(key.data(), key.size()));
  if (v == nullptr || !v->is_string()) return "";
  return std::string(v->as_string().data(), v->as_string().size());
}

int64_t Int(const json::object& o, std::string_view key, int64_t fallback = 0) {
  const json::value* v = o.if_contains(json::string_view(key.data(), key.size()));
  if (v == nullptr) return fallback;
  if (v->is_int64()) return v->as_int64();
  if (v->is_uint64()) return static_cast<int64_t>(v->as_uint64());
  if (v->is_double()) return static_cast<int64_t>(v->as_double());
  if (v->is_string()) {
    int64_t n = 0;
    if (absl::SimpleAtoi(absl::string_view(v->as_string().data(), v->as_string().size()), &n)) {
      return n;
    }
  }
  return fallback;
}

bool Bool(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(json::string_view(key.data(), key.size()));
  return v != nullptr && v->is_bool() && v->as_bool();
}

const json::object* Obj(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(json::string_view(key.data(), key.size()));
  return v != nullptr && v->is_object() ? &v->as_object() : nullptr;
}

const json::array* Arr(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(json::string_view(key.data(), key.size()));
  return v != nullptr && v->is_array() ? &v->as_array() : nullptr;
}

void PutIf(json::object& o, std::string_view key, const std::string& value) {
  if (!value.empty()) o[json::string_view(key.data(), key.size())] = value;
}

void PutIf(json::object& o, std::string_view key, int64_t value) {
  if (value != 0) o[json::string_view(key.data(), key.size())] = value;
}

// The claims of a JWT (no signature check: the token came straight from the issuer over TLS).
json::object JwtClaims(std::string_view jwt) {
  size_t first = jwt.find('.');
  if (first == std::string_view::npos) return {};
  size_t second = jwt.find('.', first + 1);
  if (second == std::string_view::npos) return {};
  auto payload = crypto::Base64UrlDecode(jwt.substr(first + 1, second - first - 1));
  if (!payload.ok()) return {};
  return ParseObject(*payload).value_or(json::object{});
}

// A short, printable excerpt of a non-JSON answer for error messages.
std::string Snippet(std::string_view body) {
  std::string out;
  for (char c : body.substr(0, 200)) out.push_back(absl::ascii_isprint(c) ? c : ' ');
  return std::string(absl::StripAsciiWhitespace(out));
}

// ---- errors ----

enum class Phase { kLogin, kRefresh };

// The provider's error code and description from an OAuth / API error body: RFC 6749 {error,
// error_description}, Anthropic {error: {type, message}}, GitHub / iFlow {message}.
std::pair<std::string, std::string> ErrorOf(const json::object& o) {
  std::string code = Str(o, "error");
  std::string description = Str(o, "error_description");
  if (const json::object* e = Obj(o, "error")) {
    code = Str(*e, "type");
    if (code.empty()) code = Str(*e, "status");
    description = Str(*e, "message");
  }
  if (description.empty()) description = Str(o, "message");
  if (description.empty()) description = Str(o, "msg");
  if (code.empty()) code = Str(o, "code");
  return {code, description};
}

absl::Status ProviderError(std::string_view provider, std::string_view step, const HttpResponse& r,
                           Phase phase) {
  std::string code;
  std::string description;
  if (auto o = ParseObject(r.body)) {
    std::tie(code, description) = ErrorOf(*o);
  } else {
    description = Snippet(r.body);
  }
  std::string message = absl::StrCat(AV(provider), " ", AV(step), " failed: HTTP ", r.status);
  if (!code.empty()) absl::StrAppend(&message, " ", code);
  if (!description.empty()) absl::StrAppend(&message, ": ", description.substr(0, 300));
  if (phase == Phase::kRefresh && (code == "invalid_grant" || r.status == 401)) {
    return absl::FailedPreconditionError(absl::StrCat(message, " (needs re-login)"));
  }
  if (r.status >= 500 || r.status == 429) return absl::UnavailableError(message);
  if (code == "access_denied" || r.status == 403) return absl::PermissionDeniedError(message);
  if (code == "expired_token") return absl::FailedPreconditionError(message);
  if (r.status == 401) return absl::UnauthenticatedError(message);
  return absl::InvalidArgumentError(message);
}

absl::Status Malformed(std::string_view provider, std::string_view step, std::string_view what) {
  return absl::UnavailableError(
      absl::StrCat(AV(provider), " ", AV(step), ": malformed answer (", AV(what), ")"));
}

std::string RandomState() { return crypto::Base64UrlEncode(crypto::RandomBytes(24)); }

// Standard token fields of an RFC 6749 answer onto `t` (fields absent stay as they were).
void ApplyTokenAnswer(OAuthTokens& t, const json::object& o, int64_t now_ms) {
  t.access_token = Str(o, "access_token");
  if (std::string v = Str(o, "refresh_token"); !v.empty()) t.refresh_token = std::move(v);
  if (std::string v = Str(o, "id_token"); !v.empty()) t.id_token = std::move(v);
  if (int64_t in = Int(o, "expires_in"); in > 0) t.expires_at_ms = now_ms + in * 1000;
}

// Codex: email and the ChatGPT account id from the id_token (the access token as a fallback).
void ApplyCodexClaims(OAuthTokens& t) {
  for (const std::string* jwt : {&t.id_token, &t.access_token}) {
    json::object claims = JwtClaims(*jwt);
    if (t.email.empty()) t.email = Str(claims, "email");
    if (const json::object* auth = Obj(claims, kCodexAuthClaim)) {
      if (std::string id = Str(*auth, "chatgpt_account_id"); !id.empty()) t.account_id = id;
    }
    if (!t.account_id.empty()) break;
  }
}

struct Callback {
  std::string code;
  std::string state;
  std::string error;
  std::string error_description;
};

// The code (and state) from what the user pasted: a callback URL, its query, "code#state"
// (Claude's page) or the bare code.
Callback ParseCallback(std::string_view input) {
  std::string_view s = SV(absl::StripAsciiWhitespace(AV(input)));
  Callback cb;
  if (s.find("code=") != std::string_view::npos || s.find("error=") != std::string_view::npos) {
    size_t q = s.find('?');
    std::string_view rest = q == std::string_view::npos ? s : s.substr(q + 1);
    size_t hash = rest.find('#');
    auto params = ParseQueryString(rest.substr(0, hash));
    if (hash != std::string_view::npos) params.merge(ParseQueryString(rest.substr(hash + 1)));
    cb.code = params["code"];
    cb.state = params["state"];
    cb.error = params["error"];
    cb.error_description = params["error_description"];
    return cb;
  }
  size_t hash = s.find('#');
  cb.code = std::string(s.substr(0, hash));
  if (hash != std::string_view::npos) cb.state = std::string(s.substr(hash + 1));
  return cb;
}

// ---- calls ----

class Calls {
 public:
  Calls(HttpFetcher* http, const OAuthClientOptions& options) : http_(http), options_(options) {}

  int64_t Now() const {
    if (options_.now_ms) return options_.now_ms();
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

  void Sleep(int64_t ms) const {
    if (options_.sleep_ms) {
      options_.sleep_ms(ms);
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(ms));
    }
  }

  // https://HOST/PATH → <override>/HOST/PATH when an override is set.
  std::string Url(std::string_view url) const {
    if (options_.url_base_override.empty() || !absl::StartsWith(AV(url), "https://")) {
      return std::string(url);
    }
    std::string_view base = options_.url_base_override;
    while (!base.empty() && base.back() == '/') base.remove_suffix(1);
    return absl::StrCat(AV(base), "/", AV(url.substr(8)));
  }

  absl::StatusOr<HttpResponse> Send(std::string method, std::string_view url, Headers headers,
                                    std::string body = "") {
    HttpRequest req;
    req.method = std::move(method);
    req.url = Url(url);
    req.headers = std::move(headers);
    req.body = std::move(body);
    return http_->Fetch(req);
  }

  absl::StatusOr<HttpResponse> PostForm(std::string_view url, const Params& params,
                                        Headers headers = {}) {
    headers.emplace_back("content-type", "application/x-www-form-urlencoded");
    headers.emplace_back("accept", "application/json");
    return Send("POST", url, std::move(headers), EncodeParams(params));
  }

  absl::StatusOr<HttpResponse> PostJson(std::string_view url, const json::value& body,
                                        Headers headers = {}) {
    headers.emplace_back("content-type", "application/json");
    headers.emplace_back("accept", "application/json");
    return Send("POST", url, std::move(headers), json::serialize(body));
  }

  absl::StatusOr<HttpResponse> Get(std::string_view url, Headers headers = {}) {
    headers.emplace_back("accept", "application/json");
    return Send("GET", url, std::move(headers));
  }

  // A 2xx JSON object answer, or the provider's error.
  static absl::StatusOr<json::object> Answer(std::string_view provider, std::string_view step,
                                             absl::StatusOr<HttpResponse> r, Phase phase) {
    if (!r.ok()) {
      return absl::Status(r.status().code(),
                          absl::StrCat(AV(provider), " ", AV(step), ": ", r.status().message()));
    }
    if (r->status / 100 != 2) return ProviderError(provider, step, *r, phase);
    auto o = ParseObject(r->body);
    if (!o) return Malformed(provider, step, "not a JSON object");
    // Some endpoints (GitHub) answer errors with 200.
    if (!Str(*o, "error").empty()) {
      HttpResponse as_error = *r;
      as_error.status = 400;
      return ProviderError(provider, step, as_error, phase);
    }
    return *std::move(o);
  }

  // ---- start ----

  absl::StatusOr<PendingFlow> Start(const std::string& provider, const std::string& redirect) {
    PendingFlow f;
    f.provider = provider;
    f.kind = OAuthClient::FlowKind(provider);
    if (f.kind == OAuthFlowKind::kAuthCode) {
      f.redirect_uri = redirect.empty() ? OAuthClient::DefaultRedirectUri(provider) : redirect;
      f.state = RandomState();
      f.expires_at_ms = Now() + kAuthCodeFlowTtlMs;
      if (provider != kIflow) f.code_verifier = crypto::PkceVerifier();
      f.auth_url = AuthUrl(f);
      return f;
    }
    if (provider == kCopilot) return StartCopilot(std::move(f));
    if (provider == kQwen) return StartQwen(std::move(f));
    return StartKiro(std::move(f));
  }

  std::string AuthUrl(const PendingFlow& f) const {
    const std::string challenge =
        f.code_verifier.empty() ? "" : crypto::PkceChallenge(f.code_verifier);
    if (f.provider == kClaudeCode) {
      return Url(absl::StrCat(kClaudeAuthorizeUrl, "?",
                              EncodeParams({{"code", "true"},
                                            {"client_id", kClaudeClientId},
                                            {"response_type", "code"},
                                            {"redirect_uri", f.redirect_uri},
                                            {"scope", kClaudeScopes},
                                            {"code_challenge", challenge},
                                            {"code_challenge_method", "S256"},
                                            {"state", f.state}})));
    }
    if (f.provider == kCodex) {
      return Url(absl::StrCat(kCodexAuthorizeUrl, "?",
                              EncodeParams({{"response_type", "code"},
                                            {"client_id", kCodexClientId},
                                            {"redirect_uri", f.redirect_uri},
                                            {"scope", kCodexScopes},
                                            {"code_challenge", challenge},
                                            {"code_challenge_method", "S256"},
                                            {"id_token_add_organizations", "true"},
                                            {"codex_cli_simplified_flow", "true"},
                                            {"state", f.state},
                                            {"originator", kCodexOriginator}})));
    }
    if (f.provider == kGeminiCli) {
      // prompt=consent makes Google return a refresh token on every login, not only the first.
      return Url(absl::StrCat(kGoogleAuthorizeUrl, "?",
                              EncodeParams({{"client_id", kGeminiClientId},
                                            {"redirect_uri", f.redirect_uri},
                                            {"response_type", "code"},
                                            {"scope", kGeminiScopes},
                                            {"access_type", "offline"},
                                            {"prompt", "consent"},
                                            {"code_challenge", challenge},
                                            {"code_challenge_method", "S256"},
                                            {"state", f.state}})));
    }
    // iflow: its own parameter names (redirect, loginMethod); no PKCE.
    return Url(absl::StrCat(kIflowAuthorizeUrl, "?",
                            EncodeParams({{"loginMethod", "phone"},
                                          {"type", "phone"},
                                          {"redirect", f.redirect_uri},
                                          {"state", f.state},
                                          {"client_id", kIflowClientId}})));
  }

  // Device-authorization fields of an RFC 8628 answer (snake_case) onto `f`.
  void ApplyDeviceAnswer(PendingFlow& f, const json::object& o) {
    f.device_code = Str(o, "device_code");
    f.user_code = Str(o, "user_code");
    f.verification_uri = Str(o, "verification_uri");
    if (f.verification_uri.empty()) f.verification_uri = Str(o, "verification_url");
    f.verification_uri_complete = Str(o, "verification_uri_complete");
    f.interval_s = static_cast<int>(Int(o, "interval", 5));
    if (f.interval_s <= 0) f.interval_s = 5;
    f.expires_at_ms = Now() + Int(o, "expires_in", 900) * 1000;
  }

  absl::StatusOr<PendingFlow> StartCopilot(PendingFlow f) {
    auto o = Answer(
        kCopilot, "device code request",
        PostForm(kGithubDeviceCodeUrl, {{"client_id", kCopilotClientId}, {"scope", kGithubScopes}}),
        Phase::kLogin);
    if (!o.ok()) return o.status();
    ApplyDeviceAnswer(f, *o);
    if (f.device_code.empty()) return Malformed(kCopilot, "device code request", "no device_code");
    return f;
  }

  absl::StatusOr<PendingFlow> StartQwen(PendingFlow f) {
    f.code_verifier = crypto::PkceVerifier();
    auto o = Answer(kQwen, "device code request",
                    PostForm(kQwenDeviceCodeUrl,
                             {{"client_id", kQwenClientId},
                              {"scope", kQwenScopes},
                              {"code_challenge", crypto::PkceChallenge(f.code_verifier)},
                              {"code_challenge_method", "S256"}},
                             {{"x-request-id", crypto::Hex(crypto::RandomBytes(16))}}),
                    Phase::kLogin);
    if (!o.ok()) return o.status();
    ApplyDeviceAnswer(f, *o);
    if (f.device_code.empty()) return Malformed(kQwen, "device code request", "no device_code");
    return f;
  }

  absl::StatusOr<PendingFlow> StartKiro(PendingFlow f) {
    json::object reg;
    reg["clientName"] = kKiroClientName;
    reg["clientType"] = "public";
    reg["scopes"] = json::array{"codewhisperer:completions", "codewhisperer:analysis",
                                "codewhisperer:conversations"};
    reg["grantTypes"] = json::array{kDeviceGrant, "refresh_token"};
    auto client =
        Answer(kKiro, "client registration",
               PostJson(absl::StrCat(kKiroOidcBase, "/client/register"), reg), Phase::kLogin);
    if (!client.ok()) return client.status();
    const std::string client_id = Str(*client, "clientId");
    const std::string client_secret = Str(*client, "clientSecret");
    if (client_id.empty() || client_secret.empty()) {
      return Malformed(kKiro, "client registration", "no clientId / clientSecret");
    }
    json::object start;
    start["clientId"] = client_id;
    start["clientSecret"] = client_secret;
    start["startUrl"] = kKiroStartUrl;
    auto o = Answer(kKiro, "device authorization",
                    PostJson(absl::StrCat(kKiroOidcBase, "/device_authorization"), start),
                    Phase::kLogin);
    if (!o.ok()) return o.status();
    f.device_code = Str(*o, "deviceCode");
    f.user_code = Str(*o, "userCode");
    f.verification_uri = Str(*o, "verificationUri");
    f.verification_uri_complete = Str(*o, "verificationUriComplete");
    f.interval_s = static_cast<int>(Int(*o, "interval", 5));
    if (f.interval_s <= 0) f.interval_s = 5;
    f.expires_at_ms = Now() + Int(*o, "expiresIn", 600) * 1000;
    if (f.device_code.empty()) return Malformed(kKiro, "device authorization", "no deviceCode");
    json::object extra;
    extra["client_id"] = client_id;
    extra["client_secret"] = client_secret;
    f.extra_json = json::serialize(extra);
    return f;
  }

  // ---- exchange ----

  absl::StatusOr<OAuthTokens> Exchange(const PendingFlow& f, const std::string& code_or_url) {
    if (f.kind != OAuthFlowKind::kAuthCode) {
      return absl::FailedPreconditionError(
          absl::StrCat(f.provider, " uses a device flow: poll it instead"));
    }
    if (f.expires_at_ms != 0 && Now() > f.expires_at_ms) {
      return absl::FailedPreconditionError(
          absl::StrCat(f.provider, " login expired: start it again"));
    }
    Callback cb = ParseCallback(code_or_url);
    if (!cb.error.empty()) {
      return absl::PermissionDeniedError(
          absl::StrCat(f.provider, " authorization failed: ", cb.error,
                       cb.error_description.empty() ? "" : ": ", cb.error_description));
    }
    if (cb.code.empty()) return absl::InvalidArgumentError("no authorization code given");
    if (!cb.state.empty() && cb.state != f.state) {
      return absl::InvalidArgumentError(
          absl::StrCat(f.provider, " callback state does not match the login"));
    }
    if (f.provider == kClaudeCode) return ExchangeClaude(f, cb.code);
    if (f.provider == kCodex) return ExchangeCodex(f, cb.code);
    if (f.provider == kGeminiCli) return ExchangeGemini(f, cb.code);
    return ExchangeIflow(f, cb.code);
  }

  absl::StatusOr<OAuthTokens> ExchangeClaude(const PendingFlow& f, const std::string& code) {
    json::object body;
    body["code"] = code;
    body["state"] = f.state;
    body["grant_type"] = "authorization_code";
    body["client_id"] = kClaudeClientId;
    body["redirect_uri"] = f.redirect_uri;
    body["code_verifier"] = f.code_verifier;
    auto o = Answer(kClaudeCode, "token exchange", PostJson(kClaudeTokenUrl, body), Phase::kLogin);
    if (!o.ok()) return o.status();
    OAuthTokens t;
    ApplyClaudeAnswer(t, *o);
    if (t.access_token.empty()) return Malformed(kClaudeCode, "token exchange", "no access_token");
    return t;
  }

  void ApplyClaudeAnswer(OAuthTokens& t, const json::object& o) {
    ApplyTokenAnswer(t, o, Now());
    if (const json::object* account = Obj(o, "account")) {
      if (std::string email = Str(*account, "email_address"); !email.empty()) t.email = email;
      if (std::string uuid = Str(*account, "uuid"); !uuid.empty()) t.account_id = uuid;
    }
  }

  absl::StatusOr<OAuthTokens> ExchangeCodex(const PendingFlow& f, const std::string& code) {
    auto o = Answer(kCodex, "token exchange",
                    PostForm(kCodexTokenUrl, {{"grant_type", "authorization_code"},
                                              {"client_id", kCodexClientId},
                                              {"code", code},
                                              {"redirect_uri", f.redirect_uri},
                                              {"code_verifier", f.code_verifier}}),
                    Phase::kLogin);
    if (!o.ok()) return o.status();
    OAuthTokens t;
    ApplyTokenAnswer(t, *o, Now());
    if (t.access_token.empty()) return Malformed(kCodex, "token exchange", "no access_token");
    ApplyCodexClaims(t);
    return t;
  }

  absl::StatusOr<OAuthTokens> ExchangeGemini(const PendingFlow& f, const std::string& code) {
    auto o = Answer(kGeminiCli, "token exchange",
                    PostForm(kGoogleTokenUrl, {{"grant_type", "authorization_code"},
                                               {"client_id", kGeminiClientId},
                                               {"client_secret", kGeminiClientSecret},
                                               {"code", code},
                                               {"redirect_uri", f.redirect_uri},
                                               {"code_verifier", f.code_verifier}}),
                    Phase::kLogin);
    if (!o.ok()) return o.status();
    OAuthTokens t;
    ApplyTokenAnswer(t, *o, Now());
    if (t.access_token.empty()) return Malformed(kGeminiCli, "token exchange", "no access_token");
    auto info = Answer(kGeminiCli, "user info",
                       Get(kGoogleUserInfoUrl, {{"authorization", "Bearer " + t.access_token}}),
                       Phase::kLogin);
    if (info.ok()) {
      t.email = Str(*info, "email");
    } else {
      LogWarn("gemini-cli user info failed", {{"error", SV(info.status().message())}});
    }
    auto project = GeminiProject(t.access_token);
    if (!project.ok()) return project.status();
    t.project_id = *project;
    return t;
  }

  // The Code Assist project of the account, as gemini-cli's setupUser() learns it:
  // loadCodeAssist, and when the account has no tier yet, onboardUser with the default tier
  // (polling the long-running operation). "" when it cannot be learned now (transport errors,
  // an account that needs a project of its own); an error when Google says it is ineligible.
  absl::StatusOr<std::string> GeminiProject(const std::string& access_token) {
    const Headers auth = {{"authorization", "Bearer " + access_token}};
    json::object metadata;
    metadata["ideType"] = "IDE_UNSPECIFIED";
    metadata["platform"] = "PLATFORM_UNSPECIFIED";
    metadata["pluginType"] = "GEMINI";
    json::object load;
    load["metadata"] = metadata;
    auto loaded = Answer(kGeminiCli, "loadCodeAssist",
                         PostJson(absl::StrCat(kCodeAssistBase, ":loadCodeAssist"), load, auth),
                         Phase::kLogin);
    if (!loaded.ok()) {
      LogWarn("gemini-cli loadCodeAssist failed", {{"error", SV(loaded.status().message())}});
      return std::string();
    }
    auto project_of = [](const json::object& o) {
      std::string id = Str(o, "cloudaicompanionProject");
      if (id.empty()) {
        if (const json::object* p = Obj(o, "cloudaicompanionProject")) id = Str(*p, "id");
      }
      return id;
    };
    if (std::string id = project_of(*loaded); !id.empty()) return id;
    auto ineligible = [&]() -> absl::Status {
      std::string reasons;
      if (const json::array* tiers = Arr(*loaded, "ineligibleTiers")) {
        for (const json::value& tier : *tiers) {
          if (!tier.is_object()) continue;
          std::string reason = Str(tier.as_object(), "reasonMessage");
          if (!reason.empty()) absl::StrAppend(&reasons, reasons.empty() ? "" : "; ", reason);
        }
      }
      if (reasons.empty()) return absl::OkStatus();
      return absl::FailedPreconditionError(
          absl::StrCat("gemini-cli: this account cannot use Gemini Code Assist: ", reasons));
    };
    if (Obj(*loaded, "currentTier") != nullptr) {
      // Set up, but with a project of its own (Workspace / standard tier): it is not ours to pick.
      RETURN_IF_ERROR(ineligible());
      LogWarn("gemini-cli account has no Code Assist project; requests need one");
      return std::string();
    }
    std::string tier_id = kLegacyTierId;
    if (const json::array* tiers = Arr(*loaded, "allowedTiers")) {
      for (const json::value& tier : *tiers) {
        if (tier.is_object() && Bool(tier.as_object(), "isDefault")) {
          tier_id = Str(tier.as_object(), "id");
          break;
        }
      }
    }
    if (tier_id != kFreeTierId) {
      // Other tiers onboard into a project the user names; we have none to give.
      RETURN_IF_ERROR(ineligible());
      LogWarn("gemini-cli account needs a Google Cloud project", {{"tier", tier_id}});
      return std::string();
    }
    json::object onboard;
    onboard["tierId"] = tier_id;
    onboard["metadata"] = metadata;  // free tier: no cloudaicompanionProject (Google's project)
    for (int attempt = 0; attempt < kGeminiOperationPolls; ++attempt) {
      auto op = Answer(kGeminiCli, "onboardUser",
                       PostJson(absl::StrCat(kCodeAssistBase, ":onboardUser"), onboard, auth),
                       Phase::kLogin);
      if (!op.ok()) {
        LogWarn("gemini-cli onboardUser failed", {{"error", SV(op.status().message())}});
        return std::string();
      }
      if (Bool(*op, "done")) {
        if (const json::object* response = Obj(*op, "response")) {
          if (std::string id = project_of(*response); !id.empty()) return id;
        }
        RETURN_IF_ERROR(ineligible());
        return std::string();
      }
      // Re-sending onboardUser is how the operation is polled (idempotent per account).
      Sleep(kGeminiOperationWaitMs);
    }
    LogWarn("gemini-cli onboarding did not finish in time");
    return std::string();
  }

  absl::StatusOr<OAuthTokens> ExchangeIflow(const PendingFlow& f, const std::string& code) {
    auto o = Answer(kIflow, "token exchange",
                    PostForm(kIflowTokenUrl,
                             {{"grant_type", "authorization_code"},
                              {"code", code},
                              {"redirect_uri", f.redirect_uri},
                              {"client_id", kIflowClientId},
                              {"client_secret", kIflowClientSecret}},
                             {{"authorization", IflowBasic()}}),
                    Phase::kLogin);
    if (!o.ok()) return o.status();
    OAuthTokens t;
    ApplyTokenAnswer(t, *o, Now());
    if (t.access_token.empty()) return Malformed(kIflow, "token exchange", "no access_token");
    RETURN_IF_ERROR(IflowUserInfo(t, Phase::kLogin));
    return t;
  }

  static std::string IflowBasic() {
    return "Basic " + crypto::Base64Encode(absl::StrCat(kIflowClientId, ":", kIflowClientSecret));
  }

  // The API key (what apis.iflow.cn accepts) and the account's email / phone.
  absl::Status IflowUserInfo(OAuthTokens& t, Phase phase) {
    auto o =
        Answer(kIflow, "user info",
               Get(absl::StrCat(kIflowUserInfoUrl, "?accessToken=", PercentEncode(t.access_token))),
               phase);
    if (!o.ok()) return o.status();
    if (!Bool(*o, "success")) return Malformed(kIflow, "user info", "success is not true");
    const json::object* data = Obj(*o, "data");
    if (data == nullptr || Str(*data, "apiKey").empty()) {
      return Malformed(kIflow, "user info", "no apiKey");
    }
    t.api_key = Str(*data, "apiKey");
    std::string email = Str(*data, "email");
    if (email.empty()) email = Str(*data, "phone");
    if (!email.empty()) t.email = email;
    return absl::OkStatus();
  }

  // ---- poll ----

  absl::StatusOr<std::optional<OAuthTokens>> Poll(PendingFlow& f) {
    if (f.kind != OAuthFlowKind::kDeviceCode) {
      return absl::FailedPreconditionError(
          absl::StrCat(f.provider, " uses an authorization code: exchange it instead"));
    }
    if (f.expires_at_ms != 0 && Now() > f.expires_at_ms) {
      return absl::FailedPreconditionError(
          absl::StrCat(f.provider, " device code expired: start the login again"));
    }
    absl::StatusOr<HttpResponse> r;
    if (f.provider == kCopilot) {
      r = PostForm(kGithubTokenUrl, {{"client_id", kCopilotClientId},
                                     {"device_code", f.device_code},
                                     {"grant_type", kDeviceGrant}});
    } else if (f.provider == kQwen) {
      r = PostForm(kQwenTokenUrl, {{"grant_type", kDeviceGrant},
                                   {"client_id", kQwenClientId},
                                   {"device_code", f.device_code},
                                   {"code_verifier", f.code_verifier}});
    } else {
      auto extra = ParseObject(f.extra_json);
      if (!extra) return absl::InvalidArgumentError("kiro login has no registered client");
      json::object body;
      body["clientId"] = Str(*extra, "client_id");
      body["clientSecret"] = Str(*extra, "client_secret");
      body["grantType"] = kDeviceGrant;
      body["deviceCode"] = f.device_code;
      r = PostJson(absl::StrCat(kKiroOidcBase, "/token"), body);
    }
    if (!r.ok()) {
      return absl::Status(r.status().code(),
                          absl::StrCat(f.provider, " token poll: ", r.status().message()));
    }
    auto o = ParseObject(r->body);
    if (o) {
      const std::string error = Str(*o, "error");
      if (error == "authorization_pending") return std::nullopt;
      if (error == "slow_down") {
        f.interval_s =
            std::max<int>(f.interval_s + kSlowDownStepS, static_cast<int>(Int(*o, "interval", 0)));
        return std::nullopt;
      }
      if (error == "expired_token") {
        return absl::FailedPreconditionError(
            absl::StrCat(f.provider, " device code expired: start the login again"));
      }
      if (error == "access_denied") {
        return absl::PermissionDeniedError(
            absl::StrCat(f.provider, " login was denied by the user"));
      }
    }
    auto answer = Answer(f.provider, "token poll", *std::move(r), Phase::kLogin);
    if (!answer.ok()) return answer.status();
    absl::StatusOr<OAuthTokens> tokens;
    if (f.provider == kCopilot) {
      tokens = FinishCopilot(*answer);
    } else if (f.provider == kQwen) {
      tokens = FinishQwen(*answer);
    } else {
      tokens = FinishKiro(f, *answer);
    }
    if (!tokens.ok()) return tokens.status();
    return std::optional<OAuthTokens>(*std::move(tokens));
  }

  absl::StatusOr<OAuthTokens> FinishCopilot(const json::object& o) {
    OAuthTokens t;
    ApplyTokenAnswer(t, o, Now());
    if (t.access_token.empty()) return Malformed(kCopilot, "token poll", "no access_token");
    RETURN_IF_ERROR(CopilotToken(t, Phase::kLogin));
    auto user = Answer(kCopilot, "user info",
                       Get(kGithubUserUrl, {{"authorization", "token " + t.access_token},
                                            {"user-agent", kCopilotUserAgent}}),
                       Phase::kLogin);
    if (user.ok()) {
      t.email = Str(*user, "email");
      if (t.email.empty()) t.email = Str(*user, "login");
    } else {
      LogWarn("copilot user info failed", {{"error", SV(user.status().message())}});
    }
    return t;
  }

  // The Copilot API token for the GitHub token in `t` (api_key, its expiry, endpoints.api).
  absl::Status CopilotToken(OAuthTokens& t, Phase phase) {
    auto o = Answer(kCopilot, "Copilot token",
                    Get(kCopilotTokenUrl, {{"authorization", "token " + t.access_token},
                                           {"user-agent", kCopilotUserAgent},
                                           {"editor-version", kCopilotEditorVersion},
                                           {"editor-plugin-version", kCopilotPluginVersion}}),
                    phase);
    if (!o.ok()) {
      if (absl::IsPermissionDenied(o.status()) || absl::IsInvalidArgument(o.status())) {
        return absl::PermissionDeniedError(
            absl::StrCat(o.status().message(), " (does this GitHub account have Copilot?)"));
      }
      return o.status();
    }
    std::string token = Str(*o, "token");
    if (token.empty()) return Malformed(kCopilot, "Copilot token", "no token");
    t.api_key = std::move(token);
    t.api_key_expires_at_ms = Int(*o, "expires_at") * 1000;
    if (const json::object* endpoints = Obj(*o, "endpoints")) {
      if (std::string api = Str(*endpoints, "api"); !api.empty()) t.api_base = api;
    }
    return absl::OkStatus();
  }

  absl::StatusOr<OAuthTokens> FinishQwen(const json::object& o) {
    OAuthTokens t;
    ApplyTokenAnswer(t, o, Now());
    if (t.access_token.empty()) return Malformed(kQwen, "token poll", "no access_token");
    t.resource_url = Str(o, "resource_url");
    return t;
  }

  absl::StatusOr<OAuthTokens> FinishKiro(const PendingFlow& f, const json::object& o) {
    OAuthTokens t;
    ApplyKiroAnswer(t, o);
    if (t.access_token.empty()) return Malformed(kKiro, "token poll", "no accessToken");
    if (auto extra = ParseObject(f.extra_json)) {
      t.client_id = Str(*extra, "client_id");
      t.client_secret = Str(*extra, "client_secret");
    }
    return t;
  }

  // AWS SSO OIDC CreateToken answers in camelCase.
  void ApplyKiroAnswer(OAuthTokens& t, const json::object& o) {
    t.access_token = Str(o, "accessToken");
    if (std::string v = Str(o, "refreshToken"); !v.empty()) t.refresh_token = std::move(v);
    if (std::string v = Str(o, "idToken"); !v.empty()) t.id_token = std::move(v);
    if (int64_t in = Int(o, "expiresIn"); in > 0) t.expires_at_ms = Now() + in * 1000;
  }

  // ---- refresh ----

  absl::StatusOr<OAuthTokens> Refresh(const std::string& provider, const OAuthTokens& old) {
    OAuthTokens t = old;
    if (provider == kCopilot) {
      if (t.access_token.empty()) {
        return absl::FailedPreconditionError("copilot has no GitHub token (needs re-login)");
      }
      RETURN_IF_ERROR(CopilotToken(t, Phase::kRefresh));
      return t;
    }
    if (t.refresh_token.empty()) {
      return absl::FailedPreconditionError(
          absl::StrCat(provider, " has no refresh token (needs re-login)"));
    }
    absl::StatusOr<json::object> o;
    if (provider == kClaudeCode) {
      json::object body;
      body["grant_type"] = "refresh_token";
      body["refresh_token"] = t.refresh_token;
      body["client_id"] = kClaudeClientId;
      o = Answer(provider, "token refresh", PostJson(kClaudeTokenUrl, body), Phase::kRefresh);
      if (!o.ok()) return o.status();
      ApplyClaudeAnswer(t, *o);
    } else if (provider == kCodex) {
      json::object body;
      body["client_id"] = kCodexClientId;
      body["grant_type"] = "refresh_token";
      body["refresh_token"] = t.refresh_token;
      body["scope"] = kCodexRefreshScopes;
      o = Answer(provider, "token refresh", PostJson(kCodexTokenUrl, body), Phase::kRefresh);
      if (!o.ok()) return o.status();
      ApplyTokenAnswer(t, *o, Now());
      ApplyCodexClaims(t);
    } else if (provider == kGeminiCli) {
      o = Answer(provider, "token refresh",
                 PostForm(kGoogleTokenUrl, {{"grant_type", "refresh_token"},
                                            {"client_id", kGeminiClientId},
                                            {"client_secret", kGeminiClientSecret},
                                            {"refresh_token", t.refresh_token}}),
                 Phase::kRefresh);
      if (!o.ok()) return o.status();
      ApplyTokenAnswer(t, *o, Now());
      if (t.project_id.empty() && !t.access_token.empty()) {
        auto project = GeminiProject(t.access_token);
        if (project.ok()) t.project_id = *project;
      }
    } else if (provider == kQwen) {
      o = Answer(provider, "token refresh",
                 PostForm(kQwenTokenUrl, {{"grant_type", "refresh_token"},
                                          {"refresh_token", t.refresh_token},
                                          {"client_id", kQwenClientId}}),
                 Phase::kRefresh);
      if (!o.ok()) return o.status();
      ApplyTokenAnswer(t, *o, Now());
      if (std::string url = Str(*o, "resource_url"); !url.empty()) t.resource_url = url;
    } else if (provider == kKiro) {
      if (t.client_id.empty() || t.client_secret.empty()) {
        return absl::FailedPreconditionError("kiro tokens lack their OIDC client (needs re-login)");
      }
      json::object body;
      body["clientId"] = t.client_id;
      body["clientSecret"] = t.client_secret;
      body["grantType"] = "refresh_token";
      body["refreshToken"] = t.refresh_token;
      o = Answer(provider, "token refresh", PostJson(absl::StrCat(kKiroOidcBase, "/token"), body),
                 Phase::kRefresh);
      if (!o.ok()) return o.status();
      ApplyKiroAnswer(t, *o);
    } else {  // iflow
      o = Answer(provider, "token refresh",
                 PostForm(kIflowTokenUrl,
                          {{"grant_type", "refresh_token"},
                           {"refresh_token", t.refresh_token},
                           {"client_id", kIflowClientId},
                           {"client_secret", kIflowClientSecret}},
                          {{"authorization", IflowBasic()}}),
                 Phase::kRefresh);
      if (!o.ok()) return o.status();
      ApplyTokenAnswer(t, *o, Now());
      if (!t.access_token.empty()) RETURN_IF_ERROR(IflowUserInfo(t, Phase::kRefresh));
    }
    if (t.access_token.empty()) return Malformed(provider, "token refresh", "no access token");
    return t;
  }

 private:
  HttpFetcher* http_;
  const OAuthClientOptions& options_;
};

const char* KindName(OAuthFlowKind kind) {
  return kind == OAuthFlowKind::kDeviceCode ? "device_code" : "auth_code";
}

}  // namespace oauth_impl

// ---- serialization ----

std::string TokensToJson(const OAuthTokens& t) {
  namespace json = boost::json;
  using oauth_impl::PutIf;
  json::object o;
  PutIf(o, "access_token", t.access_token);
  PutIf(o, "refresh_token", t.refresh_token);
  PutIf(o, "id_token", t.id_token);
  PutIf(o, "expires_at_ms", t.expires_at_ms);
  PutIf(o, "email", t.email);
  PutIf(o, "account_id", t.account_id);
  PutIf(o, "project_id", t.project_id);
  PutIf(o, "resource_url", t.resource_url);
  PutIf(o, "api_key", t.api_key);
  PutIf(o, "api_key_expires_at_ms", t.api_key_expires_at_ms);
  PutIf(o, "api_base", t.api_base);
  PutIf(o, "client_id", t.client_id);
  PutIf(o, "client_secret", t.client_secret);
  return json::serialize(o);
}

absl::StatusOr<OAuthTokens> TokensFromJson(std::string_view text) {
  using oauth_impl::Int;
  using oauth_impl::Str;
  auto o = oauth_impl::ParseObject(text);
  if (!o) return absl::InvalidArgumentError("OAuth tokens are not a JSON object");
  OAuthTokens t;
  t.access_token = Str(*o, "access_token");
  t.refresh_token = Str(*o, "refresh_token");
  t.id_token = Str(*o, "id_token");
  t.expires_at_ms = Int(*o, "expires_at_ms");
  t.email = Str(*o, "email");
  t.account_id = Str(*o, "account_id");
  t.project_id = Str(*o, "project_id");
  t.resource_url = Str(*o, "resource_url");
  t.api_key = Str(*o, "api_key");
  t.api_key_expires_at_ms = Int(*o, "api_key_expires_at_ms");
  t.api_base = Str(*o, "api_base");
  t.client_id = Str(*o, "client_id");
  t.client_secret = Str(*o, "client_secret");
  return t;
}

std::string PendingFlow::ToJson() const {
  namespace json = boost::json;
  using oauth_impl::PutIf;
  json::object o;
  o["provider"] = provider;
  o["kind"] = oauth_impl::KindName(kind);
  PutIf(o, "state", state);
  PutIf(o, "code_verifier", code_verifier);
  PutIf(o, "redirect_uri", redirect_uri);
  PutIf(o, "auth_url", auth_url);
  PutIf(o, "device_code", device_code);
  PutIf(o, "user_code", user_code);
  PutIf(o, "verification_uri", verification_uri);
  PutIf(o, "verification_uri_complete", verification_uri_complete);
  o["interval_s"] = interval_s;
  PutIf(o, "expires_at_ms", expires_at_ms);
  PutIf(o, "extra_json", extra_json);
  return json::serialize(o);
}

absl::StatusOr<PendingFlow> PendingFlow::FromJson(std::string_view text) {
  using oauth_impl::Int;
  using oauth_impl::Str;
  auto o = oauth_impl::ParseObject(text);
  if (!o) return absl::InvalidArgumentError("OAuth flow is not a JSON object");
  PendingFlow f;
  f.provider = Str(*o, "provider");
  if (!OAuthClient::Supports(f.provider)) {
    return absl::InvalidArgumentError(
        absl::StrCat("OAuth flow of unknown provider '", f.provider, "'"));
  }
  const std::string kind = Str(*o, "kind");
  if (kind == "device_code") {
    f.kind = OAuthFlowKind::kDeviceCode;
  } else if (kind == "auth_code") {
    f.kind = OAuthFlowKind::kAuthCode;
  } else {
    return absl::InvalidArgumentError(absl::StrCat("OAuth flow of unknown kind '", kind, "'"));
  }
  f.state = Str(*o, "state");
  f.code_verifier = Str(*o, "code_verifier");
  f.redirect_uri = Str(*o, "redirect_uri");
  f.auth_url = Str(*o, "auth_url");
  f.device_code = Str(*o, "device_code");
  f.user_code = Str(*o, "user_code");
  f.verification_uri = Str(*o, "verification_uri");
  f.verification_uri_complete = Str(*o, "verification_uri_complete");
  f.interval_s = static_cast<int>(Int(*o, "interval_s", 5));
  f.expires_at_ms = Int(*o, "expires_at_ms");
  f.extra_json = Str(*o, "extra_json");
  return f;
}

// ---- OAuthClient ----

OAuthClient::OAuthClient(HttpFetcher* http, OAuthClientOptions options)
    : http_(http), options_(std::move(options)) {}

std::vector<std::string> OAuthClient::Providers() {
  using namespace oauth_impl;
  return {kClaudeCode, kCodex, kGeminiCli, kCopilot, kQwen, kKiro, kIflow};
}

bool OAuthClient::Supports(std::string_view provider) {
  for (const std::string& p : Providers()) {
    if (p == provider) return true;
  }
  return false;
}

OAuthFlowKind OAuthClient::FlowKind(std::string_view provider) {
  using namespace oauth_impl;
  return provider == kCopilot || provider == kQwen || provider == kKiro ? OAuthFlowKind::kDeviceCode
                                                                        : OAuthFlowKind::kAuthCode;
}

std::string OAuthClient::DefaultRedirectUri(std::string_view provider) {
  using namespace oauth_impl;
  if (provider == kClaudeCode) return kClaudeRedirectUri;
  if (provider == kCodex) return kCodexRedirectUri;
  if (provider == kGeminiCli) return kGeminiRedirectUri;
  if (provider == kIflow) return kIflowRedirectUri;
  return "";
}

absl::StatusOr<PendingFlow> OAuthClient::Start(const std::string& provider,
                                               const std::string& redirect_uri) {
  if (!Supports(provider)) {
    return absl::NotFoundError(absl::StrCat("no OAuth login for provider '", provider, "'"));
  }
  return oauth_impl::Calls(http_, options_).Start(provider, redirect_uri);
}

absl::StatusOr<OAuthTokens> OAuthClient::Exchange(const PendingFlow& flow,
                                                  const std::string& code_or_url) {
  if (!Supports(flow.provider)) {
    return absl::NotFoundError(absl::StrCat("no OAuth login for provider '", flow.provider, "'"));
  }
  return oauth_impl::Calls(http_, options_).Exchange(flow, code_or_url);
}

absl::StatusOr<std::optional<OAuthTokens>> OAuthClient::Poll(PendingFlow& flow) {
  if (!Supports(flow.provider)) {
    return absl::NotFoundError(absl::StrCat("no OAuth login for provider '", flow.provider, "'"));
  }
  return oauth_impl::Calls(http_, options_).Poll(flow);
}

absl::StatusOr<OAuthTokens> OAuthClient::Refresh(const std::string& provider,
                                                 const OAuthTokens& tokens) {
  if (!Supports(provider)) {
    return absl::NotFoundError(absl::StrCat("no OAuth login for provider '", provider, "'"));
  }
  return oauth_impl::Calls(http_, options_).Refresh(provider, tokens);
}

bool OAuthClient::NeedsRefresh(const OAuthTokens& t, int64_t now_ms) {
  const int64_t limit = now_ms + oauth_impl::kRefreshMarginMs;
  return (t.expires_at_ms != 0 && t.expires_at_ms <= limit) ||
         (t.api_key_expires_at_ms != 0 && t.api_key_expires_at_ms <= limit);
}

std::vector<std::pair<std::string, std::string>> OAuthClient::UpstreamHeaders(
    const std::string& provider, const OAuthTokens& t) {
  using namespace oauth_impl;
  if (provider == kClaudeCode) {
    return {{"authorization", "Bearer " + t.access_token},
            {"anthropic-beta", kClaudeBeta},
            {"anthropic-version", kAnthropicVersion}};
  }
  if (provider == kCodex) {
    std::vector<std::pair<std::string, std::string>> h = {
        {"authorization", "Bearer " + t.access_token},
        {"openai-beta", "responses=experimental"},
        {"originator", kCodexOriginator}};
    if (!t.account_id.empty()) h.emplace_back("chatgpt-account-id", t.account_id);
    return h;
  }
  if (provider == kCopilot) {
    return {{"authorization", "Bearer " + t.api_key},
            {"editor-version", kCopilotEditorVersion},
            {"editor-plugin-version", kCopilotPluginVersion},
            {"copilot-integration-id", kCopilotIntegrationId},
            {"openai-intent", kCopilotIntent},
            {"user-agent", kCopilotUserAgent}};
  }
  if (provider == kIflow) return {{"authorization", "Bearer " + t.api_key}};
  // gemini-cli, qwen, kiro: the access token.
  return {{"authorization", "Bearer " + t.access_token}};
}

std::string OAuthClient::UpstreamBaseUrl(const std::string& provider, const OAuthTokens& t) {
  using namespace oauth_impl;
  if (provider == kCopilot) return t.api_base;
  if (provider == kQwen && !t.resource_url.empty()) {
    // As qwen-code: a bare host gets https://, and the OpenAI-compatible root is /v1.
    std::string url =
        absl::StartsWith(t.resource_url, "http://") || absl::StartsWith(t.resource_url, "https://")
            ? t.resource_url
            : "https://" + t.resource_url;
    while (!url.empty() && url.back() == '/') url.pop_back();
    if (!absl::EndsWith(url, "/v1")) url += "/v1";
    return url;
  }
  return "";
}

}  // namespace omniroute::accounts
