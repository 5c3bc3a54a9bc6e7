#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "common/metric_cache.h"
#include "omniroute/router/v1/router.pb.h"

namespace prometheus {
class Registry;
class Gauge;
template <typename T>
class Family;
class Counter;
class Histogram;
}  // namespace prometheus

namespace omniroute::edge {

// The edge's Prometheus metrics. Thread-safe.
class Metrics {
 public:
  Metrics();
  ~Metrics();

  // One finished client request.
  void Request(std::string_view route, int status, std::string_view provider, double seconds);
  // One upstream attempt.
  void Upstream(std::string_view provider, int status, double seconds);
  void Tokens(std::string_view provider, std::string_view type, int64_t n);
  void Fallback(std::string_view provider);
  void InFlight(int delta);
  // How many candidates one client request tried (0: none was usable).
  void CandidatesTried(int n);
  // A wait for a cooldown before planning a request again.
  void CooldownWait();
  // One config reload attempt: result "ok" or "error".
  void ConfigReload(std::string_view result);
  // A request answered 503 without an upstream call, by why (`provider_circuit_open`, ...).
  void Unavailable(std::string_view code);
  // The router's view: breaker state per provider, state store reachability, shared event
  // counters (cooldowns started, breaker openings, ...), the router's store errors.
  void RouterHealth(const router::v1::HealthResponse& health);

  // One answered LLM call, in the OpenTelemetry GenAI semantic conventions
  // (gen_ai_client_token_usage, gen_ai_client_operation_duration_seconds,
  // gen_ai_server_time_to_first_token_seconds, gen_ai_server_time_per_output_token_seconds),
  // and the time the gateway itself added (omniroute_overhead_seconds).
  void GenAi(std::string_view provider, std::string_view operation, double seconds,
             double ttft_seconds, int64_t input_tokens, int64_t output_tokens,
             double overhead_seconds);

  // Prometheus text exposition of every metric.
  std::string Serialize() const;

 private:
  // The request path's children: no label maps, no family locks once a label set was seen.
  MetricCache cache_;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Family<prometheus::Histogram>* duration_;
  prometheus::Family<prometheus::Counter>* upstream_requests_;
  prometheus::Family<prometheus::Histogram>* upstream_duration_;
  prometheus::Family<prometheus::Counter>* tokens_;
  prometheus::Family<prometheus::Counter>* fallbacks_;
  prometheus::Gauge* in_flight_;
  prometheus::Family<prometheus::Histogram>* candidates_tried_;
  prometheus::Family<prometheus::Counter>* cooldown_waits_;
  prometheus::Family<prometheus::Counter>* config_reloads_;
  prometheus::Family<prometheus::Counter>* unavailable_;
  prometheus::Family<prometheus::Gauge>* breaker_state_;
  prometheus::Family<prometheus::Gauge>* store_up_;
  prometheus::Family<prometheus::Counter>* router_events_;
  prometheus::Family<prometheus::Counter>* router_store_errors_;
  prometheus::Family<prometheus::Histogram>* genai_tokens_;
  prometheus::Family<prometheus::Histogram>* genai_duration_;
  prometheus::Family<prometheus::Histogram>* genai_ttft_;
  prometheus::Family<prometheus::Histogram>* genai_tpot_;
  prometheus::Family<prometheus::Histogram>* overhead_;
  std::mutex router_mu_;
  std::map<std::string, int64_t> router_seen_;  // last counter values, to add differences
};

}  // namespace omniroute::edge
