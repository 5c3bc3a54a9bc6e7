#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <vector>

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
// label, the rest count as "other"; likewise at most 200 models per provider. Thread-safe.
class UsageMetrics {
 public:
  explicit UsageMetrics(int top_keys);
  ~UsageMetrics();

  void SeedTopKeys(const std::vector<std::string>& keys);
  void Recorded(const v1::UsageRecord& record, bool priced);
  void StoreWrite(double seconds, bool ok, size_t records);
  void Spool(uint64_t depth, int64_t bytes, uint64_t dropped_total);
  void Reservation(bool allowed, bool held, const std::string& denied_window);

  // Prometheus text exposition format.
  std::string Text() const;

 private:
  std::string KeyLabel(const std::string& key);      // mu_ held
  std::string ModelLabel(const std::string& model);  // mu_ held

  const size_t top_keys_;
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
  std::set<std::string> keys_;
  std::set<std::string> models_;
  uint64_t dropped_seen_ = 0;
};

}  // namespace omniroute::usage
