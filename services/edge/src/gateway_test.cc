#include "gateway.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <set>

namespace omniroute::edge {
namespace {

TEST(GatewayTest, ParseChatRequest) {
  auto ok = ParseChatRequest(R"({"model":"local/m","stream":true,"x_unknown":[1,2]})");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->model, "local/m");
  EXPECT_TRUE(ok->stream);
  EXPECT_FALSE(ParseChatRequest(R"({"model":"m"})")->stream);  // absent = false
  EXPECT_EQ(ParseChatRequest("{nope").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseChatRequest("[]").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(ParseChatRequest(R"({"messages":[]})").status().message().find("model"),
            std::string::npos);
  EXPECT_FALSE(ParseChatRequest(R"({"model":3})").ok());
  EXPECT_FALSE(ParseChatRequest(R"({"model":"m","stream":"yes"})").ok());
}

TEST(GatewayTest, RewriteModelKeepsUnknownFields) {
  auto info = ParseChatRequest(R"({"model":"local/m","x_unknown":{"a":[1,2]},"n":2})");
  ASSERT_TRUE(info.ok());
  auto v = boost::json::parse(RewriteModel(*info, "m"));
  EXPECT_EQ(v.at("model").as_string(), "m");
  EXPECT_EQ(v.at("x_unknown").at("a").as_array().size(), 2u);
  EXPECT_EQ(v.at("n").as_int64(), 2);
}

TEST(GatewayTest, ExtractUsageOpenAi) {
  TokenUsage u;
  ASSERT_TRUE(ExtractUsage(common::v1::FORMAT_OPENAI_CHAT,
                           R"({"usage":{"prompt_tokens":25,"completion_tokens":7,
                               "prompt_tokens_details":{"cached_tokens":5},
                               "completion_tokens_details":{"reasoning_tokens":2}}})",
                           &u));
  EXPECT_TRUE(u.present);
  EXPECT_EQ(u.input, 25);  // the provider's numbers, unchanged
  EXPECT_EQ(u.output, 7);
  EXPECT_EQ(u.cached, 5);
  EXPECT_EQ(u.reasoning, 2);
  TokenUsage none;
  ASSERT_TRUE(ExtractUsage(common::v1::FORMAT_OPENAI_CHAT, R"({"choices":[]})", &none));
  EXPECT_FALSE(none.present);
  EXPECT_FALSE(ExtractUsage(common::v1::FORMAT_OPENAI_CHAT, "{", &none));
}

TEST(GatewayTest, ExtractUsageAnthropicCountsCacheOnce) {
  TokenUsage u;
  ExtractUsage(common::v1::FORMAT_ANTHROPIC,
               R"({"type":"message_start","message":{"usage":{"input_tokens":10,
                   "cache_read_input_tokens":100,"cache_creation_input_tokens":5,
                   "output_tokens":1}}})",
               &u);
  ExtractUsage(common::v1::FORMAT_ANTHROPIC,
               R"({"type":"message_delta","usage":{"output_tokens":42}})", &u);
  EXPECT_EQ(u.input, 115);
  EXPECT_EQ(u.cached, 100);
  EXPECT_EQ(u.cache_creation, 5);
  EXPECT_EQ(u.output, 42);
}

TEST(GatewayTest, MaxOutputTokensInEveryFormat) {
  EXPECT_EQ(MaxOutputTokens(*ParseChatRequest(R"({"model":"m","max_tokens":100})")), 100);
  EXPECT_EQ(MaxOutputTokens(*ParseChatRequest(R"({"model":"m","max_completion_tokens":7})")), 7);
  EXPECT_EQ(MaxOutputTokens(*ParseChatRequest(R"({"model":"m","max_output_tokens":9})")), 9);
  EXPECT_EQ(MaxOutputTokens(*ParseGeminiRequest(
                R"({"generationConfig":{"maxOutputTokens":11}})", "m", false)),
            11);
  EXPECT_EQ(MaxOutputTokens(*ParseChatRequest(R"({"model":"m"})")), 0);
}

TEST(GatewayTest, UpstreamErrorMessageInEveryShape) {
  EXPECT_EQ(UpstreamErrorMessage(R"({"error":{"message":"bad key","type":"x"}})"), "bad key");
  EXPECT_EQ(UpstreamErrorMessage(
                R"({"type":"error","error":{"type":"invalid_request_error","message":"max_tokens"}})"),
            "max_tokens");
  EXPECT_EQ(UpstreamErrorMessage(R"([{"error":{"code":400,"message":"g","status":"X"}}])"), "g");
  EXPECT_EQ(UpstreamErrorMessage("<html>"), "");
  EXPECT_EQ(UpstreamErrorMessage(R"({"error":"string"})"), "");
}

