#pragma once

#include <memory>
#include <string>
#include <string_view>

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

  // Prometheus text exposition of every metric.
  std::string Serialize() const;

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Family<prometheus::Histogram>* duration_;
  prometheus::Family<prometheus::Counter>* upstream_requests_;
  prometheus::Family<prometheus::Histogram>* upstream_duration_;
  prometheus::Family<prometheus::Counter>* tokens_;
  prometheus::Family<prometheus::Counter>* fallbacks_;
  prometheus::Gauge* in_flight_;
};

}  // namespace omniroute::edge
