#pragma once

#include <functional>
#include <memory>

#include "common/config.h"
#include "router.h"
#include "state_store.h"

namespace omniroute::router {

// Milliseconds since the Unix epoch; injectable for tests.
using Clock = std::function<int64_t()>;
int64_t SystemNowMs();

// The routing logic over a StateStore: model resolution, candidate order, cooldowns.
RouterPtr MakeLocalRouter(ConfigPtr config, std::shared_ptr<const ProviderRegistry> registry,
                          StateStorePtr state, Clock clock = SystemNowMs);

// Parses a retry hint from an upstream answer: Retry-After (seconds or HTTP date) or
// X-RateLimit-Reset (epoch seconds, or ms when > 1e10). 0 when none.
int64_t RetryHintMs(std::string_view retry_after, std::string_view ratelimit_reset, int64_t now_ms);

}  // namespace omniroute::router
