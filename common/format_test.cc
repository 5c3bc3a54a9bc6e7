#include "common/format.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>

namespace omniroute {
namespace {

namespace json = boost::json;

TEST(FormatTest, OpenAiErrorShape) {
  HttpError e = MakeHttpError(common::v1::FORMAT_OPENAI_CHAT, 404, "no such model",
                              "model_not_found");
  EXPECT_EQ(e.status, 404);
  json::value v = json::parse(e.body);
  EXPECT_EQ(v.at("error").at("message").as_string(), "no such model");
  EXPECT_EQ(v.at("error").at("type").as_string(), "invalid_request_error");
  EXPECT_EQ(v.at("error").at("code").as_string(), "model_not_found");
  EXPECT_TRUE(v.at("error").at("param").is_null());
  v = json::parse(MakeHttpError(common::v1::FORMAT_OPENAI_CHAT, 500, "x").body);
  EXPECT_TRUE(v.at("error").at("code").is_null());
  EXPECT_EQ(v.at("error").at("type").as_string(), "server_error");
}

TEST(FormatTest, AnthropicAndGoogleErrorShapes) {
  json::value a = json::parse(MakeHttpError(common::v1::FORMAT_ANTHROPIC, 429, "slow down").body);
  EXPECT_EQ(a.at("type").as_string(), "error");
  EXPECT_EQ(a.at("error").at("type").as_string(), "rate_limit_error");
  EXPECT_EQ(a.at("error").at("message").as_string(), "slow down");
  json::value g = json::parse(MakeHttpError(common::v1::FORMAT_GEMINI, 400, "bad").body);
  EXPECT_EQ(g.at("error").at("code").as_int64(), 400);
  EXPECT_EQ(g.at("error").at("status").as_string(), "INVALID_ARGUMENT");
}

TEST(FormatTest, StatusMapping) {
  EXPECT_EQ(HttpStatusFromStatus(absl::NotFoundError("x")), 404);
  EXPECT_EQ(HttpStatusFromStatus(absl::InvalidArgumentError("x")), 400);
  EXPECT_EQ(HttpStatusFromStatus(absl::UnavailableError("x")), 503);
  EXPECT_EQ(HttpStatusFromStatus(absl::UnimplementedError("x")), 501);
}

TEST(FormatTest, UpstreamPaths) {
  EXPECT_EQ(UpstreamPath(common::v1::FORMAT_OPENAI_CHAT, "m", true), "/chat/completions");
  EXPECT_EQ(UpstreamPath(common::v1::FORMAT_ANTHROPIC, "m", false), "/messages");
  EXPECT_EQ(UpstreamPath(common::v1::FORMAT_GEMINI, "gemini-2.5-pro", true),
            "/models/gemini-2.5-pro:streamGenerateContent?alt=sse");
  EXPECT_EQ(UpstreamPath(common::v1::FORMAT_OPENAI_RESPONSES, "m", false), "/responses");
}

}  // namespace
}  // namespace omniroute
