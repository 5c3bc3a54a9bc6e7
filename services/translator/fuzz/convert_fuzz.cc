// Feeds arbitrary bytes to the converters. The first byte picks the operation (request,
// response or stream) and the two formats, the second the size of stream pieces. Nothing
// may crash, every JSON produced must parse, and a stream's output must not depend on how
// its input was split.
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "convert.h"
#include "json_util.h"

namespace {

using omniroute::Format;
namespace t = omniroute::translator;

constexpr Format kFormats[] = {
    omniroute::common::v1::FORMAT_OPENAI_CHAT, omniroute::common::v1::FORMAT_OPENAI_RESPONSES,
    omniroute::common::v1::FORMAT_ANTHROPIC, omniroute::common::v1::FORMAT_GEMINI};

void MustBeJson(std::string_view text) {
  if (!t::ParseValue(text).has_value()) std::abort();
}

std::string Stream(Format from, Format to, std::string_view input, size_t piece) {
  t::StreamOptions options;
  options.created = 1700000000;
  auto c = t::StreamConverter::Make(from, to, "model", options);
  std::string out;
  for (size_t i = 0; i < input.size(); i += piece) {
    if (!c->Feed(input.substr(i, piece), &out).ok()) return "<failed>";
  }
  if (!c->Finish(&out).ok()) return "<failed>";
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const int op = data[0] % 3;
  const Format from = kFormats[(data[0] / 3) % 4];
  const Format to = kFormats[(data[0] / 12) % 4];
  if (from == to) return 0;
  const size_t piece = 1 + data[1] % 64;
  const std::string_view body(reinterpret_cast<const char*>(data + 2), size - 2);
  if (op == 0) {
    auto out = t::ConvertRequest(from, to, body, "model", (data[1] & 1) != 0);
    if (out.ok()) MustBeJson(*out);
  } else if (op == 1) {
    auto out = t::ConvertResponse(from, to, body, "model");
    if (out.ok()) MustBeJson(*out);
  } else {
    const std::string whole = Stream(from, to, body, body.size() + 1);
    if (Stream(from, to, body, piece) != whole) std::abort();
    size_t pos = 0;
    while (pos < whole.size()) {
      size_t end = whole.find('\n', pos);
      if (end == std::string::npos) end = whole.size();
      std::string_view line(whole.data() + pos, end - pos);
      if (line.substr(0, 6) == "data: " && line != "data: [DONE]") MustBeJson(line.substr(6));
      pos = end + 1;
    }
  }
  return 0;
}
