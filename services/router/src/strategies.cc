#include "strategies.h"

#include <algorithm>
#include <numeric>

namespace omniroute::router {
namespace {

std::vector<size_t> Identity(size_t n) {
  std::vector<size_t> out(n);
  std::iota(out.begin(), out.end(), 0);
  return out;
}

std::vector<size_t> Rotation(size_t n, int sticky_limit, int64_t rr_counter) {
  std::vector<size_t> out = Identity(n);
  if (n == 0) return out;
  const int64_t sticky = std::max(sticky_limit, 1);
  const int64_t turn = std::max<int64_t>(rr_counter - 1, 0) / sticky;
  std::rotate(out.begin(), out.begin() + static_cast<int64_t>(turn % static_cast<int64_t>(n)),
              out.end());
  return out;
}

// Fisher-Yates.
void Shuffle(std::vector<size_t>& v, const Random& random) {
  for (size_t i = v.size(); i > 1; --i) {
    const size_t j = static_cast<size_t>(random() % i);
    std::swap(v[i - 1], v[j]);
  }
}

}  // namespace

std::vector<size_t> OrderAccounts(std::string_view strategy,
                                  const std::vector<AccountChoice>& eligible, int sticky_limit,
                                  int64_t rr_counter, int64_t now_ms, const Random& random) {
  const size_t n = eligible.size();
  std::vector<size_t> order = Identity(n);
  if (n <= 1) return order;
  if (strategy == "round-robin") return Rotation(n, sticky_limit, rr_counter);
  if (strategy == "random") {
    Shuffle(order, random);
    return order;
  }
  if (strategy == "least-used") {
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      return eligible[a].state.last_used_ms < eligible[b].state.last_used_ms;
    });
    return order;
  }
  if (strategy == "p2c") {
    const size_t a = static_cast<size_t>(random() % n);
    size_t b = static_cast<size_t>(random() % (n - 1));
    if (b >= a) ++b;
    // Healthier: fewer recent failures (backoff level), then the longer idle.
    const ConnectionState& sa = eligible[a].state;
    const ConnectionState& sb = eligible[b].state;
    bool a_first = a < b;  // ties: lower priority value
    if (sa.level != sb.level) {
      a_first = sa.level < sb.level;
    } else if (sa.last_used_ms != sb.last_used_ms) {
      a_first = sa.last_used_ms < sb.last_used_ms;
    }
    const size_t first = a_first ? a : b;
    const size_t second = a_first ? b : a;
    std::vector<size_t> out = {first, second};
    for (size_t i = 0; i < n; ++i) {
      if (i != first && i != second) out.push_back(i);
    }
    return out;
  }
  if (strategy == "fill-first") {
    // Subscriptions of equal priority: the one with more of its quota left first.
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      const ConnectionSpec& ca = *eligible[a].connection;
      const ConnectionSpec& cb = *eligible[b].connection;
      if (ca.priority != cb.priority) return ca.priority < cb.priority;
      return QuotaLeft(ca, now_ms) > QuotaLeft(cb, now_ms);
    });
    return order;
  }
  // cost-optimized: priority order (already sorted by priority value).
  return order;
}

std::vector<size_t> OrderComboModels(std::string_view strategy,
                                     const std::vector<ComboChoice>& models, int sticky_limit,
                                     int64_t rr_counter, const Random& random) {
  const size_t n = models.size();
  std::vector<size_t> order = Identity(n);
  if (n <= 1) return order;
  if (strategy == "round-robin") return Rotation(n, sticky_limit, rr_counter);
  if (strategy == "random") {
    Shuffle(order, random);
    return order;
  }
  if (strategy == "least-used") {
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return models[a].uses < models[b].uses; });
    return order;
  }
  if (strategy == "cost-optimized") {
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) {
      const bool ka = models[a].cost >= 0;
      const bool kb = models[b].cost >= 0;
      if (ka != kb) return ka;
      return ka && models[a].cost < models[b].cost;
    });
    return order;
  }
  if (strategy == "weighted") {
    std::vector<size_t> pool;
    std::vector<size_t> zero;
    for (size_t i = 0; i < n; ++i) (models[i].weight > 0 ? pool : zero).push_back(i);
    std::vector<size_t> out;
    while (!pool.empty()) {
      uint64_t total = 0;
      for (size_t i : pool) total += static_cast<uint64_t>(models[i].weight);
      uint64_t pick = random() % total;
      size_t k = 0;
      while (pick >= static_cast<uint64_t>(models[pool[k]].weight)) {
        pick -= static_cast<uint64_t>(models[pool[k]].weight);
        ++k;
      }
      out.push_back(pool[k]);
      pool.erase(pool.begin() + static_cast<int64_t>(k));
    }
    out.insert(out.end(), zero.begin(), zero.end());
    return out;
  }
  return order;  // priority
}

}  // namespace omniroute::router
