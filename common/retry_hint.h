#pragma once

#include <cstdint>
#include <string_view>

#include "absl/functional/function_ref.h"

namespace omniroute {

// Milliseconds an upstream asks us to wait: Retry-After (seconds or HTTP date) or
// X-RateLimit-Reset (epoch seconds, or ms when > 1e10). 0 when there is no usable hint.
int64_t RetryHintMs(std::string_view retry_after, std::string_view ratelimit_reset, int64_t now_ms);

// A response header by (lower-case) name; empty when absent.
using HeaderLookup = absl::FunctionRef<std::string_view(std::string_view name)>;

// Milliseconds an upstream asks us to wait, from the first hint present, each read in its
// own form: Retry-After (seconds or HTTP date); X-RateLimit-Reset (epoch seconds, or ms
// when > 1e10); OpenAI x-ratelimit-reset-requests / -tokens (durations such as "6m0s",
// "1s", "250ms"); Anthropic anthropic-ratelimit-{requests,tokens,input-tokens,
// output-tokens}-reset (RFC 3339 times); Gemini's RetryInfo.retryDelay in the error body
// ("30s"). Of a pair of reset headers, the ones whose budget is spent (remaining 0) count,
// else the longest. 0 when there is no usable hint.
int64_t RetryHintMs(HeaderLookup header, std::string_view body, int64_t now_ms);

// Rate-limit state announced in response headers; -1 = not announced.
struct RateLimitHeaders {
  int64_t remaining_requests = -1;
  int64_t limit_requests = -1;
  int64_t remaining_tokens = -1;
  int64_t limit_tokens = -1;
  int64_t reset_requests_ms = -1;  // from now
  int64_t reset_tokens_ms = -1;
  bool present() const {
    return remaining_requests >= 0 || limit_requests >= 0 || remaining_tokens >= 0 ||
           limit_tokens >= 0;
  }
};

// OpenAI's x-ratelimit-{limit,remaining,reset}-{requests,tokens}, Anthropic's
// anthropic-ratelimit-{requests,tokens}-{limit,remaining,reset}, and the generic
// x-ratelimit-{limit,remaining,reset} (counted as requests).
RateLimitHeaders ReadRateLimitHeaders(HeaderLookup header, int64_t now_ms);

// A 4xx that concerns the model rather than the request's form, so another model may accept
// the same request: a 400 for an exceeded context length or a parameter the model does not
// support, read from the provider's error body.
bool IsModelSpecificError(int status, std::string_view body);

// A failure that concerns one model on one connection (a lockout, not a connection
// cooldown): 404 (model not found), or a 429 whose body names a per-model limit or quota.
bool IsModelScopedFailure(int status, std::string_view body);

// A Go-style duration ("1h2m3.5s", "250ms", "6m0s") or plain seconds ("30"); -1 when
// malformed.
int64_t ParseDurationMs(std::string_view text);

// An RFC 3339 time ("2024-05-01T12:00:30Z", "...30.250+02:00") in ms since the epoch; -1 when
// malformed.
int64_t ParseRfc3339Ms(std::string_view text);

}  // namespace omniroute
