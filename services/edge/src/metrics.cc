#include "metrics.h"

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

std::string StatusLabel(int status) { return status == 0 ? "error" : std::to_string(status); }

}  // namespace

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {
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
}

Metrics::~Metrics() = default;

void Metrics::Request(std::string_view route, int status, std::string_view provider,
                      double seconds) {
  requests_
      ->Add({{"route", std::string(route)},
             {"status", StatusLabel(status)},
             {"provider", std::string(provider)}})
      .Increment();
  duration_->Add({{"route", std::string(route)}}, LatencyBuckets()).Observe(seconds);
}

void Metrics::Upstream(std::string_view provider, int status, double seconds) {
  upstream_requests_->Add({{"provider", std::string(provider)}, {"status", StatusLabel(status)}})
      .Increment();
  upstream_duration_->Add({{"provider", std::string(provider)}}, LatencyBuckets())
      .Observe(seconds);
}

void Metrics::Tokens(std::string_view provider, std::string_view type, int64_t n) {
  if (n <= 0) return;
  tokens_->Add({{"provider", std::string(provider)}, {"type", std::string(type)}})
      .Increment(static_cast<double>(n));
}

void Metrics::Fallback(std::string_view provider) {
  fallbacks_->Add({{"provider", std::string(provider)}}).Increment();
}

void Metrics::InFlight(int delta) { in_flight_->Increment(delta); }

std::string Metrics::Serialize() const {
  return prometheus::TextSerializer().Serialize(registry_->Collect());
}

}  // namespace omniroute::edge
