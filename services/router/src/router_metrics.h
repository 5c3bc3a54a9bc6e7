#pragma once

#include <string>

#include "omniroute/router/v1/router.pb.h"

namespace omniroute::router {

// The router's health as Prometheus text: omniroute_breaker_state{provider} (0 closed, 1 half-open,
// 2 open), omniroute_router_state_store_up{store}, active cooldowns and lockouts per provider, the
// shared event counters as omniroute_router_events_total{event} and this replica's
// omniroute_router_store_errors_total.
std::string RouterHealthMetricsText(const v1::HealthResponse& health);

}  // namespace omniroute::router
