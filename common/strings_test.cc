#include "common/strings.h"

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

}  // namespace
}  // namespace omniroute
