#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/value.hpp>

#include "absl/status/statusor.h"
#include "common/format.h"
#include "common/retry_hint.h"
#include "common/strings.h"
#include "omniroute/accounts/v1/accounts.pb.h"

namespace omniroute::edge {

// What the edge needs to know of a client's JSON request.
struct ChatRequestInfo {
  boost::json::value body;  // the parsed request, kept whole (unknown fields included)
  std::string model;
  bool stream = false;
};

// Parses a request body of a client API. The model and stream flag come from the body
// (OpenAI, Anthropic, Responses). INVALID_ARGUMENT for invalid JSON, a body that is not an
// object, or a missing/non-string model.
absl::StatusOr<ChatRequestInfo> ParseChatRequest(std::string_view body);

// A Gemini request: the model and the stream flag are in the path.
absl::StatusOr<ChatRequestInfo> ParseGeminiRequest(std::string_view body, std::string model,
                                                   bool stream);

// The output-token cap the request sets in any client format (max_tokens,
// max_completion_tokens, max_output_tokens, generationConfig.maxOutputTokens); 0 = none.
int64_t MaxOutputTokens(const ChatRequestInfo& info);

// Serialises `info.body` with "model" replaced by `upstream_model`.
std::string RewriteModel(ChatRequestInfo& info, std::string_view upstream_model);

// A Gemini call path: "/v1beta/models/{model}:{method}" (also "/v1/models/..."). The model
// may carry our provider prefix ("glm/glm-4.7"). False when `path` is not one.
bool ParseGeminiPath(std::string_view path, std::string* model, std::string* method);

// Token counts as the provider reported them.
struct TokenUsage {
  int64_t input = 0;      // including cached input
  int64_t output = 0;     // including reasoning
  int64_t cached = 0;          // cache reads, part of input
  int64_t cache_creation = 0;  // cache writes, part of input
  int64_t reasoning = 0;
  bool present = false;
};

// Reads the usage object of a provider answer (whole body, or one stream event's JSON) of
// `format`; leaves `usage` untouched when there is none. Returns false on invalid JSON.
bool ExtractUsage(Format format, std::string_view json, TokenUsage* usage);

// The client key a request presents: "Authorization: Bearer", "x-api-key",
// "x-goog-api-key", or the "key" query parameter. Empty when none.
std::string_view PresentedKey(std::string_view authorization, std::string_view x_api_key,
                              std::string_view x_goog_api_key, std::string_view query);

// Normalises a request path: drops the query, folds "/v1/v1/" into "/v1/", and maps the
// unprefixed OpenAI paths ("/chat/completions", "/models") onto "/v1/...".
std::string NormalizePath(std::string_view target);

// The value of query parameter `name` in `target` (undecoded), or empty.
std::string_view QueryParam(std::string_view target, std::string_view name);

// Legacy text completions (POST /v1/completions) ride on chat: the request becomes a chat
// request with the prompt as one user message; answers and stream events come back as
// `text_completion` objects. INVALID_ARGUMENT for a body chat cannot carry (token arrays).
absl::StatusOr<std::string> CompletionsRequestToChat(std::string_view body);
std::string ChatResponseToCompletions(std::string_view chat_body);
std::string ChatChunkToCompletions(std::string_view chunk_data);

// The message of a provider's error body in any of the four formats (error.message, or a
// top-level message); empty when there is none.
std::string UpstreamErrorMessage(std::string_view body);

// The W3C `traceparent` to send upstream: the client's trace with a new span id, or a new
// sampled trace when the client sent none (or an invalid one).
std::string ChildTraceparent(std::string_view incoming);

// A new request id: "req_" + 24 hex characters, unique enough across replicas.
std::string NewRequestId();

// The client format a request's errors take before its route is known (a refused client
// IP): from the path, else Anthropic when the client sent `anthropic-version`, else OpenAI.
Format FormatForPath(std::string_view path, bool anthropic_version);

// ---- Subscription quota ----

// The usage windows of a subscription plan that a provider's response announces, seen at
// `now_ms`: Claude (anthropic-ratelimit-unified-{5h,7d}-utilization as a 0..1 fraction and
// -reset in epoch seconds; a "rejected" unified status marks the representative-claim window
// spent) as windows "5h" and "7d"; Codex (x-codex-{primary,secondary}-used-percent,
// -window-minutes, -reset-at or -reset-after-seconds) as "primary" and "secondary". Used
// percents are clamped to 0..100; values that do not parse are left out (a window without a
// usable used percent is dropped). nullopt when the response announces none. The connection
// id is left to the caller.
std::optional<accounts::v1::QuotaReport> ExtractQuota(HeaderLookup header, int64_t now_ms);

// Whether `next` is worth sending after `last` (sent for the same connection): a window's
// used percent moved by 1 point or more, a window appeared, went or got another reset time
// (beyond a minute), or 30 s passed since `last` (by reported_at_ms).
bool QuotaReportDue(const accounts::v1::QuotaReport& last, const accounts::v1::QuotaReport& next);

// ---- Admin API ----

// The value of cookie `name` in a Cookie header ("a=1; auth_token=xyz"), or empty.
std::string_view CookieValue(std::string_view cookie_header, std::string_view name);

// The "sub" claim of a verified JWT's claims (a string, or a number as text); empty when
// there is none or the claims are not a JSON object.
std::string JwtSubject(std::string_view claims_json);

// The routing admin API, served by the router: combos, aliases, fallback chains, routing
// and resilience settings, health, resets, /api/providers/{id}/routing.
bool IsRouterAdminPath(std::string_view path);

// The accounts admin API: /api/keys, /api/providers (but not /api/providers/{id}/routing),
// /api/provider-nodes, /api/provider-models, /api/oauth, /api/auth, /api/settings/security,
// each with its sub-paths.
bool IsAccountsAdminPath(std::string_view path);

// The admin routes open without credentials: the dashboard login and the browser's return
// from an OAuth flow (whose `state` is the secret).
bool IsUnauthenticatedAdminRoute(std::string_view method, std::string_view path);

// ---- Client key policy ----

// Whether a key whose allowed-model patterns are `patterns` (`*`, `?`, case-insensitive;
// none = every model) may call `model`, as the client wrote it.
template <typename Patterns>
bool ModelAllowed(const Patterns& patterns, std::string_view model) {
  if (patterns.empty()) return true;
  for (const auto& pattern : patterns) {
    if (GlobMatch(pattern, model)) return true;
  }
  return false;
}

// How long the edge may cache a provider credential: until 60 s before `expires_at_ms`
// when set (zero or less: do not cache), else `default_ttl`.
std::chrono::milliseconds CredentialCacheTtl(int64_t expires_at_ms, int64_t now_ms,
                                             std::chrono::milliseconds default_ttl);

// ---- Client IP access control ----

// An IPv4 address (also the IPv4 inside an IPv4-mapped IPv6 address) or an IPv6 address.
struct IpAddress {
  bool v4 = false;
  std::array<uint8_t, 16> bytes{};  // IPv4: the first 4
};

// "192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1" (an IPv4 address); a "%zone" suffix and
// surrounding brackets are ignored. nullopt when `text` is not an address.
std::optional<IpAddress> ParseIpAddress(std::string_view text);

// A CIDR block; a plain address is a /32 (IPv4) or /128 (IPv6) block.
struct IpNetwork {
  IpAddress base;  // host bits cleared
  int prefix = 0;
  bool Contains(const IpAddress& ip) const;
};

// "10.0.0.0/8", "2001:db8::/32", "192.0.2.7". An IPv4-mapped IPv6 block of /96 or longer
// is the IPv4 block it maps. nullopt for anything else.
std::optional<IpNetwork> ParseIpNetwork(std::string_view text);

// The client IP rules of the access settings, parsed once per settings version.
class IpAccessRules {
 public:
  // Entries that do not parse are left out and listed in `invalid` (when not null).
  static IpAccessRules Parse(const std::vector<std::string>& allowlist,
                             const std::vector<std::string>& denylist,
                             std::vector<std::string>* invalid);

  // Not in the denylist, and in the allowlist unless that is empty. An unknown address
  // (nullopt) passes only when there is no allowlist.
  bool Allowed(const std::optional<IpAddress>& ip) const;
  bool empty() const { return allow_.empty() && deny_.empty(); }

 private:
  std::vector<IpNetwork> allow_;
  std::vector<IpNetwork> deny_;
};

}  // namespace omniroute::edge
