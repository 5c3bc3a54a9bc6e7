#include "memory_state_store.h"

#include <algorithm>

namespace omniroute::router {
namespace {

// Bounds on what clients can make the store hold (sessions come from a request header).
constexpr size_t kMaxSessions = 200000;
constexpr size_t kMaxCounters = 100000;
constexpr uint64_t kSweepEvery = 4096;

}  // namespace

int64_t BreakerOpenMs(const BreakerPolicy& policy, int trips) {
  int64_t mult = 1;
  for (int i = 1; i < trips && mult < policy.max_reset_multiplier; ++i) {
    mult *= 2;
  }
  mult = std::min<int64_t>(mult, std::max(policy.max_reset_multiplier, 1));
  return policy.reset_timeout_ms * mult;
}

int64_t BackoffMs(const CooldownPolicy& policy, int level, int64_t hint_ms) {
  const int step = std::clamp(level - 1, 0, std::min(policy.max_steps, 30));
  int64_t ms = policy.base_ms << step;
  ms = std::max(ms, hint_ms);
  ms = std::min(ms, policy.max_ms);
  return std::max<int64_t>(ms, 1);
}

StateSnapshot MemoryStateStore::Read(const StateQuery& query, int64_t now_ms) {
  StateSnapshot out;
  out.connections.resize(query.connections.size());
  out.lockout_until_ms.resize(query.lockouts.size(), 0);
  out.breakers.resize(query.providers.size());
  out.counters.resize(query.counters.size(), 0);
  std::lock_guard<std::mutex> lock(mu_);
  for (size_t i = 0; i < query.connections.size(); ++i) {
    const std::string& id = query.connections[i];
    ConnectionState& c = out.connections[i];
    if (auto it = cooldowns_.find(id); it != cooldowns_.end()) {
      if (it->second.until_ms > now_ms) c.cooldown_until_ms = it->second.until_ms;
      if (it->second.level_until_ms > now_ms) c.level = it->second.level;
    }
    if (auto it = last_used_.find(id); it != last_used_.end()) c.last_used_ms = it->second;
  }
  for (size_t i = 0; i < query.lockouts.size(); ++i) {
    auto it = lockouts_.find(query.lockouts[i]);
    if (it != lockouts_.end() && it->second.until_ms > now_ms) {
      out.lockout_until_ms[i] = it->second.until_ms;
    }
  }
  for (size_t i = 0; i < query.providers.size(); ++i) {
    auto it = breakers_.find(query.providers[i]);
    if (it == breakers_.end()) continue;
    out.breakers[i] = it->second.status;
    out.breakers[i].probe_in_flight = it->second.probe_until_ms > now_ms;
  }
  for (size_t i = 0; i < query.counters.size(); ++i) {
    auto it = counters_.find(query.counters[i]);
    if (it != counters_.end() && it->second.expires_ms > now_ms) {
      out.counters[i] = it->second.value;
    }
  }
  if (!query.session.empty()) {
    auto it = sessions_.find(query.session);
    if (it != sessions_.end() && it->second.expires_ms > now_ms) {
      out.session_connection = it->second.value;
    }
  }
  return out;
}

int64_t MemoryStateStore::StartCooldown(CooldownScope scope, const std::string& id, int64_t now_ms,
                                        const CooldownPolicy& policy, int64_t hint_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  MaybeSweepLocked(now_ms);
  dirty_ = true;
  Backoff& b = Map(scope)[id];
  if (b.level_until_ms <= now_ms) b.level = 0;
  ++b.level;
  const int64_t ms = BackoffMs(policy, b.level, hint_ms);
  b.until_ms = std::max(b.until_ms, now_ms + ms);
  b.level_until_ms = now_ms + ms + policy.max_ms * 4;
  return b.until_ms;
}

void MemoryStateStore::ClearCooldown(CooldownScope scope, const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& map = Map(scope);
  if (!map.empty()) map.erase(id);
}

void MemoryStateStore::HoldUntil(const std::string& id, int64_t now_ms, int64_t until_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  dirty_ = true;
  Backoff& b = cooldowns_[id];
  if (b.until_ms < until_ms) b.until_ms = until_ms;
  b.level_until_ms = std::max(b.level_until_ms, until_ms);
}

int64_t MemoryStateStore::Increment(const std::string& counter, int64_t now_ms, int64_t ttl_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  MaybeSweepLocked(now_ms);
  if (counters_.size() >= kMaxCounters && !counters_.count(counter)) SweepLocked(now_ms);
  Counter& c = counters_[counter];
  if (c.expires_ms <= now_ms) c.value = 0;
  c.expires_ms = now_ms + ttl_ms;
  return ++c.value;
}

void MemoryStateStore::Touch(const std::string& id, int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  last_used_[id] = now_ms;
}

void MemoryStateStore::SetSession(const std::string& session, const std::string& connection_id,
                                  int64_t now_ms, int64_t ttl_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  MaybeSweepLocked(now_ms);
  if (sessions_.size() >= kMaxSessions && !sessions_.count(session)) {
    SweepLocked(now_ms);
    if (sessions_.size() >= kMaxSessions) sessions_.clear();
  }
  dirty_ = true;
  sessions_[session] = {connection_id, now_ms + ttl_ms};
}

bool MemoryStateStore::TryProbe(const std::string& provider, int64_t now_ms, int64_t probe_ttl_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = breakers_.find(provider);
  if (it == breakers_.end()) return false;
  Breaker& b = it->second;
  const bool due = (b.status.state == BreakerState::kOpen && now_ms >= b.status.open_until_ms) ||
                   b.status.state == BreakerState::kHalfOpen;
  if (!due || b.probe_until_ms > now_ms) return false;
  b.status.state = BreakerState::kHalfOpen;
  b.probe_until_ms = now_ms + probe_ttl_ms;
  dirty_ = true;
  return true;
}

BreakerStatus MemoryStateStore::RecordFailure(const std::string& provider, int64_t now_ms,
                                              const BreakerPolicy& policy, bool probe) {
  std::lock_guard<std::mutex> lock(mu_);
  dirty_ = true;
  Breaker& b = breakers_[provider];
  BreakerStatus& s = b.status;
  if (s.state == BreakerState::kClosed) {
    ++s.failures;
    if (policy.failure_threshold > 0 && s.failures >= policy.failure_threshold) {
      s.state = BreakerState::kOpen;
      s.trips = 1;
      s.failures = 0;
      s.open_until_ms = now_ms + BreakerOpenMs(policy, s.trips);
    }
  } else if (s.state == BreakerState::kHalfOpen && probe) {
    s.state = BreakerState::kOpen;
    ++s.trips;
    s.open_until_ms = now_ms + BreakerOpenMs(policy, s.trips);
    b.probe_until_ms = 0;
  }
  BreakerStatus out = s;
  out.probe_in_flight = b.probe_until_ms > now_ms;
  return out;
}

BreakerStatus MemoryStateStore::RecordSuccess(const std::string& provider, int64_t now_ms,
                                              bool probe) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = breakers_.find(provider);
  if (it == breakers_.end()) return {};
  Breaker& b = it->second;
  if (b.status.state == BreakerState::kClosed ||
      (b.status.state == BreakerState::kHalfOpen && probe)) {
    breakers_.erase(it);
    return {};
  }
  BreakerStatus out = b.status;
  out.probe_in_flight = b.probe_until_ms > now_ms;
  return out;
}

