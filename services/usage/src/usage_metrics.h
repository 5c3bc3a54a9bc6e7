#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "common/metric_cache.h"
#include "omniroute/usage/v1/usage.pb.h"

namespace prometheus {
class Registry;
class Counter;
class Gauge;
class Histogram;
template <typename T>
class Family;
}  // namespace prometheus

namespace omniroute::usage {

// Prometheus metrics of the usage service. Label values are bounded: the first
// `top_keys` client keys seen (seeded with the biggest spenders at start) keep their own
// label, the rest count as "other"; likewise at most 500 models. Thread-safe.
class UsageMetrics {
 public:
  explicit UsageMetrics(int top_keys);
  ~UsageMetrics();

  void SeedTopKeys(const std::vector<std::string>& keys);
  void Recorded(const v1::UsageRecord& record, bool priced);
  void StoreWrite(double seconds, bool ok, size_t records);
  void Spool(uint64_t depth, int64_t bytes, uint64_t dropped_total);
  void Reservation(bool allowed, bool held, std::string_view denied_window);

  // Prometheus text exposition format.
  std::string Text() const;

 private:
  // The label of a key or model: itself, or "other" past the cap. Views stay valid (the sets
  // only grow). mu_ held.
  std::string_view KeyLabel(std::string_view key);
  std::string_view ModelLabel(std::string_view model);

  const size_t top_keys_;
  MetricCache cache_;
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* records_;
  prometheus::Family<prometheus::Counter>* tokens_;
  prometheus::Family<prometheus::Counter>* cost_;
  prometheus::Family<prometheus::Counter>* unpriced_;
  prometheus::Family<prometheus::Counter>* reservations_;
  prometheus::Family<prometheus::Counter>* rejections_;
  prometheus::Histogram* write_seconds_;
  prometheus::Counter* write_errors_;
  prometheus::Counter* written_;
  prometheus::Gauge* spool_depth_;
  prometheus::Gauge* spool_bytes_;
  prometheus::Counter* spool_dropped_;
  std::mutex mu_;
  std::set<std::string, std::less<>> keys_;
  std::set<std::string, std::less<>> models_;
  uint64_t dropped_seen_ = 0;
};

}  // namespace omniroute::usage
