#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"

namespace omniroute::usage {

// Amounts in the ledger are integer nano-USD (1e-9 USD), so that additions are exact.
inline int64_t ToNano(double usd) {
  return static_cast<int64_t>(usd * 1e9 + (usd >= 0 ? 0.5 : -0.5));
}
inline double FromNano(int64_t nano) { return static_cast<double>(nano) / 1e9; }

// One budget window of one subject, e.g. "key:cfg:a|d:20416".
struct WindowRef {
  std::string key;
  int64_t expire_at_ms = 0;  // the ledger may forget the window after this
};

struct LedgerCheck {
  WindowRef window;
  int64_t limit = 0;  // nano-USD; 0 = no limit (never blocks, holds nothing)
};

struct LedgerState {
  int64_t spent = 0;
  int64_t held = 0;
};

// A key's requests and estimated tokens in one minute, against its rate limits.
struct LedgerRate {
  WindowRef window;          // e.g. "rate:key:cfg:a|m:29925540"
  int64_t max_requests = 0;  // 0 = no limit
  int64_t max_tokens = 0;    // 0 = no limit
  int64_t tokens = 0;        // this request's estimate
};

struct LedgerRateState {
  int64_t requests = 0;
  int64_t tokens = 0;
};

enum class RateDenial { kNone = 0, kRequests = 1, kTokens = 2 };

struct LedgerReserve {
  int denied = -1;                  // index of the first check without room; -1 = allowed
  std::vector<LedgerState> states;  // per check, before the hold
  RateDenial rate_denied = RateDenial::kNone;
  LedgerRateState rate;             // the minute's counts, before this request
};

// Spend and holds per window, shared by every replica of the usage service (Redis) or
// kept in this process (memory). Every call is atomic.
class BudgetLedger {
 public:
  virtual ~BudgetLedger() = default;

  // When every check with a limit has spent + held < limit, holds `amount` on each of them
  // under `reservation_id` until `expires_ms` (the hold then lapses by itself). A later
  // Apply naming `request_id` among the arrived requests releases it.
  // With `rate`, the request must also fit the minute's limits: fewer than max_requests
  // requests so far, and tokens so far + rate->tokens <= max_tokens (a request alone in its
  // minute always fits); it then counts in the minute. Refused by either: nothing changes.
  virtual absl::StatusOr<LedgerReserve> Reserve(const std::vector<LedgerCheck>& checks,
                                                const LedgerRate* rate,
                                                const std::string& reservation_id,
                                                const std::string& request_id, int64_t amount,
                                                int64_t now_ms, int64_t expires_ms) = 0;

  // Releases a reservation's holds (`release`), or replaces their amount (`amount` >= 0)
  // and expiry. Returns whether the reservation was known.
  virtual absl::StatusOr<bool> Settle(const std::string& reservation_id, int64_t amount,
                                      bool release, int64_t now_ms, int64_t expires_ms) = 0;

  // Adds spend to windows and releases the reservations of the requests whose records
  // arrived.
  virtual absl::Status Apply(const std::vector<std::pair<WindowRef, int64_t>>& deltas,
                             const std::vector<std::string>& arrived_request_ids,
                             int64_t now_ms) = 0;

  virtual absl::StatusOr<std::vector<LedgerState>> Read(const std::vector<WindowRef>& windows,
                                                        int64_t now_ms) = 0;

  // Initial spend of windows the ledger does not know yet (a window it knows keeps its
  // value: another replica keeps it current), or of every window when `overwrite`.
  virtual absl::Status Seed(const std::vector<std::pair<WindowRef, int64_t>>& spent,
                            bool overwrite) = 0;

  // Whether calls block on I/O (run them off event loops and gRPC threads).
  virtual bool blocking() const = 0;
};

std::unique_ptr<BudgetLedger> MakeMemoryLedger();

struct RedisLedgerOptions {
  std::chrono::milliseconds connect_timeout{500};
  std::chrono::milliseconds command_timeout{500};
  std::string prefix = "omni:usage:budget:";
};

// Keys "omni:usage:budget:<window>" (hash: s = spent, h = held; a rate window: r =
// requests, t = tokens) with a sorted set
// "<window>:h" of holds by expiry, "omni:usage:budget:res:<id>" per reservation and
// "omni:usage:budget:req:<request id>"; every update is one Lua script.
// INVALID_ARGUMENT for a malformed URL; Redis being down is reported per call.
absl::StatusOr<std::unique_ptr<BudgetLedger>> MakeRedisLedger(const std::string& url,
                                                              RedisLedgerOptions options = {});

}  // namespace omniroute::usage
