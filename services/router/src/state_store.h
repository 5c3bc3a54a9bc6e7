#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace omniroute::router {

// Parameters of one cooldown or lockout decision.
struct CooldownPolicy {
  int64_t base_ms = 3000;   // first cooldown
  int64_t max_ms = 120000;  // cap
  int max_steps = 5;        // backoff level cap: cooldown = base * 2^min(level, max_steps)
};

// What a cooldown applies to: a connection, or one model on one connection
// ("provider:connection:model", a lockout).
enum class CooldownScope { kConnection, kModel };

enum class BreakerState { kClosed = 0, kHalfOpen = 1, kOpen = 2 };

// A provider's circuit breaker as stored.
struct BreakerStatus {
  BreakerState state = BreakerState::kClosed;
  int failures = 0;              // consecutive failures while closed
  int64_t open_until_ms = 0;     // open: when a probe may go
  int trips = 0;                 // consecutive openings; the reset timeout doubles with each
  bool probe_in_flight = false;  // half-open: a probe holds the provider
};

struct BreakerPolicy {
  int failure_threshold = 12;  // 0 = the breaker never opens
  int64_t reset_timeout_ms = 30000;
  int max_reset_multiplier = 16;
};

// Pacing of one connection; a zero field is no limit.
struct PacingPolicy {
  int rpm = 0;
  int64_t min_gap_ms = 0;
  int max_concurrent = 0;
  int64_t lease_ttl_ms = 300000;
  bool enabled() const { return rpm > 0 || min_gap_ms > 0 || max_concurrent > 0; }
};

// The answer to a request for an in-flight slot.
struct SlotGrant {
  bool granted = false;
  int64_t retry_at_ms = 0;  // not granted: when a slot is expected to be free
};

// What a plan reads, in one go.
struct StateQuery {
  std::vector<std::string> connections = {};  // cooldown, backoff level, last use
  std::vector<std::string> lockouts = {};     // "provider:connection:model"
  std::vector<std::string> providers = {};    // breakers
  std::vector<std::string> counters = {};     // named counters (see Increment)
  std::string session = {};                   // sticky session id; empty = none
};

struct ConnectionState {
  int64_t cooldown_until_ms = 0;  // 0 when not cooling down
  int level = 0;                  // backoff level (recent failures)
  int64_t last_used_ms = 0;       // 0 = never
};

struct StateSnapshot {
  std::vector<ConnectionState> connections;  // parallel to StateQuery::connections
  std::vector<int64_t> lockout_until_ms;     // parallel to StateQuery::lockouts; 0 = none
  std::vector<BreakerStatus> breakers;       // parallel to StateQuery::providers
  std::vector<int64_t> counters;             // parallel to StateQuery::counters
  std::string session_connection;            // the pinned connection, or empty
};

// What a success changes (StateStore::RecordSuccessOutcome).
struct SuccessRecord {
  std::string connection_id;  // its cooldown and backoff level are forgotten
  std::string provider;       // its breaker records a success
  bool probe = false;         // the provider's half-open probe
  int64_t latency_ms = 0;     // > 0: a latency sample of the provider
  std::string session;        // not empty: pinned to the connection for session_ttl_ms
  int64_t session_ttl_ms = 0;
};

// An active cooldown or lockout, for the health view.
struct ActiveCooldown {
  CooldownScope scope = CooldownScope::kConnection;
  std::string id;
  int64_t until_ms = 0;
  int level = 0;
};

// A versioned document shared by every replica (the runtime routing configuration).
struct SharedDocument {
  int64_t version = 0;
  std::string body;
};

// Shared routing state. Implementations are thread-safe; every operation that changes
// state is atomic across every process sharing the store. Times are milliseconds since the
// Unix epoch, given by the caller (replicas need synchronised clocks).
class StateStore {
 public:
  virtual ~StateStore() = default;

  // Everything a plan needs to know, read at once.
  virtual StateSnapshot Read(const StateQuery& query, int64_t now_ms) = 0;

  // Records a retryable failure: raises the backoff level and starts a cooldown of
  // max(hint_ms, base * 2^min(level-1, max_steps)) capped at max_ms. Returns its end.
  virtual int64_t StartCooldown(CooldownScope scope, const std::string& id, int64_t now_ms,
                                const CooldownPolicy& policy, int64_t hint_ms) = 0;

  // A success: forgets the cooldown and the backoff level.
  virtual void ClearCooldown(CooldownScope scope, const std::string& id) = 0;

  // Keeps a connection out of plans until `until_ms` without raising its backoff level
  // (an upstream said its quota is spent); never shortens a longer cooldown.
  virtual void HoldUntil(const std::string& connection_id, int64_t now_ms, int64_t until_ms) = 0;

  // Adds one to a named counter and returns the new value; the counter expires `ttl_ms`
  // after its last increment.
  virtual int64_t Increment(const std::string& counter, int64_t now_ms, int64_t ttl_ms) = 0;

  // Remembers that a connection was just given a request (least-used, p2c).
  virtual void Touch(const std::string& connection_id, int64_t now_ms) = 0;

