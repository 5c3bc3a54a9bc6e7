#include "common/retry_hint.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace omniroute
