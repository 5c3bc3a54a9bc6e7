#include "common/sse.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace omniroute {
namespace {

std::vector<std::pair<std::string, std::string>> ParseInPieces(std::string_view text,
                                                              size_t piece) {
  SseParser p;
  std::vector<std::pair<std::string, std::string>> out;
  auto on = [&](const SseEvent& e) { out.emplace_back(e.event, e.data); };
  for (size_t i = 0; i < text.size(); i += piece) {
    EXPECT_TRUE(p.Feed(text.substr(i, piece), on).ok());
  }
  p.Finish(on);
  return out;
}

TEST(SseParserTest, EventsSurviveAnySplit) {
  const std::string text =
      "event: message_start\ndata: {\"a\":1}\n\n: comment\r\ndata: x\r\ndata: y\r\n\r\n"
      "data: [DONE]\n\n";
  for (size_t piece = 1; piece <= text.size(); ++piece) {
    auto events = ParseInPieces(text, piece);
    ASSERT_EQ(events.size(), 3u) << "piece " << piece;
    EXPECT_EQ(events[0].first, "message_start");
    EXPECT_EQ(events[0].second, "{\"a\":1}");
    EXPECT_EQ(events[1].first, "");
    EXPECT_EQ(events[1].second, "x\ny");
    EXPECT_EQ(events[2].second, "[DONE]");
  }
}

TEST(SseParserTest, FinalEventWithoutBlankLine) {
  auto events = ParseInPieces("data: last", 3);
  ASSERT_EQ(events.size(), 1u);
  EXPECT_EQ(events[0].second, "last");
}

TEST(SseParserTest, OversizedEventFails) {
  SseParser p(16);
  auto status = p.Feed("data: 0123456789abcdefghij", [](const SseEvent&) {});
  EXPECT_FALSE(status.ok());
}

}  // namespace
}  // namespace omniroute
