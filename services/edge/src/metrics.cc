#include "metrics.h"

#include <algorithm>
#include <cstdio>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

namespace omniroute::edge {
namespace {

const prometheus::Histogram::BucketBoundaries& LatencyBuckets() {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
  return kBuckets;
}

}  // namespace

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {
  genai_tokens_ = &prometheus::BuildHistogram()
                       .Name("gen_ai_client_token_usage")
                       .Help("Tokens used per LLM call, by gen_ai_token_type (input, output)")
                       .Register(*registry_);
  genai_duration_ = &prometheus::BuildHistogram()
                         .Name("gen_ai_client_operation_duration_seconds")
                         .Help("Duration of LLM calls as the client sees them")
                         .Register(*registry_);
  genai_ttft_ = &prometheus::BuildHistogram()
                     .Name("gen_ai_server_time_to_first_token_seconds")
                     .Help("Time from the request to the first byte of the answer")
                     .Register(*registry_);
  genai_tpot_ = &prometheus::BuildHistogram()
                     .Name("gen_ai_server_time_per_output_token_seconds")
                     .Help("Time per output token after the first")
                     .Register(*registry_);
  overhead_ = &prometheus::BuildHistogram()
                   .Name("omniroute_overhead_seconds")
                   .Help("Time the gateway added to a request: its whole duration less the time "
                         "spent waiting for upstreams")
                   .Register(*registry_);
  requests_ = &prometheus::BuildCounter()
                   .Name("omniroute_requests_total")
                   .Help("Client requests by route, status and provider")
                   .Register(*registry_);
  duration_ = &prometheus::BuildHistogram()
                   .Name("omniroute_request_duration_seconds")
                   .Help("Client request duration (whole answer) by route")
                   .Register(*registry_);
  upstream_requests_ = &prometheus::BuildCounter()
                            .Name("omniroute_upstream_requests_total")
                            .Help("Upstream attempts by provider and status")
                            .Register(*registry_);
  upstream_duration_ = &prometheus::BuildHistogram()
                            .Name("omniroute_upstream_duration_seconds")
                            .Help("Upstream attempt duration by provider")
                            .Register(*registry_);
  tokens_ = &prometheus::BuildCounter()
                 .Name("omniroute_tokens_total")
                 .Help("Tokens reported by providers, by provider and type")
                 .Register(*registry_);
  fallbacks_ = &prometheus::BuildCounter()
                    .Name("omniroute_fallbacks_total")
                    .Help("Attempts moved to the next candidate, by failing provider")
                    .Register(*registry_);
  in_flight_ = &prometheus::BuildGauge()
                    .Name("omniroute_requests_in_flight")
                    .Help("Client requests being served")
                    .Register(*registry_)
                    .Add({});
  candidates_tried_ = &prometheus::BuildHistogram()
                           .Name("omniroute_candidates_tried")
                           .Help("Candidates (provider accounts) tried per client request")
                           .Register(*registry_);
  cooldown_waits_ = &prometheus::BuildCounter()
                         .Name("omniroute_cooldown_waits_total")
                         .Help("Waits for a cooldown before planning a request again")
                         .Register(*registry_);
  config_reloads_ = &prometheus::BuildCounter()
                         .Name("omniroute_config_reloads_total")
                         .Help("Config file reloads, by result (ok, error)")
                         .Register(*registry_);
  unavailable_ = &prometheus::BuildCounter()
                      .Name("omniroute_unavailable_total")
                      .Help("Requests answered 503 without an upstream call, by reason")
                      .Register(*registry_);
  breaker_state_ = &prometheus::BuildGauge()
                        .Name("omniroute_breaker_state")
                        .Help("Provider circuit breaker: 0 closed, 1 half-open, 2 open")
                        .Register(*registry_);
  store_up_ = &prometheus::BuildGauge()
                   .Name("omniroute_router_state_store_up")
                   .Help("1 while the router's shared state store (Redis) answers; 0 while "
                         "it routes on process-local state")
                   .Register(*registry_);
  router_events_ = &prometheus::BuildCounter()
                        .Name("omniroute_router_events_total")
                        .Help("Routing events across replicas (cooldowns_started, "
                              "lockouts_started, breaker_opened, breaker_closed, ...)")
                        .Register(*registry_);
  router_store_errors_ = &prometheus::BuildCounter()
                              .Name("omniroute_router_store_errors_total")
                              .Help("Failed state store (Redis) operations of the router "
                                    "replica this edge talks to")
                              .Register(*registry_);
}

Metrics::~Metrics() = default;

void Metrics::Request(std::string_view route, int status, std::string_view provider,
                      double seconds) {
  char code[12];
  const std::string_view status_label =
      status == 0 ? std::string_view("error")
                  : std::string_view(code, static_cast<size_t>(
                                               std::snprintf(code, sizeof(code), "%d", status)));
  cache_.Child(requests_, {{"route", route}, {"status", status_label}, {"provider", provider}})
      .Increment();
  cache_.Child(duration_, {{"route", route}}, LatencyBuckets()).Observe(seconds);
}

void Metrics::Upstream(std::string_view provider, int status, double seconds) {
  char code[12];
  const std::string_view status_label =
      status == 0 ? std::string_view("error")
                  : std::string_view(code, static_cast<size_t>(
                                               std::snprintf(code, sizeof(code), "%d", status)));
  cache_.Child(upstream_requests_, {{"provider", provider}, {"status", status_label}}).Increment();
  cache_.Child(upstream_duration_, {{"provider", provider}}, LatencyBuckets()).Observe(seconds);
}

void Metrics::Tokens(std::string_view provider, std::string_view type, int64_t n) {
  if (n <= 0) return;
  cache_.Child(tokens_, {{"provider", provider}, {"type", type}}).Increment(static_cast<double>(n));
}

void Metrics::Fallback(std::string_view provider) {
  cache_.Child(fallbacks_, {{"provider", provider}}).Increment();
}

void Metrics::InFlight(int delta) { in_flight_->Increment(delta); }

void Metrics::CandidatesTried(int n) {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {0, 1, 2, 3, 4, 5, 10};
  cache_.Child(candidates_tried_, {}, kBuckets).Observe(n);
}

void Metrics::CooldownWait() { cooldown_waits_->Add({}).Increment(); }

void Metrics::ConfigReload(std::string_view result) {
  config_reloads_->Add({{"result", std::string(result)}}).Increment();
}

void Metrics::Unavailable(std::string_view code) {
  unavailable_->Add({{"code", std::string(code)}}).Increment();
}

void Metrics::RouterHealth(const router::v1::HealthResponse& health) {
  for (const auto& p : health.providers()) {
    const double state = p.state() == "open" ? 2 : p.state() == "half_open" ? 1 : 0;
    breaker_state_->Add({{"provider", p.provider()}}).Set(state);
  }
  store_up_->Add({{"store", health.store()}}).Set(health.store_healthy() ? 1 : 0);
  std::lock_guard<std::mutex> lock(router_mu_);
  for (const auto& [name, value] : health.counters()) {
    // Counters only grow: add what is new (a restarted Redis starts them again from 0).
    int64_t& seen = router_seen_[name];
    const int64_t delta = value >= seen ? value - seen : value;
    seen = value;
    if (delta <= 0) continue;
    if (name == "store_errors") {
      router_store_errors_->Add({}).Increment(static_cast<double>(delta));
    } else {
      router_events_->Add({{"event", name}}).Increment(static_cast<double>(delta));
    }
  }
}

void Metrics::GenAi(std::string_view provider, std::string_view operation, double seconds,
                    double ttft_seconds, int64_t input_tokens, int64_t output_tokens,
                    double overhead_seconds) {
  static const prometheus::Histogram::BucketBoundaries kTokenBuckets = {
      1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304};
  static const prometheus::Histogram::BucketBoundaries kOverheadBuckets = {
      0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05};
  static const prometheus::Histogram::BucketBoundaries kTpotBuckets = {
      0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 1, 2.5};
  cache_
      .Child(genai_tokens_,
             {{"gen_ai_provider_name", provider},
              {"gen_ai_operation_name", operation},
              {"gen_ai_token_type", "input"}},
             kTokenBuckets)
      .Observe(static_cast<double>(input_tokens));
  cache_
      .Child(genai_tokens_,
             {{"gen_ai_provider_name", provider},
              {"gen_ai_operation_name", operation},
              {"gen_ai_token_type", "output"}},
             kTokenBuckets)
      .Observe(static_cast<double>(output_tokens));
  cache_
      .Child(genai_duration_,
             {{"gen_ai_provider_name", provider}, {"gen_ai_operation_name", operation}},
             LatencyBuckets())
      .Observe(seconds);
  if (ttft_seconds > 0) {
    cache_
        .Child(genai_ttft_,
               {{"gen_ai_provider_name", provider}, {"gen_ai_operation_name", operation}},
               LatencyBuckets())
        .Observe(ttft_seconds);
    if (output_tokens > 1 && seconds > ttft_seconds) {
      cache_
          .Child(genai_tpot_,
                 {{"gen_ai_provider_name", provider}, {"gen_ai_operation_name", operation}},
                 kTpotBuckets)
          .Observe((seconds - ttft_seconds) / static_cast<double>(output_tokens - 1));
    }
  }
  cache_.Child(overhead_, {}, kOverheadBuckets).Observe(std::max(0.0, overhead_seconds));
}

std::string Metrics::Serialize() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace omniroute::edge
