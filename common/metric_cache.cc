#include "common/metric_cache.h"

#include <atomic>
#include <cstring>
#include <functional>
#include <string>
#include <unordered_map>

namespace omniroute {
namespace {

// Label sets are bounded by their owners; the cache stays bounded anyway.
constexpr size_t kMaxEntries = 50000;

std::atomic<uint64_t> next_instance{1};

struct StringHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
};

// Per thread: "<instance><family><value>\x1f<value>\x1f..." → the family's child.
thread_local std::unordered_map<std::string, void*, StringHash, std::equal_to<>> children;
thread_local std::string scratch;

}  // namespace

MetricCache::MetricCache() : instance_(next_instance.fetch_add(1)) {}

std::string_view MetricCache::Key(const void* family, Labels labels) const {
  size_t size = sizeof(instance_) + sizeof(family);
  for (const auto& [name, value] : labels) size += value.size() + 1;
  std::string& key = scratch;
  key.resize(size);
  char* p = key.data();
  std::memcpy(p, &instance_, sizeof(instance_));
  p += sizeof(instance_);
  std::memcpy(p, &family, sizeof(family));
  p += sizeof(family);
  for (const auto& [name, value] : labels) {
    if (!value.empty()) std::memcpy(p, value.data(), value.size());
    p += value.size();
    *p++ = '\x1f';
  }
  return key;
}

void* MetricCache::Find(std::string_view key) {
  const auto it = children.find(key);
  return it != children.end() ? it->second : nullptr;
}

void MetricCache::Insert(std::string_view key, void* child) {
  if (children.size() >= kMaxEntries) children.clear();
  children.emplace(key, child);
}

prometheus::Labels MetricCache::ToMap(Labels labels) {
  prometheus::Labels map;
  for (const auto& [name, value] : labels) map.emplace(name, value);
  return map;
}

}  // namespace omniroute