TEST(GatewayTest, LegacyCompletionsRideOnChat) {
  auto req = CompletionsRequestToChat(
      R"({"model":"m","prompt":["Say ","hi"],"max_tokens":5,"echo":false,"stream":true})");
  ASSERT_TRUE(req.ok()) << req.status();
  auto v = boost::json::parse(*req);
  EXPECT_EQ(v.at("messages").at(0).at("content").as_string(), "Say hi");
  EXPECT_EQ(v.at("messages").at(0).at("role").as_string(), "user");
  EXPECT_EQ(v.at("max_tokens").as_int64(), 5);
  EXPECT_TRUE(v.at("stream").as_bool());
  EXPECT_FALSE(v.as_object().contains("prompt"));
  EXPECT_FALSE(v.as_object().contains("echo"));
  EXPECT_FALSE(CompletionsRequestToChat(R"({"model":"m","prompt":[1,2]})").ok());
  EXPECT_FALSE(CompletionsRequestToChat("{").ok());

  auto res = boost::json::parse(ChatResponseToCompletions(
      R"({"id":"chatcmpl-abc","object":"chat.completion","created":7,"model":"m",
          "choices":[{"index":0,"message":{"role":"assistant","content":"hi!"},
          "finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}})"));
  EXPECT_EQ(res.at("id").as_string(), "cmpl-abc");
  EXPECT_EQ(res.at("object").as_string(), "text_completion");
  EXPECT_EQ(res.at("choices").at(0).at("text").as_string(), "hi!");
  EXPECT_EQ(res.at("choices").at(0).at("finish_reason").as_string(), "stop");
  EXPECT_EQ(res.at("usage").at("prompt_tokens").as_int64(), 3);

  auto chunk = boost::json::parse(ChatChunkToCompletions(
      R"({"id":"chatcmpl-abc","object":"chat.completion.chunk","created":7,"model":"m",
          "choices":[{"index":0,"delta":{"content":"h"},"finish_reason":null}]})"));
  EXPECT_EQ(chunk.at("choices").at(0).at("text").as_string(), "h");
  EXPECT_TRUE(chunk.at("choices").at(0).at("finish_reason").is_null());
  EXPECT_EQ(ChatChunkToCompletions(R"({"error":{"message":"x"}})"), R"({"error":{"message":"x"}})");
}

TEST(GatewayTest, PresentedKey) {
  EXPECT_EQ(PresentedKey("Bearer sk-1", "", "", ""), "sk-1");
  EXPECT_EQ(PresentedKey("bearer  sk-1 ", "", "", ""), "sk-1");
  EXPECT_EQ(PresentedKey("", "sk-2", "", ""), "sk-2");
  EXPECT_EQ(PresentedKey("", "", "g-3", ""), "g-3");
  EXPECT_EQ(PresentedKey("", "", "", "/v1beta/models?alt=sse&key=k4"), "k4");
  EXPECT_EQ(PresentedKey("Basic abc", "", "", "/x"), "");
}

TEST(GatewayTest, NormalizePath) {
  EXPECT_EQ(NormalizePath("/v1/chat/completions?x=1"), "/v1/chat/completions");
  EXPECT_EQ(NormalizePath("/v1/v1/chat/completions"), "/v1/chat/completions");
  EXPECT_EQ(NormalizePath("/chat/completions"), "/v1/chat/completions");
  EXPECT_EQ(NormalizePath("/models"), "/v1/models");
  EXPECT_EQ(NormalizePath("/v1/models/"), "/v1/models");
  EXPECT_EQ(NormalizePath("/healthz"), "/healthz");
}

TEST(GatewayTest, TraceparentKeepsTheTraceWithANewSpan) {
  const std::string in = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  const std::string out = ChildTraceparent(in);
  ASSERT_EQ(out.size(), 55u);
  EXPECT_EQ(out.substr(0, 36), in.substr(0, 36));
  EXPECT_NE(out.substr(36, 16), in.substr(36, 16));
  EXPECT_EQ(out.substr(52), "-01");
  for (std::string_view bad : {"", "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                               "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"}) {
    const std::string fresh = ChildTraceparent(bad);
    ASSERT_EQ(fresh.size(), 55u) << bad;
    EXPECT_EQ(fresh.substr(0, 3), "00-");
    EXPECT_NE(fresh.substr(3, 32), std::string(32, '0'));
    EXPECT_EQ(fresh.substr(52), "-01");
  }
}

TEST(GatewayTest, RequestIdsAreUnique) {
  std::set<std::string> ids;
  for (int i = 0; i < 10000; ++i) ids.insert(NewRequestId());
  EXPECT_EQ(ids.size(), 10000u);
  EXPECT_EQ(NewRequestId().size(), 28u);
}

}  // namespace
}  // namespace omniroute::edge
