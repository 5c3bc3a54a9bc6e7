#include "router_metrics.h"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <map>

namespace omniroute::router {

std::string RouterHealthMetricsText(const v1::HealthResponse& health) {
  // Rebuilt from each Health answer: every value is the router's current one.
  prometheus::Registry registry;
  auto& breaker = prometheus::BuildGauge()
                      .Name("omniroute_breaker_state")
                      .Help("Provider circuit breaker: 0 closed, 1 half-open, 2 open")
                      .Register(registry);
  for (const auto& p : health.providers()) {
    const double state = p.state() == "open" ? 2 : p.state() == "half_open" ? 1 : 0;
    breaker.Add({{"provider", p.provider()}}).Set(state);
  }
  prometheus::BuildGauge()
      .Name("omniroute_router_state_store_up")
      .Help(
          "1 while the router's shared state store (Redis) answers; 0 while "
          "it routes on "
          "process-local state")
      .Register(registry)
      .Add({{"store", health.store()}})
      .Set(health.store_healthy() ? 1 : 0);

  std::map<std::string, int> cooldowns;
  for (const auto& c : health.cooldowns()) ++cooldowns[c.provider()];
  auto& cooldown_family = prometheus::BuildGauge()
                              .Name("omniroute_router_cooldowns")
                              .Help("Connections in cooldown now, by provider")
                              .Register(registry);
  for (const auto& [provider, n] : cooldowns) {
    cooldown_family.Add({{"provider", provider}}).Set(n);
  }
  std::map<std::string, int> lockouts;
  for (const auto& l : health.lockouts()) ++lockouts[l.provider()];
  auto& lockout_family = prometheus::BuildGauge()
                             .Name("omniroute_router_lockouts")
                             .Help("Connection and model pairs locked out now, by provider")
                             .Register(registry);
  for (const auto& [provider, n] : lockouts) {
    lockout_family.Add({{"provider", provider}}).Set(n);
  }

  auto& events = prometheus::BuildCounter()
                     .Name("omniroute_router_events_total")
                     .Help(
                         "Routing events across replicas (cooldowns_started, "
                         "lockouts_started, breaker_opened, breaker_closed, ...)")
                     .Register(registry);
  auto& store_errors = prometheus::BuildCounter()
                           .Name("omniroute_router_store_errors_total")
                           .Help("Failed state store (Redis) operations of this router replica")
                           .Register(registry)
                           .Add({});
  for (const auto& [name, value] : health.counters()) {
    if (value <= 0) continue;
    if (name == "store_errors") {
      store_errors.Increment(static_cast<double>(value));
    } else {
      events.Add({{"event", name}}).Increment(static_cast<double>(value));
    }
  }
  return prometheus::TextSerializer().Serialize(registry.Collect());
}

}  // namespace omniroute::router
