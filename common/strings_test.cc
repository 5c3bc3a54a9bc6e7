#include "common/strings.h"

#include "common/log.h"

#include <gtest/gtest.h>

namespace omniroute {
namespace {

TEST(StringsTest, PercentDecode) {
  EXPECT_EQ(PercentDecode("a%2Fb%20c+d", true), "a/b c d");
  EXPECT_EQ(PercentDecode("a%2fb+c", false), "a/b+c");
  EXPECT_EQ(PercentDecode("100%", true), "100%");    // malformed escapes stay
  EXPECT_EQ(PercentDecode("%zz%4", true), "%zz%4");
  EXPECT_EQ(PercentDecode("%41", false), "A");
}

TEST(StringsTest, ParseQueryString) {
  auto q = ParseQueryString("a=1&&b=x%20y&a=2&flag&c=");
  EXPECT_EQ(q.size(), 4u);
  EXPECT_EQ(q["a"], "1");  // the first occurrence wins
  EXPECT_EQ(q["b"], "x y");
  EXPECT_EQ(q["flag"], "");
  EXPECT_EQ(q["c"], "");
  EXPECT_TRUE(ParseQueryString("").empty());
}

TEST(StringsTest, AppendJsonEscaped) {
  std::string out = "x";
  AppendJsonEscaped(out, "plain text, \"quoted\" \\ back\nline\r\t\x01\x1f\x7f é");
  EXPECT_EQ(out, "xplain text, \\\"quoted\\\" \\\\ back\\nline\\r\\t\\u0001\\u001f\x7f é");
  out.clear();
  AppendJsonEscaped(out, std::string_view("a\0b", 3));
  EXPECT_EQ(out, "a\\u0000b");
  out.clear();
  AppendJsonEscaped(out, "");
  EXPECT_EQ(out, "");
  AppendJsonEscaped(out, "\"");
  EXPECT_EQ(out, "\\\"");
}

}  // namespace
}  // namespace omniroute