void MemoryStateStore::ResetBreakers(const std::vector<std::string>& providers) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& p : providers) breakers_.erase(p);
}

SlotGrant MemoryStateStore::AcquireSlot(const std::string& id, const std::string& lease_id,
                                        int64_t now_ms, const PacingPolicy& policy) {
  std::lock_guard<std::mutex> lock(mu_);
  Pacing& p = pacing_[id];
  int64_t retry_at = 0;
  if (policy.max_concurrent > 0) {
    int64_t earliest = 0;
    for (auto it = p.in_flight.begin(); it != p.in_flight.end();) {
      if (it->second <= now_ms) {
        it = p.in_flight.erase(it);
      } else {
        earliest = earliest == 0 ? it->second : std::min(earliest, it->second);
        ++it;
      }
    }
    if (static_cast<int>(p.in_flight.size()) >= policy.max_concurrent) {
      // A release usually comes before the lease expires: suggest looking again soon.
      retry_at = std::max(retry_at, std::min(earliest, now_ms + 1000));
    }
  }
  if (policy.rpm > 0) {
    while (!p.starts.empty() && p.starts.front() <= now_ms - 60000) p.starts.pop_front();
    if (static_cast<int>(p.starts.size()) >= policy.rpm) {
      retry_at = std::max(retry_at, p.starts.front() + 60000);
    }
  }
  if (policy.min_gap_ms > 0 && p.last_start_ms > 0 &&
      now_ms - p.last_start_ms < policy.min_gap_ms) {
    retry_at = std::max(retry_at, p.last_start_ms + policy.min_gap_ms);
  }
  if (retry_at > 0) return {false, retry_at};
  if (policy.max_concurrent > 0) p.in_flight[lease_id] = now_ms + policy.lease_ttl_ms;
  if (policy.rpm > 0) p.starts.push_back(now_ms);
  p.last_start_ms = now_ms;
  return {true, 0};
}

void MemoryStateStore::ReleaseSlot(const std::string& id, const std::string& lease_id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = pacing_.find(id);
  if (it != pacing_.end()) it->second.in_flight.erase(lease_id);
}

