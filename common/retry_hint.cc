#include "common/retry_hint.h"

#include <algorithm>
#include <cctype>
#include <ctime>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "common/strings.h"

namespace omniroute {
namespace {

std::string_view Trim(std::string_view s) { return SV(absl::StripAsciiWhitespace(AV(s))); }

int64_t ParseInt(std::string_view s) {
  s = Trim(s);
  int64_t v = 0;
  if (s.empty() || !absl::SimpleAtoi(AV(s), &v) || v < 0) return -1;
  return v;
}

// The longest of the reset times whose budget is spent; when none says so, the longest.
int64_t PairHint(int64_t remaining_a, int64_t reset_a, int64_t remaining_b, int64_t reset_b) {
  int64_t spent = 0;
  if (remaining_a == 0 && reset_a > 0) spent = std::max(spent, reset_a);
  if (remaining_b == 0 && reset_b > 0) spent = std::max(spent, reset_b);
  if (spent > 0) return spent;
  return std::max<int64_t>({reset_a, reset_b, 0});
}

int64_t ResetIn(std::string_view rfc3339, int64_t now_ms) {
  const int64_t at = ParseRfc3339Ms(Trim(rfc3339));
  if (at < 0) return -1;
  return std::max<int64_t>(at - now_ms, 0);
}

// Gemini: {"error": {..., "details": [{"@type": ".../google.rpc.RetryInfo", "retryDelay": "30s"}]}}
int64_t GeminiRetryDelay(std::string_view body) {
  const size_t key = body.find("\"retryDelay\"");
  if (key == std::string_view::npos) return 0;
  size_t i = body.find(':', key + 12);
  if (i == std::string_view::npos) return 0;
  i = body.find('"', i);
  if (i == std::string_view::npos) return 0;
  const size_t end = body.find('"', i + 1);
  if (end == std::string_view::npos) return 0;
  const int64_t ms = ParseDurationMs(body.substr(i + 1, end - i - 1));
  return std::max<int64_t>(ms, 0);
}

bool ContainsLower(const std::string& haystack, std::string_view needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace

int64_t RetryHintMs(std::string_view retry_after, std::string_view ratelimit_reset,
                    int64_t now_ms) {
  retry_after = Trim(retry_after);
  if (!retry_after.empty()) {
    double secs = 0;
    if (absl::SimpleAtod(AV(retry_after), &secs)) {
      return secs > 0 ? static_cast<int64_t>(secs * 1000) : 0;
    }
    // HTTP date, e.g. "Wed, 21 Oct 2015 07:28:00 GMT".
    std::tm tm{};
    const std::string s(retry_after);
    if (strptime(s.c_str(), "%a, %d %b %Y %H:%M:%S", &tm)) {
      const int64_t at = static_cast<int64_t>(timegm(&tm)) * 1000;
      return at > now_ms ? at - now_ms : 0;
    }
  }
  ratelimit_reset = Trim(ratelimit_reset);
  if (!ratelimit_reset.empty()) {
    double v = 0;
    if (absl::SimpleAtod(AV(ratelimit_reset), &v) && v > 0) {
      const int64_t at = v > 1e10 ? static_cast<int64_t>(v) : static_cast<int64_t>(v * 1000);
      return at > now_ms ? at - now_ms : 0;
    }
  }
  return 0;
}

int64_t RetryHintMs(HeaderLookup header, std::string_view body, int64_t now_ms) {
  if (int64_t ms = RetryHintMs(header("retry-after"), header("x-ratelimit-reset"), now_ms);
      ms > 0) {
    return ms;
  }
  const RateLimitHeaders rl = ReadRateLimitHeaders(header, now_ms);
  if (int64_t ms = PairHint(rl.remaining_requests, rl.reset_requests_ms, rl.remaining_tokens,
                            rl.reset_tokens_ms);
      ms > 0) {
    return ms;
  }
  // Anthropic's input/output token budgets have their own resets.
  int64_t anthropic = 0;
  for (std::string_view kind : {"input-tokens", "output-tokens"}) {
    const std::string prefix = std::string("anthropic-ratelimit-") + std::string(kind);
    const int64_t remaining = ParseInt(header(prefix + "-remaining"));
    const int64_t reset = ResetIn(header(prefix + "-reset"), now_ms);
    if (reset > 0 && remaining == 0) anthropic = std::max(anthropic, reset);
  }
  if (anthropic > 0) return anthropic;
  return GeminiRetryDelay(body);
}

RateLimitHeaders ReadRateLimitHeaders(HeaderLookup header, int64_t now_ms) {
  RateLimitHeaders rl;
  // OpenAI (and the many OpenAI-compatible providers).
  rl.remaining_requests = ParseInt(header("x-ratelimit-remaining-requests"));
  rl.limit_requests = ParseInt(header("x-ratelimit-limit-requests"));
  rl.remaining_tokens = ParseInt(header("x-ratelimit-remaining-tokens"));
  rl.limit_tokens = ParseInt(header("x-ratelimit-limit-tokens"));
  if (std::string_view v = Trim(header("x-ratelimit-reset-requests")); !v.empty()) {
    rl.reset_requests_ms = ParseDurationMs(v);
  }
  if (std::string_view v = Trim(header("x-ratelimit-reset-tokens")); !v.empty()) {
    rl.reset_tokens_ms = ParseDurationMs(v);
  }
  // Anthropic.
  if (rl.remaining_requests < 0 && !header("anthropic-ratelimit-requests-remaining").empty()) {
    rl.remaining_requests = ParseInt(header("anthropic-ratelimit-requests-remaining"));
    rl.limit_requests = ParseInt(header("anthropic-ratelimit-requests-limit"));
    rl.reset_requests_ms = ResetIn(header("anthropic-ratelimit-requests-reset"), now_ms);
  }
  if (rl.remaining_tokens < 0 && !header("anthropic-ratelimit-tokens-remaining").empty()) {
    rl.remaining_tokens = ParseInt(header("anthropic-ratelimit-tokens-remaining"));
    rl.limit_tokens = ParseInt(header("anthropic-ratelimit-tokens-limit"));
    rl.reset_tokens_ms = ResetIn(header("anthropic-ratelimit-tokens-reset"), now_ms);
  }
  // Generic: a single budget, counted as requests, reset at an epoch time.
  if (rl.remaining_requests < 0 && !header("x-ratelimit-remaining").empty()) {
    rl.remaining_requests = ParseInt(header("x-ratelimit-remaining"));
    rl.limit_requests = ParseInt(header("x-ratelimit-limit"));
    if (rl.remaining_requests >= 0) {
      const int64_t ms = RetryHintMs({}, header("x-ratelimit-reset"), now_ms);
      rl.reset_requests_ms = ms > 0 ? ms : -1;
    }
  }
  return rl;
}

bool IsModelSpecificError(int status, std::string_view body) {
  if (status != 400 && status != 413 && status != 422) return false;
  const std::string b = absl::AsciiStrToLower(AV(body.substr(0, 64 * 1024)));
  for (std::string_view needle :
       {"context_length_exceeded", "context length", "context window", "maximum context",
        "prompt is too long", "too many tokens", "max_tokens_exceeded", "tokens exceed",
        "input is too long", "string_above_max_length", "unsupported_parameter",
        "unsupported parameter", "unsupported_value", "is not supported with this model",
        "not supported by this model", "does not support", "model_not_supported",
        "unsupported model", "model is not supported"}) {
    if (ContainsLower(b, needle)) return true;
  }
  return false;
}

bool IsModelScopedFailure(int status, std::string_view body) {
  if (status == 404) return true;
  if (status != 429) return false;
  const std::string b = absl::AsciiStrToLower(AV(body.substr(0, 64 * 1024)));
  for (std::string_view needle :
       {"for this model", "per model", "per-model", "model_rate_limit", "model rate limit",
        "model_capacity", "quota for model", "model: ", "\"model\":"}) {
    if (ContainsLower(b, needle)) return true;
  }
  return false;
}

int64_t ParseDurationMs(std::string_view text) {
  text = Trim(text);
  if (text.empty()) return -1;
  double plain = 0;
  if (absl::SimpleAtod(AV(text), &plain)) {
    return plain < 0 ? -1 : static_cast<int64_t>(plain * 1000);
  }
  double total = 0;
  size_t i = 0;
  while (i < text.size()) {
    const size_t start = i;
    while (i < text.size() &&
           (std::isdigit(static_cast<unsigned char>(text[i])) || text[i] == '.')) {
      ++i;
    }
    double n = 0;
    if (i == start || !absl::SimpleAtod(AV(text.substr(start, i - start)), &n)) return -1;
    const size_t unit_start = i;
    while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i]))) ++i;
    const std::string_view unit = text.substr(unit_start, i - unit_start);
    if (unit == "h") {
      total += n * 3600000;
    } else if (unit == "m") {
      total += n * 60000;
    } else if (unit == "s") {
      total += n * 1000;
    } else if (unit == "ms") {
      total += n;
    } else if (unit == "us") {
      total += n / 1000;
    } else if (unit == "ns") {
      total += n / 1e6;
    } else {
      return -1;
    }
  }
  return static_cast<int64_t>(total);
}

int64_t ParseRfc3339Ms(std::string_view text) {
  text = Trim(text);
  if (text.size() < 19) return -1;
  std::tm tm{};
  const std::string s(text);
  const char* rest = strptime(s.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  if (rest == nullptr) return -1;
  int64_t ms = static_cast<int64_t>(timegm(&tm)) * 1000;
  if (*rest == '.') {
    ++rest;
    int64_t frac = 0;
    int digits = 0;
    while (std::isdigit(static_cast<unsigned char>(*rest))) {
      if (digits < 3) {
        frac = frac * 10 + (*rest - '0');
        ++digits;
      }
      ++rest;
    }
    while (digits < 3) {
      frac *= 10;
      ++digits;
    }
    ms += frac;
  }
  if (*rest == 'Z' || *rest == 'z') return ms;
  if (*rest == '+' || *rest == '-') {
    const int sign = *rest == '+' ? 1 : -1;
    int hh = 0;
    int mm = 0;
    if (std::sscanf(rest + 1, "%2d:%2d", &hh, &mm) != 2) return -1;
    return ms - sign * (int64_t{hh} * 3600000 + int64_t{mm} * 60000);
  }
  return -1;
}

}  // namespace omniroute
