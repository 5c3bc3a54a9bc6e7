#pragma once

#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>

#include "common/config.h"
#include "state_store.h"

namespace omniroute::router {

// A source of uniformly distributed 64-bit values; injectable for tests.
using Random = std::function<uint64_t()>;

// A connection a plan may use, with what the store knows of it.
struct AccountChoice {
  const ConnectionSpec* connection;
  ConnectionState state;
};

// A connection whose provider reported its quota spent (0.5 % or less left) until a reset
// still ahead: no candidate until then.
inline bool QuotaExhausted(const ConnectionSpec& c, int64_t now_ms) {
  return c.quota_remaining_percent >= 0 && c.quota_remaining_percent <= 0.5 &&
         c.quota_resets_at_ms > now_ms;
}

// The percent of quota left on a connection as far as is known: 100 when its provider
// reported none, or when the window that limited it has reset since.
inline double QuotaLeft(const ConnectionSpec& c, int64_t now_ms) {
  if (c.quota_remaining_percent < 0) return 100;
  if (c.quota_resets_at_ms > 0 && c.quota_resets_at_ms <= now_ms) return 100;
  return c.quota_remaining_percent;
}

// The order in which to try `eligible` (given by priority) under an account strategy, as
// indices into it:
//   fill-first   priority order; among equal priorities, more quota left first (QuotaLeft)
//   cost-optimized  priority order (lowest priority value first)
//   round-robin  rotation starting at ((rr_counter - 1) / sticky_limit) mod n, so that each
//                account serves sticky_limit consecutive requests in turn
//   p2c          two random accounts, the healthier (lower backoff level, then the longer
//                idle, then priority) first; the rest by priority
//   random       a shuffle
//   least-used   oldest last use first (never used first), ties by priority
std::vector<size_t> OrderAccounts(std::string_view strategy,
                                  const std::vector<AccountChoice>& eligible, int sticky_limit,
                                  int64_t rr_counter, int64_t now_ms, const Random& random);

// A model of a combo as its strategy sees it.
struct ComboChoice {
  int weight = 1;
  double cost = -1;  // < 0 = unknown
  int64_t uses = 0;  // recent requests (least-used)
};

// The order in which to try the models of a combo, as indices:
//   priority        configured order
//   round-robin     rotation starting at ((rr_counter - 1) / sticky_limit) mod n
//   random          a shuffle
//   weighted        drawn one by one with probability proportional to weight; weight-0
//                   models last, in configured order
//   least-used      fewest recent requests first, ties in configured order
//   cost-optimized  lowest `cost` first; models without a cost after those with one, in
//                   configured order (no pricing table yet: with no cost at all this is
//                   priority order)
std::vector<size_t> OrderComboModels(std::string_view strategy,
                                     const std::vector<ComboChoice>& models, int sticky_limit,
                                     int64_t rr_counter, const Random& random);

// Whether an account or combo strategy orders by the table and the stored cooldowns alone:
// no counter, no last use, no chance, so that the same table and state give the same order
// (a plan made with such strategies only may be cached, see RoutePlan.cache_ms).
inline bool DeterministicAccountStrategy(std::string_view strategy) {
  return strategy == "fill-first" || strategy == "cost-optimized";
}
inline bool DeterministicComboStrategy(std::string_view strategy) {
  return strategy == "priority" || strategy == "cost-optimized";
}

// Whether a strategy needs the shared round-robin counter.
inline bool UsesRoundRobinCounter(std::string_view strategy) { return strategy == "round-robin"; }

}  // namespace omniroute::router
