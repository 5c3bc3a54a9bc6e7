#pragma once

#include <cstdint>
#include <string_view>

namespace omniroute {

// Milliseconds an upstream asks us to wait: Retry-After (seconds or HTTP date) or
// X-RateLimit-Reset (epoch seconds, or ms when > 1e10). 0 when there is no usable hint.
int64_t RetryHintMs(std::string_view retry_after, std::string_view ratelimit_reset,
                    int64_t now_ms);

}  // namespace omniroute
