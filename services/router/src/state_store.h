#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace omniroute::router {

// Parameters of one cooldown decision.
struct CooldownPolicy {
  int64_t base_ms = 3000;   // first cooldown
  int64_t max_ms = 120000;  // cap
  int max_steps = 5;        // backoff level cap: cooldown = base * 2^min(level, max_steps)
};

// Shared routing state: cooldowns and their backoff levels, per connection. Implementations
// are thread-safe. Times are milliseconds since the Unix epoch.
class StateStore {
 public:
  virtual ~StateStore() = default;

  // For each id, the time until which it cools down (0 when it does not).
  virtual std::vector<int64_t> CooldownUntil(const std::vector<std::string>& connection_ids,
                                             int64_t now_ms) = 0;

  // Records a retryable failure: raises the backoff level and starts a cooldown of
  // max(hint_ms, base * 2^level) capped at max_ms. Returns the cooldown's end.
  virtual int64_t StartCooldown(const std::string& connection_id, int64_t now_ms,
                                const CooldownPolicy& policy, int64_t hint_ms) = 0;

  // A success: forgets the cooldown and backoff level.
  virtual void ClearCooldown(const std::string& connection_id) = 0;

  // False while the backing store is unreachable (the store then serves local state).
  virtual bool Healthy() const = 0;
};

using StateStorePtr = std::shared_ptr<StateStore>;

// Process-local state (the all-in-one default, and the fallback of the Redis store).
StateStorePtr MakeMemoryStateStore();

// State in Redis under the "omni:router:" prefix. `url` is redis://host:port[/db] or
// unix:///path. Falls back to local state while Redis is unreachable.
StateStorePtr MakeRedisStateStore(const std::string& url);

}  // namespace omniroute::router
