// Feeds arbitrary bytes, split at arbitrary points, to the SSE parser: the events must not
// depend on how the bytes were split, and nothing may crash or grow without bound.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "common/sse.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const size_t step = 1 + data[0] % 64;
  std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  auto collect = [](std::string_view input, size_t piece) {
    omniroute::SseParser parser(1 << 16);
    std::vector<std::string> events;
    auto on = [&](const omniroute::SseEvent& e) {
      events.push_back(std::string(e.event) + '\0' + std::string(e.data));
    };
    for (size_t i = 0; i < input.size(); i += piece) {
      if (!parser.Feed(input.substr(i, piece), on).ok()) return std::vector<std::string>{"<too large>"};
    }
    parser.Finish(on);
    return events;
  };
  if (collect(text, step) != collect(text, text.size() + 1)) std::abort();
  return 0;
}
