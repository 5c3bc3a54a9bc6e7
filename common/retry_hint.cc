#include "common/retry_hint.h"

#include <ctime>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "common/strings.h"

namespace omniroute {

int64_t RetryHintMs(std::string_view retry_after, std::string_view ratelimit_reset,
                    int64_t now_ms) {
  retry_after = SV(absl::StripAsciiWhitespace(AV(retry_after)));
  if (!retry_after.empty()) {
    double secs = 0;
    if (absl::SimpleAtod(AV(retry_after), &secs)) {
      return secs > 0 ? static_cast<int64_t>(secs * 1000) : 0;
    }
    // HTTP date, e.g. "Wed, 21 Oct 2015 07:28:00 GMT".
    std::tm tm{};
    const std::string s(retry_after);
    if (strptime(s.c_str(), "%a, %d %b %Y %H:%M:%S", &tm)) {
      const int64_t at = static_cast<int64_t>(timegm(&tm)) * 1000;
      return at > now_ms ? at - now_ms : 0;
    }
  }
  ratelimit_reset = SV(absl::StripAsciiWhitespace(AV(ratelimit_reset)));
  if (!ratelimit_reset.empty()) {
    double v = 0;
    if (absl::SimpleAtod(AV(ratelimit_reset), &v) && v > 0) {
      const int64_t at = v > 1e10 ? static_cast<int64_t>(v) : static_cast<int64_t>(v * 1000);
      return at > now_ms ? at - now_ms : 0;
    }
  }
  return 0;
}

}  // namespace omniroute
