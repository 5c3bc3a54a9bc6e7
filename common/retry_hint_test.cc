#include "common/retry_hint.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

namespace omniroute {
namespace {

TEST(RetryHintTest, Forms) {
  const int64_t now = 1'700'000'000'000;
  EXPECT_EQ(RetryHintMs("2", "", now), 2000);
  EXPECT_EQ(RetryHintMs("0.5", "", now), 500);
  EXPECT_EQ(RetryHintMs("", "1700000003", now), 3000);
  EXPECT_EQ(RetryHintMs("", "1700000004000", now), 4000);
  EXPECT_EQ(RetryHintMs("Tue, 14 Nov 2023 22:13:30 GMT", "", now), 10000);
  EXPECT_EQ(RetryHintMs("", "", now), 0);
  EXPECT_EQ(RetryHintMs("soon", "", now), 0);
}

class HeaderHintTest : public ::testing::Test {
 protected:
  int64_t Hint(std::string_view body = {}) {
    return RetryHintMs(
        [this](std::string_view n) -> std::string_view {
          auto it = headers_.find(std::string(n));
          return it == headers_.end() ? std::string_view() : std::string_view(it->second);
        },
        body, now_);
  }
  RateLimitHeaders Limits() {
    return ReadRateLimitHeaders(
        [this](std::string_view n) -> std::string_view {
          auto it = headers_.find(std::string(n));
          return it == headers_.end() ? std::string_view() : std::string_view(it->second);
        },
        now_);
  }
  std::map<std::string, std::string> headers_;
  int64_t now_ = 1'700'000'000'000;  // 2023-11-14T22:13:20Z
};

TEST_F(HeaderHintTest, EachProviderInItsOwnForm) {
  EXPECT_EQ(Hint(), 0);
  headers_ = {{"retry-after", "3"}};
  EXPECT_EQ(Hint(), 3000);
  headers_ = {{"x-ratelimit-reset", "1700000005"}};
  EXPECT_EQ(Hint(), 5000);
  // OpenAI durations: the spent budget's reset counts.
  headers_ = {{"x-ratelimit-remaining-requests", "0"},
              {"x-ratelimit-reset-requests", "1s"},
              {"x-ratelimit-remaining-tokens", "5000"},
              {"x-ratelimit-reset-tokens", "6m0s"}};
  EXPECT_EQ(Hint(), 1000);
  headers_["x-ratelimit-remaining-requests"] = "3";
  EXPECT_EQ(Hint(), 360000);  // neither spent: the longest
  headers_ = {{"x-ratelimit-reset-tokens", "250ms"}};
  EXPECT_EQ(Hint(), 250);
  // Anthropic RFC 3339 times.
  headers_ = {{"anthropic-ratelimit-requests-remaining", "0"},
              {"anthropic-ratelimit-requests-reset", "2023-11-14T22:13:50Z"}};
  EXPECT_EQ(Hint(), 30000);
  headers_ = {{"anthropic-ratelimit-output-tokens-remaining", "0"},
              {"anthropic-ratelimit-output-tokens-reset", "2023-11-14T23:13:21.500+01:00"}};
  EXPECT_EQ(Hint(), 1500);
  // Gemini's RetryInfo in the body.
  headers_.clear();
  EXPECT_EQ(Hint(R"({"error":{"code":429,"status":"RESOURCE_EXHAUSTED","details":[)"
                 R"({"@type":"type.googleapis.com/google.rpc.RetryInfo","retryDelay":"30s"}]}})"),
            30000);
  EXPECT_EQ(Hint(R"({"retryDelay": "1.5s"})"), 1500);
  // Retry-After wins over the rest.
  headers_ = {{"retry-after", "2"}, {"x-ratelimit-reset-requests", "9s"}};
  EXPECT_EQ(Hint(), 2000);
}

TEST_F(HeaderHintTest, RateLimitHeaders) {
  EXPECT_FALSE(Limits().present());
  headers_ = {{"x-ratelimit-limit-requests", "60"},
              {"x-ratelimit-remaining-requests", "0"},
              {"x-ratelimit-reset-requests", "20s"}};
  RateLimitHeaders rl = Limits();
  EXPECT_TRUE(rl.present());
  EXPECT_EQ(rl.limit_requests, 60);
  EXPECT_EQ(rl.remaining_requests, 0);
  EXPECT_EQ(rl.reset_requests_ms, 20000);
  EXPECT_EQ(rl.remaining_tokens, -1);
  headers_ = {{"anthropic-ratelimit-tokens-remaining", "10"},
              {"anthropic-ratelimit-tokens-limit", "1000"},
              {"anthropic-ratelimit-tokens-reset", "2023-11-14T22:14:20Z"}};
  rl = Limits();
  EXPECT_EQ(rl.remaining_tokens, 10);
  EXPECT_EQ(rl.reset_tokens_ms, 60000);
  headers_ = {{"x-ratelimit-remaining", "0"}, {"x-ratelimit-reset", "1700000002"}};
  rl = Limits();
  EXPECT_EQ(rl.remaining_requests, 0);
  EXPECT_EQ(rl.reset_requests_ms, 2000);
}

TEST(RetryHintParseTest, DurationsAndTimes) {
  EXPECT_EQ(ParseDurationMs("6m0s"), 360000);
  EXPECT_EQ(ParseDurationMs("1h2m3.5s"), 3723500);
  EXPECT_EQ(ParseDurationMs("250ms"), 250);
  EXPECT_EQ(ParseDurationMs("30"), 30000);
  EXPECT_EQ(ParseDurationMs("5 parsecs"), -1);
  EXPECT_EQ(ParseDurationMs(""), -1);
  EXPECT_EQ(ParseRfc3339Ms("1970-01-01T00:00:01Z"), 1000);
  EXPECT_EQ(ParseRfc3339Ms("1970-01-01T01:00:01.25+01:00"), 1250);
  EXPECT_EQ(ParseRfc3339Ms("yesterday"), -1);
}

TEST(RetryHintClassifyTest, ModelSpecificAndModelScoped) {
  EXPECT_TRUE(IsModelSpecificError(
      400,
      R"({"error":{"message":"This model's maximum context length is 8192 tokens","code":"context_length_exceeded"}})"));
  EXPECT_TRUE(IsModelSpecificError(
      400,
      R"({"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}})"));
  EXPECT_TRUE(IsModelSpecificError(
      400,
      R"({"error":{"message":"Unsupported parameter: 'temperature' is not supported with this model.","code":"unsupported_parameter"}})"));
  EXPECT_FALSE(IsModelSpecificError(
      400, R"({"error":{"message":"Invalid value for 'temperature'.","code":"invalid_value"}})"));
  EXPECT_FALSE(IsModelSpecificError(400, "We could not parse the JSON body of your request."));
  EXPECT_FALSE(IsModelSpecificError(500, "context length"));
  EXPECT_TRUE(IsModelScopedFailure(404, ""));
  EXPECT_TRUE(IsModelScopedFailure(
      429,
      R"({"error":{"message":"Rate limit for this model exceeded","code":"model_rate_limit"}})"));
  EXPECT_TRUE(
      IsModelScopedFailure(429,
                           "Quota exceeded for metric: generate_content_free_tier_requests, limit: "
                           "0, model: gemini-2.5-pro"));
  EXPECT_FALSE(IsModelScopedFailure(
      429, "Rate limit reached for gpt-4o in organization org-x on requests per min (RPM)"));
  EXPECT_FALSE(IsModelScopedFailure(503, "model overloaded"));
}

}  // namespace
}  // namespace omniroute
