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

}  // namespace omniroute::router
