#pragma once

#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "state_store.h"

namespace omniroute::router {

// Routing state in this process. Used by the all-in-one, and by the Redis store while
// Redis is unreachable (it then hands its state over with Export when Redis returns).
class MemoryStateStore final : public StateStore {
 public:
  // What the store holds that must outlive an outage of a shared store.
  struct Exported {
    std::vector<ActiveCooldown> cooldowns;  // connection cooldowns and lockouts
    std::vector<std::pair<std::string, BreakerStatus>> breakers;  // not closed, or counting
    struct Session {
      std::string session;
      std::string connection;
      int64_t expires_ms = 0;
    };
    std::vector<Session> sessions;
  };

  // Interface
  StateSnapshot Read(const StateQuery& query, int64_t now_ms) override;
  int64_t StartCooldown(CooldownScope scope, const std::string& id, int64_t now_ms,
                        const CooldownPolicy& policy, int64_t hint_ms) override;
  void ClearCooldown(CooldownScope scope, const std::string& id) override;
  void HoldUntil(const std::string& connection_id, int64_t now_ms, int64_t until_ms) override;
  int64_t Increment(const std::string& counter, int64_t now_ms, int64_t ttl_ms) override;
  void Touch(const std::string& connection_id, int64_t now_ms) override;
  void SetSession(const std::string& session, const std::string& connection_id, int64_t now_ms,
                  int64_t ttl_ms) override;
  bool TryProbe(const std::string& provider, int64_t now_ms, int64_t probe_ttl_ms) override;
  BreakerStatus RecordFailure(const std::string& provider, int64_t now_ms,
                              const BreakerPolicy& policy, bool probe) override;
  BreakerStatus RecordSuccess(const std::string& provider, int64_t now_ms, bool probe) override;
  void ResetBreakers(const std::vector<std::string>& providers) override;
  SlotGrant AcquireSlot(const std::string& connection_id, const std::string& lease_id,
                        int64_t now_ms, const PacingPolicy& policy) override;
  void ReleaseSlot(const std::string& connection_id, const std::string& lease_id) override;
  void RecordLatency(const std::string& provider, int64_t ms) override;
  std::vector<int64_t> Latencies(const std::string& provider) override;
  std::vector<ActiveCooldown> ActiveCooldowns(const std::vector<std::string>& connection_ids,
                                              int64_t now_ms) override;
  void ResetCooldowns(const std::vector<std::string>& connection_ids) override;
  void AddStat(const std::string& name, int64_t delta) override;
  std::map<std::string, int64_t> Stats() override;
  std::optional<SharedDocument> GetDocument(const std::string& name) override;
  bool PutDocument(const std::string& name, const SharedDocument& doc) override;
  void Maintain(int64_t now_ms) override;
  bool Healthy() const override { return true; }
  std::string Kind() const override { return "memory"; }

  // The state worth keeping, as of `now_ms`; then forgets it (Clear).
  Exported TakeExport(int64_t now_ms);
  // Whether anything was recorded since the last TakeExport.
  bool Dirty() const;

  // How many latency samples are kept per provider.
  static constexpr size_t kLatencySamples = 256;

 private:
  struct Backoff {
    int level = 0;
    int64_t until_ms = 0;
    int64_t level_until_ms = 0;  // the level is forgotten after this
  };
  struct Expiring {
    std::string value;
    int64_t expires_ms = 0;
  };
  struct Counter {
    int64_t value = 0;
    int64_t expires_ms = 0;
  };
  struct Breaker {
    BreakerStatus status;
    int64_t probe_until_ms = 0;
  };
  struct Pacing {
    std::unordered_map<std::string, int64_t> in_flight;  // lease → expiry
    std::deque<int64_t> starts;                          // within the last minute
    int64_t last_start_ms = 0;
  };

  std::unordered_map<std::string, Backoff>& Map(CooldownScope scope) {
    return scope == CooldownScope::kConnection ? cooldowns_ : lockouts_;
  }
  void SweepLocked(int64_t now_ms);
  void MaybeSweepLocked(int64_t now_ms);

  mutable std::mutex mu_;
  std::unordered_map<std::string, Backoff> cooldowns_;
  std::unordered_map<std::string, Backoff> lockouts_;
  std::unordered_map<std::string, int64_t> last_used_;
  std::unordered_map<std::string, Expiring> sessions_;
  std::unordered_map<std::string, Counter> counters_;
  std::unordered_map<std::string, Breaker> breakers_;
  std::unordered_map<std::string, Pacing> pacing_;
  std::unordered_map<std::string, std::deque<int64_t>> latencies_;
  std::map<std::string, int64_t> stats_;
  std::unordered_map<std::string, SharedDocument> documents_;
  uint64_t writes_ = 0;
  bool dirty_ = false;
};

// The reset timeout of the `trips`-th consecutive opening: base * 2^(trips-1), at most
// base * max_multiplier.
int64_t BreakerOpenMs(const BreakerPolicy& policy, int trips);

// The cooldown of backoff `level` (1 = first failure) under `policy` with an upstream hint.
int64_t BackoffMs(const CooldownPolicy& policy, int level, int64_t hint_ms);

}  // namespace omniroute::router
