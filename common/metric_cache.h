#pragma once

#include <prometheus/family.h>
#include <prometheus/labels.h>

#include <cstdint>
#include <initializer_list>
#include <string_view>
#include <utility>

namespace omniroute {

// The children of prometheus families by label values, from a per-thread cache. Family::Add
// of prometheus-cpp builds and hashes a label map and takes the family's lock at every call
// (and for a histogram constructs one to throw away); through this cache a label set seen
// before costs one hash lookup on a string of its values. Children are never removed from
// their families, so a cached child lives as long as its family. Thread-safe.
//
//   MetricCache cache_;
//   cache_.Child(requests_, {{"route", route}, {"status", status}}).Increment();
//   cache_.Child(duration_, {{"route", route}}, buckets).Observe(seconds);
//
// The cache keys on the family and the label values only: every call for one family names
// the same labels in the same order.
class MetricCache {
 public:
  using Labels = std::initializer_list<std::pair<std::string_view, std::string_view>>;

  MetricCache();
  MetricCache(const MetricCache&) = delete;
  MetricCache& operator=(const MetricCache&) = delete;

  // The child of `family` with these labels; `args` (a histogram's buckets) are used only
  // when the child is created.
  template <typename T, typename... Args>
  T& Child(prometheus::Family<T>* family, Labels labels, const Args&... args) {
    const std::string_view key = Key(family, labels);
    if (void* child = Find(key)) return *static_cast<T*>(child);
    T& child = family->Add(ToMap(labels), args...);
    Insert(key, &child);
    return child;
  }

 private:
  // The calling thread's key of (this cache, family, label values); valid until the next call.
  std::string_view Key(const void* family, Labels labels) const;
  static void* Find(std::string_view key);
  static void Insert(std::string_view key, void* child);
  static prometheus::Labels ToMap(Labels labels);

  const uint64_t instance_;  // tells apart the entries of caches of one thread
};

}  // namespace omniroute