void MemoryStateStore::RecordLatency(const std::string& provider, int64_t ms) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& samples = latencies_[provider];
  samples.push_front(ms);
  if (samples.size() > kLatencySamples) samples.pop_back();
}

std::vector<int64_t> MemoryStateStore::Latencies(const std::string& provider) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = latencies_.find(provider);
  if (it == latencies_.end()) return {};
  return {it->second.begin(), it->second.end()};
}

std::vector<ActiveCooldown> MemoryStateStore::ActiveCooldowns(
    const std::vector<std::string>& connection_ids, int64_t now_ms) {
  std::vector<ActiveCooldown> out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& id : connection_ids) {
    auto it = cooldowns_.find(id);
    if (it != cooldowns_.end() && it->second.until_ms > now_ms) {
      out.push_back({CooldownScope::kConnection, id, it->second.until_ms, it->second.level});
    }
  }
  for (const auto& [id, b] : lockouts_) {
    if (b.until_ms > now_ms) out.push_back({CooldownScope::kModel, id, b.until_ms, b.level});
  }
  return out;
}

void MemoryStateStore::ResetCooldowns(const std::vector<std::string>& connection_ids) {
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& id : connection_ids) cooldowns_.erase(id);
  lockouts_.clear();
}

void MemoryStateStore::AddStat(const std::string& name, int64_t delta) {
  std::lock_guard<std::mutex> lock(mu_);
  stats_[name] += delta;
}

std::map<std::string, int64_t> MemoryStateStore::Stats() {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

std::optional<SharedDocument> MemoryStateStore::GetDocument(const std::string& name) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = documents_.find(name);
  if (it == documents_.end()) return std::nullopt;
  return it->second;
}

bool MemoryStateStore::PutDocument(const std::string& name, const SharedDocument& doc) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = documents_.find(name);
  if (it != documents_.end() && it->second.version >= doc.version) return false;
  documents_[name] = doc;
  return true;
}

void MemoryStateStore::Maintain(int64_t now_ms) {
  std::lock_guard<std::mutex> lock(mu_);
  SweepLocked(now_ms);
}

MemoryStateStore::Exported MemoryStateStore::TakeExport(int64_t now_ms) {
  Exported out;
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& [id, b] : cooldowns_) {
    if (b.until_ms > now_ms)
      out.cooldowns.push_back({CooldownScope::kConnection, id, b.until_ms, b.level});
  }
  for (const auto& [id, b] : lockouts_) {
    if (b.until_ms > now_ms)
      out.cooldowns.push_back({CooldownScope::kModel, id, b.until_ms, b.level});
  }
  for (const auto& [provider, b] : breakers_) {
    if (b.status.state != BreakerState::kClosed) out.breakers.emplace_back(provider, b.status);
  }
  for (const auto& [session, e] : sessions_) {
    if (e.expires_ms > now_ms) out.sessions.push_back({session, e.value, e.expires_ms});
  }
  cooldowns_.clear();
  lockouts_.clear();
  breakers_.clear();
  sessions_.clear();
  counters_.clear();
  pacing_.clear();
  last_used_.clear();
  dirty_ = false;
  return out;
}

bool MemoryStateStore::Dirty() const {
  std::lock_guard<std::mutex> lock(mu_);
  return dirty_;
}

void MemoryStateStore::MaybeSweepLocked(int64_t now_ms) {
  if (++writes_ % kSweepEvery == 0) SweepLocked(now_ms);
}

void MemoryStateStore::SweepLocked(int64_t now_ms) {
  for (auto* map : {&cooldowns_, &lockouts_}) {
    for (auto it = map->begin(); it != map->end();) {
      if (it->second.until_ms <= now_ms && it->second.level_until_ms <= now_ms) {
        it = map->erase(it);
      } else {
        ++it;
      }
    }
  }
  std::erase_if(sessions_, [&](const auto& kv) { return kv.second.expires_ms <= now_ms; });
  std::erase_if(counters_, [&](const auto& kv) { return kv.second.expires_ms <= now_ms; });
  std::erase_if(last_used_, [&](const auto& kv) { return kv.second < now_ms - 86400000; });
  for (auto it = pacing_.begin(); it != pacing_.end();) {
    Pacing& p = it->second;
    std::erase_if(p.in_flight, [&](const auto& kv) { return kv.second <= now_ms; });
    while (!p.starts.empty() && p.starts.front() <= now_ms - 60000) p.starts.pop_front();
    if (p.in_flight.empty() && p.starts.empty() && p.last_start_ms < now_ms - 86400000) {
      it = pacing_.erase(it);
    } else {
      ++it;
    }
  }
}

StateStorePtr MakeMemoryStateStore() { return std::make_shared<MemoryStateStore>(); }

}  // namespace omniroute::router
