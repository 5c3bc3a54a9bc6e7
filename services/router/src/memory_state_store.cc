#include <algorithm>
#include <mutex>
#include <unordered_map>

#include "state_store.h"

namespace omniroute::router {
namespace {

class MemoryStateStore final : public StateStore {
 public:
  // Interface
  std::vector<int64_t> CooldownUntil(const std::vector<std::string>& ids,
                                     int64_t now_ms) override {
    std::vector<int64_t> out(ids.size(), 0);
    std::lock_guard<std::mutex> lock(mu_);
    if (entries_.empty()) return out;
    for (size_t i = 0; i < ids.size(); ++i) {
      auto it = entries_.find(ids[i]);
      if (it != entries_.end() && it->second.until_ms > now_ms) out[i] = it->second.until_ms;
    }
    return out;
  }

  int64_t StartCooldown(const std::string& id, int64_t now_ms, const CooldownPolicy& policy,
                        int64_t hint_ms) override {
    std::lock_guard<std::mutex> lock(mu_);
    Entry& e = entries_[id];
    // The backoff level decays once a cooldown has long passed.
    if (e.until_ms != 0 && now_ms - e.until_ms > policy.max_ms * 4) e.level = 0;
    ++e.level;
    const int step = std::min(e.level - 1, policy.max_steps);
    int64_t ms = policy.base_ms << std::min(step, 30);
    ms = std::max(ms, hint_ms);
    ms = std::min(ms, policy.max_ms);
    e.until_ms = now_ms + ms;
    return e.until_ms;
  }

  void ClearCooldown(const std::string& id) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!entries_.empty()) entries_.erase(id);
  }

  bool Healthy() const override { return true; }

 private:
  struct Entry {
    int level = 0;
    int64_t until_ms = 0;
  };
  std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;
};

}  // namespace

StateStorePtr MakeMemoryStateStore() { return std::make_shared<MemoryStateStore>(); }

}  // namespace omniroute::router
