#pragma once

// OAuth logins of the subscription providers (data/providers.yaml, kind: oauth) and the
// request shaping their tokens need upstream.
//
//   provider     flow                                         what the connection keeps
//   claude-code  authorization code + PKCE (code pasted back)  access/refresh token, email
//   codex        authorization code + PKCE                    + id_token, chatgpt account id
//   gemini-cli   Google authorization code + PKCE, offline     + Code Assist project id
//   copilot      GitHub device flow, then the Copilot token    GitHub token; api_key = Copilot
//                exchange                                      token, api_base = endpoints.api
//   qwen         device code + PKCE                            + resource_url (API host)
//   kiro         AWS SSO OIDC device authorization (Builder    + the registered OIDC client,
//                ID)                                           needed to refresh
//   iflow        authorization code, then getUserInfo          api_key = the iFlow API key
//
// A login is Start() → (the user authorizes) → Exchange() for auth-code flows or Poll() until
// it returns tokens for device flows. The PendingFlow between the two is plain data (ToJson /
// FromJson) so another replica can finish it. Every call is blocking (HttpFetcher); run it on a
// worker thread.

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "http_fetch.h"

namespace omniroute::accounts {

enum class OAuthFlowKind { kAuthCode, kDeviceCode };

struct OAuthTokens {
  std::string access_token;
  std::string refresh_token;
  std::string id_token;
  int64_t expires_at_ms = 0;  // of access_token; 0 = does not expire (GitHub) or unknown
  std::string email;          // or the account's login / phone where there is no email
  std::string account_id;     // codex: chatgpt_account_id (id_token claims); claude: account uuid
  std::string project_id;     // gemini-cli: the Code Assist (cloudaicompanion) project
  std::string resource_url;   // qwen: host of the account's API, e.g. "portal.qwen.ai"
  std::string api_key;        // copilot: the Copilot token; iflow: the API key
  int64_t api_key_expires_at_ms = 0;  // copilot token expiry; 0 = none
  std::string api_base;               // copilot: endpoints.api of the Copilot token
  std::string client_id;              // kiro: the OIDC client registered at login
  std::string client_secret;          // kiro: its secret
};

// JSON object with the non-empty fields above (snake_case names).
std::string TokensToJson(const OAuthTokens& tokens);
absl::StatusOr<OAuthTokens> TokensFromJson(std::string_view json);

// A login between Start() and its end. Holds secrets (code_verifier, device_code, a kiro
// client secret): store it like tokens.
struct PendingFlow {
  std::string provider;
  OAuthFlowKind kind = OAuthFlowKind::kAuthCode;
  std::string state;          // auth code: the CSRF state sent to the provider
  std::string code_verifier;  // PKCE (auth code flows, qwen)
  std::string redirect_uri;
  std::string auth_url;     // auth code: where the user goes
  std::string device_code;  // device flows
  std::string user_code;
  std::string verification_uri;
  std::string verification_uri_complete;
  int interval_s = 5;         // device flows: seconds between polls (raised by slow_down)
  int64_t expires_at_ms = 0;  // after this the flow cannot finish
  std::string extra_json;     // provider data (kiro: the registered client), a JSON object

  std::string ToJson() const;
  static absl::StatusOr<PendingFlow> FromJson(std::string_view json);
};

struct OAuthClientOptions {
  // When set, every provider URL https://HOST/PATH becomes <override>/HOST/PATH (the mock OAuth
  // server of the integration tests; air-gapped installs with a relay). Also applied to
  // auth_url; not to URLs the providers return (verification_uri, endpoints.api, resource_url).
  std::string url_base_override;
  std::function<int64_t()> now_ms;           // default: the system clock
  std::function<void(int64_t ms)> sleep_ms;  // default: sleeps (gemini-cli onboarding waits)
};

class OAuthClient {
 public:
  // `http` must outlive the client.
  OAuthClient(HttpFetcher* http, OAuthClientOptions options);

  static bool Supports(std::string_view provider);
  // The registry ids above, in that order.
  static std::vector<std::string> Providers();
  static OAuthFlowKind FlowKind(std::string_view provider);
  // The redirect URI an auth-code login uses when Start() gets none ("" for device flows).
  static std::string DefaultRedirectUri(std::string_view provider);

  // Begins a login: auth-code flows get auth_url (+ state, PKCE verifier); device flows call the
  // provider for a device code (user_code, verification_uri). `redirect_uri` empty = the
  // provider's default (claude-code and gemini-cli: the provider's page that shows the code;
  // codex: http://localhost:1455/auth/callback; iflow: http://localhost:11451/oauth2callback).
  // Errors: NOT_FOUND for an unknown provider; provider errors as for Exchange.
  absl::StatusOr<PendingFlow> Start(const std::string& provider, const std::string& redirect_uri);

  // Auth-code flows: `code_or_url` is the code, "code#state" (Claude's page), or the whole
  // callback URL / its query (code and state parsed; a state that differs from the flow's is
  // INVALID_ARGUMENT; an error= callback is PERMISSION_DENIED). Then the provider's follow-up
  // calls (user info, gemini-cli project, iflow API key).
  // Errors: FAILED_PRECONDITION when the flow expired or is a device flow; INVALID_ARGUMENT when
  // the provider refuses the code (invalid_grant …); UNAVAILABLE / DEADLINE_EXCEEDED for
  // transport errors and provider 5xx / 429.
  absl::StatusOr<OAuthTokens> Exchange(const PendingFlow& flow, const std::string& code_or_url);

  // Device flows: one poll of the token endpoint; the caller waits flow.interval_s between
  // calls. nullopt while authorization_pending; slow_down raises flow.interval_s and is also
  // nullopt. PERMISSION_DENIED when the user denied; FAILED_PRECONDITION when the code expired.
  absl::StatusOr<std::optional<OAuthTokens>> Poll(PendingFlow& flow);

  // New tokens from the refresh token (copilot: a new Copilot token from the GitHub token).
  // Keeps the fields the provider does not resend (refresh_token, email, project_id, …).
  // FAILED_PRECONDITION ("needs re-login") when the provider answers invalid_grant (or, for
  // copilot, 401 for the GitHub token); other errors as for Exchange.
  absl::StatusOr<OAuthTokens> Refresh(const std::string& provider, const OAuthTokens& tokens);

  // Whether `t` should be refreshed at `now_ms`: within 5 minutes of the expiry of the access
  // token or of the copilot api_key.
  static bool NeedsRefresh(const OAuthTokens& t, int64_t now_ms);

  // Headers that authenticate (and, as the provider's own client does, shape) upstream requests
  // made with `t`. Names lowercase.
  static std::vector<std::pair<std::string, std::string>> UpstreamHeaders(
      const std::string& provider, const OAuthTokens& t);
  // The upstream base URL these tokens need instead of the registry's ("" = the registry's):
  // copilot endpoints.api, qwen https://<resource_url>/v1.
  static std::string UpstreamBaseUrl(const std::string& provider, const OAuthTokens& t);

 private:
  HttpFetcher* http_;
  OAuthClientOptions options_;
};

}  // namespace omniroute::accounts