  // Pins a sticky session to a connection for `ttl_ms`.
  virtual void SetSession(const std::string& session, const std::string& connection_id,
                          int64_t now_ms, int64_t ttl_ms) = 0;

  // For a provider whose breaker is open past its timeout, or half-open without a probe:
  // makes it half-open with the caller as its one probe (for `probe_ttl_ms`) and returns
  // true. Exactly one caller across every replica wins. False otherwise.
  virtual bool TryProbe(const std::string& provider, int64_t now_ms, int64_t probe_ttl_ms) = 0;

  // A provider failure (5xx, timeout, connection error). Closed: counts it and opens at
  // the threshold. Half-open and `probe`: reopens with the reset timeout doubled (capped).
  // Other failures while open or half-open are late reports and change nothing.
  virtual BreakerStatus RecordFailure(const std::string& provider, int64_t now_ms,
                                      const BreakerPolicy& policy, bool probe) = 0;

  // A provider success. Closed: resets the failure count. Half-open and `probe`: closes.
  virtual BreakerStatus RecordSuccess(const std::string& provider, int64_t now_ms, bool probe) = 0;

  // Everything a success records, in that order: ClearCooldown of the connection,
  // RecordSuccess of the provider, RecordLatency when latency_ms > 0, SetSession when a
  // session is given; in one round trip where the store has them (Redis). Returns the
  // breaker as RecordSuccess does.
  virtual BreakerStatus RecordSuccessOutcome(const SuccessRecord& s, int64_t now_ms) {
    ClearCooldown(CooldownScope::kConnection, s.connection_id);
    const BreakerStatus breaker = RecordSuccess(s.provider, now_ms, s.probe);
    if (s.latency_ms > 0) RecordLatency(s.provider, s.latency_ms);
    if (!s.session.empty()) SetSession(s.session, s.connection_id, now_ms, s.session_ttl_ms);
    return breaker;
  }

  // RecordSuccessOutcome of each, in order; in one round trip where the store has them
  // (Redis). Returns their breakers.
  virtual std::vector<BreakerStatus> RecordSuccessOutcomes(
      const std::vector<SuccessRecord>& successes, int64_t now_ms) {
    std::vector<BreakerStatus> out;
    out.reserve(successes.size());
    for (const SuccessRecord& s : successes) out.push_back(RecordSuccessOutcome(s, now_ms));
    return out;
  }

  // Closes the breakers of `providers`.
  virtual void ResetBreakers(const std::vector<std::string>& providers) = 0;

  // Takes an in-flight slot `lease_id` on a connection when its pacing allows one now
  // (in-flight count, requests in the last minute, gap since the last start); the slot is
  // freed by ReleaseSlot or after policy.lease_ttl_ms.
  virtual SlotGrant AcquireSlot(const std::string& connection_id, const std::string& lease_id,
                                int64_t now_ms, const PacingPolicy& policy) = 0;
  virtual void ReleaseSlot(const std::string& connection_id, const std::string& lease_id) = 0;

  // Latency samples per provider (the most recent few hundred).
  virtual void RecordLatency(const std::string& provider, int64_t ms) = 0;
  virtual std::vector<int64_t> Latencies(const std::string& provider) = 0;

  // Active cooldowns of `connection_ids` and every active lockout.
  virtual std::vector<ActiveCooldown> ActiveCooldowns(
      const std::vector<std::string>& connection_ids, int64_t now_ms) = 0;

  // Clears the cooldowns and backoff levels of `connection_ids` and every lockout.
  virtual void ResetCooldowns(const std::vector<std::string>& connection_ids) = 0;

  // Shared event counters (cooldowns started, breaker openings, ...).
  virtual void AddStat(const std::string& name, int64_t delta) = 0;
  virtual std::map<std::string, int64_t> Stats() = 0;

  // The shared document `name`, if any.
  virtual std::optional<SharedDocument> GetDocument(const std::string& name) = 0;
  // Stores `doc` unless a version at least as new is there; returns whether it stored it.
  virtual bool PutDocument(const std::string& name, const SharedDocument& doc) = 0;

  // Periodic upkeep (expiry sweeps; resynchronisation after an outage). Call about once a
  // second.
  virtual void Maintain(int64_t now_ms) {}

  // False while the backing store is unreachable (the store then serves local state).
  virtual bool Healthy() const = 0;
  // "memory" or "redis".
  virtual std::string Kind() const = 0;
  // Operations that failed against the backing store since start.
  virtual int64_t Errors() const { return 0; }
  // Whether other processes see this state (Redis).
  virtual bool Shared() const { return false; }
};

using StateStorePtr = std::shared_ptr<StateStore>;

// Process-local state (the all-in-one default, and the fallback of the Redis store).
StateStorePtr MakeMemoryStateStore();

// State in Redis under the "omni:router:" prefix. `url` is redis://host:port[/db] or
// unix:///path. Falls back to local state while Redis is unreachable.
StateStorePtr MakeRedisStateStore(const std::string& url);

}  // namespace omniroute::router
