#pragma once

#include "common/strings.h"

#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "common/config.h"
#include "omniroute/usage/v1/usage.pb.h"

namespace omniroute::usage {

// Resolved prices, USD per 1M tokens (inherited prices already filled in).
struct Price {
  double input = 0;
  double output = 0;
  double cached_input = 0;
  double cache_creation = 0;
  double reasoning = 0;
};

// The price of an entry, with cached_input / cache_creation defaulting to the input price
// and reasoning to the output price.
Price ResolvePrice(const v1::PricingEntry& entry);

// Cost in USD of a record's tokens, cache-aware. Token counts follow OpenAI's counting
// (input includes cache reads and cache creation; output includes reasoning):
//   (input - cached - cache_creation) × input + cached × cached_input
//   + cache_creation × cache_creation + (output - reasoning) × output
//   + reasoning × reasoning
// with each part clamped so that no token is counted twice or negatively.
double ComputeCost(const Price& price, const v1::UsageRecord& record);

// Cost in USD of `input_tokens` uncached input and `output_tokens` output.
double EstimateCost(const Price& price, int64_t input_tokens, int64_t output_tokens);


v1::PricingEntry ToEntry(const PricingSpec& spec, std::string_view source);

// The built-in table (data/pricing.yaml, compiled in).
absl::StatusOr<std::vector<v1::PricingEntry>> DefaultPricing();

// The pricing table: default entries, entries of the config file (read-only at run time)
// and entries set through the admin API (persisted by the owner). Thread-safe.
class PricingTable {
 public:
  // `providers` maps model prefixes to canonical provider ids (entries and look-ups may use
  // either).
  explicit PricingTable(const std::vector<ProviderSpec>& providers = {});

  void SetDefaults(std::vector<v1::PricingEntry> entries);
  void SetConfig(std::vector<v1::PricingEntry> entries);
  void SetRuntime(std::vector<v1::PricingEntry> entries);

  // Adds or replaces a runtime entry; FAILED_PRECONDITION when the config file owns it,
  // INVALID_ARGUMENT for a malformed entry. Returns the stored entry.
  absl::StatusOr<v1::PricingEntry> Upsert(v1::PricingEntry entry, int64_t now_ms);
  // Removes a runtime entry.
  absl::Status Remove(std::string_view provider, std::string_view model);

  // Every effective entry (runtime/config entries hide the default with the same key).
  std::vector<v1::PricingEntry> List() const;

  // The price of `model` served by `provider` (id or prefix; empty = unknown). The model
  // is also tried without an "owner/" part ("anthropic/claude-x" → "claude-x").
  std::optional<Price> Find(std::string_view provider, std::string_view model) const;

  // For a requested model string "prefix/model": the provider of a known prefix and the
  // rest; otherwise ("", model).
  std::pair<std::string, std::string> SplitModel(std::string_view model) const;

  std::string CanonicalProvider(std::string_view provider) const;

 private:
  using Key = std::pair<std::string, std::string>;  // lower-case (provider, model)
  Key KeyOf(const v1::PricingEntry& e) const;
  void Rebuild();  // mu_ held

  std::map<std::string, std::string> aliases_;  // lower-case prefix or id → id
  mutable std::mutex mu_;
  std::map<Key, v1::PricingEntry> defaults_;
  std::map<Key, v1::PricingEntry> config_;
  std::map<Key, v1::PricingEntry> runtime_;
  std::vector<v1::PricingEntry> effective_;
  mutable std::unordered_map<std::string, std::optional<Price>> cache_;
};

}  // namespace omniroute::usage
