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

}  // namespace
}  // namespace omniroute::translator
