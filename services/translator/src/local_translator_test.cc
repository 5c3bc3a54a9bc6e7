#include "local_translator.h"

#include <gtest/gtest.h>

namespace omniroute::translator {
namespace {

TEST(LocalTranslatorTest, SameFormatPassesBytesThrough) {
  auto t = MakeLocalTranslator();
  v1::TranslateRequestIn in;
  in.set_from(common::v1::FORMAT_ANTHROPIC);
  in.set_to(common::v1::FORMAT_ANTHROPIC);
  in.set_body(R"({"model":"x","unknown_field":{"kept":true}})");
  in.set_upstream_model("x");
  absl::StatusOr<v1::TranslateRequestOut> out = absl::UnknownError("");
  t->TranslateRequest(in, [&](auto r) { out = std::move(r); });
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(out->body(), in.body());
  EXPECT_EQ(out->path(), "/messages");

  auto stream = t->OpenStream(common::v1::FORMAT_OPENAI_CHAT, common::v1::FORMAT_OPENAI_CHAT, "m");
  ASSERT_NE(stream, nullptr);
  std::string got;
  stream->Push("data: {}\n\n", false, [&](absl::StatusOr<std::string> s) { got = *s; });
  EXPECT_EQ(got, "data: {}\n\n");
}

TEST(LocalTranslatorTest, DifferentFormatsAreConverted) {
  auto t = MakeLocalTranslator();
  v1::TranslateRequestIn in;
  in.set_from(common::v1::FORMAT_OPENAI_CHAT);
  in.set_to(common::v1::FORMAT_GEMINI);
  in.set_body(R"({"model":"gpt","messages":[{"role":"user","content":"hi"}]})");
  in.set_upstream_model("gemini-2.5-pro");
  in.set_stream(true);
  absl::StatusOr<v1::TranslateRequestOut> out = absl::UnknownError("");
  t->TranslateRequest(in, [&](auto r) { out = std::move(r); });
  ASSERT_TRUE(out.ok()) << out.status();
  EXPECT_EQ(out->body(), R"({"contents":[{"role":"user","parts":[{"text":"hi"}]}]})");
  EXPECT_EQ(out->path(), "/models/gemini-2.5-pro:streamGenerateContent?alt=sse");

  in.set_body("{not json");
  t->TranslateRequest(in, [&](auto r) { out = std::move(r); });
  EXPECT_EQ(out.status().code(), absl::StatusCode::kInvalidArgument);

  v1::TranslateResponseIn rin;
  rin.set_from(common::v1::FORMAT_ANTHROPIC);
  rin.set_to(common::v1::FORMAT_OPENAI_CHAT);
  rin.set_model("alias");
  rin.set_body(R"({"id":"msg_1","content":[{"type":"text","text":"yo"}],"stop_reason":"end_turn",)"
               R"("usage":{"input_tokens":2,"output_tokens":1}})");
  absl::StatusOr<v1::TranslateResponseOut> rout = absl::UnknownError("");
  t->TranslateResponse(rin, [&](auto r) { rout = std::move(r); });
  ASSERT_TRUE(rout.ok()) << rout.status();
  EXPECT_NE(rout->body().find(R"("content":"yo")"), std::string::npos) << rout->body();
  EXPECT_NE(rout->body().find(R"("model":"alias")"), std::string::npos);

  auto stream = t->OpenStream(common::v1::FORMAT_GEMINI, common::v1::FORMAT_ANTHROPIC, "alias");
  ASSERT_NE(stream, nullptr);
  std::string got;
  stream->Push("data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hi\"}]}}]}\n\n", true,
               [&](absl::StatusOr<std::string> s) { got = *s; });
  EXPECT_EQ(got.rfind("event: message_start\n", 0), 0u) << got;
  EXPECT_NE(got.find(R"("text_delta","text":"Hi")"), std::string::npos) << got;
  EXPECT_NE(got.find("event: message_stop"), std::string::npos) << got;

  EXPECT_EQ(t->OpenStream(common::v1::FORMAT_UNSPECIFIED, common::v1::FORMAT_GEMINI, "m"), nullptr);
  in.set_from(common::v1::FORMAT_UNSPECIFIED);
  in.set_body("{}");
  t->TranslateRequest(in, [&](auto r) { out = std::move(r); });
  EXPECT_EQ(out.status().code(), absl::StatusCode::kUnimplemented);
}

}  // namespace
}  // namespace omniroute::translator
