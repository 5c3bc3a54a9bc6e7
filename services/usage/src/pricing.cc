#include "pricing.h"

#include <algorithm>
#include <tuple>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/strings.h"

namespace omniroute::usage {

extern const char* const kPricingYaml;  // generated from data/pricing.yaml

namespace {

constexpr size_t kCacheLimit = 10000;

std::string Lower(std::string_view s) { return absl::AsciiStrToLower(AV(s)); }

// Ranks a pattern: no wildcard first, then more literal characters, then fewer wildcards.
std::tuple<int, int, int> Specificity(std::string_view pattern) {
  int wild = 0;
  for (char c : pattern) {
    if (c == '*' || c == '?') {
      ++wild;
    }
  }
  return {wild == 0 ? 1 : 0, static_cast<int>(pattern.size()) - wild, -wild};
}

}  // namespace

Price ResolvePrice(const v1::PricingEntry& e) {
  Price p;
  p.input = e.input();
  p.output = e.output();
  p.cached_input = e.has_cached_input() ? e.cached_input() : e.input();
  p.cache_creation = e.has_cache_creation() ? e.cache_creation() : e.input();
  p.reasoning = e.has_reasoning() ? e.reasoning() : e.output();
  return p;
}

double ComputeCost(const Price& price, const v1::UsageRecord& r) {
  const int64_t input = std::max<int64_t>(0, r.input_tokens());
  const int64_t cached = std::clamp<int64_t>(r.cached_tokens(), 0, input);
  const int64_t creation = std::clamp<int64_t>(r.cache_creation_tokens(), 0, input - cached);
  const int64_t uncached = input - cached - creation;
  const int64_t output = std::max<int64_t>(0, r.output_tokens());
  const int64_t reasoning = std::clamp<int64_t>(r.reasoning_tokens(), 0, output);
  const int64_t visible = output - reasoning;
  const double micro = static_cast<double>(uncached) * price.input +
                       static_cast<double>(cached) * price.cached_input +
                       static_cast<double>(creation) * price.cache_creation +
                       static_cast<double>(visible) * price.output +
                       static_cast<double>(reasoning) * price.reasoning;
  return micro / 1e6;
}

double EstimateCost(const Price& price, int64_t input_tokens, int64_t output_tokens) {
  return (static_cast<double>(std::max<int64_t>(0, input_tokens)) * price.input +
          static_cast<double>(std::max<int64_t>(0, output_tokens)) * price.output) /
         1e6;
}

v1::PricingEntry ToEntry(const PricingSpec& spec, std::string_view source) {
  v1::PricingEntry e;
  e.set_provider(spec.provider.empty() ? "*" : spec.provider);
  e.set_model(spec.model);
  e.set_input(spec.input);
  e.set_output(spec.output);
  if (spec.cached_input >= 0) {
    e.set_cached_input(spec.cached_input);
  }
  if (spec.cache_creation >= 0) {
    e.set_cache_creation(spec.cache_creation);
  }
  if (spec.reasoning >= 0) {
    e.set_reasoning(spec.reasoning);
  }
  e.set_source(std::string(source));
  return e;
}

absl::StatusOr<std::vector<v1::PricingEntry>> DefaultPricing() {
  absl::StatusOr<std::vector<PricingSpec>> specs = ParsePricingDocument(kPricingYaml);
  if (!specs.ok()) {
    return absl::InternalError(absl::StrCat("data/pricing.yaml: ", specs.status().message()));
  }
  std::vector<v1::PricingEntry> out;
  out.reserve(specs->size());
  for (const PricingSpec& s : *specs) {
    out.push_back(ToEntry(s, "default"));
  }
  return out;
}

PricingTable::PricingTable(const std::vector<ProviderSpec>& providers) {
  for (const ProviderSpec& p : providers) {
    aliases_[Lower(p.id)] = p.id;
    for (const std::string& prefix : p.prefixes) {
      aliases_.emplace(Lower(prefix), p.id);
    }
  }
}

std::string PricingTable::CanonicalProvider(std::string_view provider) const {
  if (provider.empty() || provider == "*") {
    return std::string(provider.empty() ? "*" : provider);
  }
  auto it = aliases_.find(Lower(provider));
  return it == aliases_.end() ? Lower(provider) : it->second;
}

PricingTable::Key PricingTable::KeyOf(const v1::PricingEntry& e) const {
  return {Lower(CanonicalProvider(e.provider())), Lower(e.model())};
}

void PricingTable::SetDefaults(std::vector<v1::PricingEntry> entries) {
  std::lock_guard<std::mutex> lock(mu_);
  defaults_.clear();
  for (v1::PricingEntry& e : entries) {
    e.set_provider(CanonicalProvider(e.provider()));
    defaults_[KeyOf(e)] = std::move(e);
  }
  Rebuild();
}

void PricingTable::SetConfig(std::vector<v1::PricingEntry> entries) {
  std::lock_guard<std::mutex> lock(mu_);
  config_.clear();
  for (v1::PricingEntry& e : entries) {
    e.set_provider(CanonicalProvider(e.provider()));
    e.set_source("config");
    config_[KeyOf(e)] = std::move(e);
  }
  Rebuild();
}

void PricingTable::SetRuntime(std::vector<v1::PricingEntry> entries) {
  std::lock_guard<std::mutex> lock(mu_);
  runtime_.clear();
  for (v1::PricingEntry& e : entries) {
    e.set_provider(CanonicalProvider(e.provider()));
    e.set_source("api");
    runtime_[KeyOf(e)] = std::move(e);
  }
  Rebuild();
}

absl::StatusOr<v1::PricingEntry> PricingTable::Upsert(v1::PricingEntry entry, int64_t now_ms) {
  if (entry.model().empty()) {
    return absl::InvalidArgumentError("pricing entry: model is required");
  }
  if (entry.provider().empty()) {
    entry.set_provider("*");
  }
  for (double v : {entry.input(), entry.output(), entry.cached_input(), entry.cache_creation(),
                   entry.reasoning()}) {
    if (!(v >= 0) || v > 1e6) {
      return absl::InvalidArgumentError("pricing entry: prices must be between 0 and 1000000");
    }
  }
  entry.set_provider(CanonicalProvider(entry.provider()));
  entry.set_source("api");
  entry.set_updated_ms(now_ms);
  std::lock_guard<std::mutex> lock(mu_);
  const Key key = KeyOf(entry);
  if (config_.count(key)) {
    return absl::FailedPreconditionError(
        absl::StrCat("pricing entry ", entry.provider(), "/", entry.model(),
                     " is managed by the config file; edit the file instead"));
  }
  runtime_[key] = entry;
  Rebuild();
  return entry;
}

absl::Status PricingTable::Remove(std::string_view provider, std::string_view model) {
  v1::PricingEntry probe;
  probe.set_provider(provider.empty() ? "*" : std::string(provider));
  probe.set_model(std::string(model));
  std::lock_guard<std::mutex> lock(mu_);
  const Key key = KeyOf(probe);
  if (config_.count(key)) {
    return absl::FailedPreconditionError(
        absl::StrCat("pricing entry ", AV(provider), "/", AV(model),
                     " is managed by the config file; edit the file instead"));
  }
  if (runtime_.erase(key) == 0) {
    return absl::NotFoundError(absl::StrCat(
        "no runtime pricing entry ", AV(provider), "/", AV(model),
        defaults_.count(key) ? " (built-in entries cannot be deleted; override them)" : ""));
  }
  Rebuild();
  return absl::OkStatus();
}

void PricingTable::Rebuild() {
  std::map<Key, v1::PricingEntry> all = defaults_;
  for (const auto& [k, e] : runtime_) {
    all[k] = e;
  }
  for (const auto& [k, e] : config_) {
    all[k] = e;
  }
  effective_.clear();
  effective_.reserve(all.size());
  for (auto& [k, e] : all) {
    effective_.push_back(std::move(e));
  }
  cache_.clear();
}

std::vector<v1::PricingEntry> PricingTable::List() const {
  std::lock_guard<std::mutex> lock(mu_);
  return effective_;
}

std::pair<std::string, std::string> PricingTable::SplitModel(std::string_view model) const {
  const size_t slash = model.find('/');
  if (slash != std::string_view::npos && slash > 0) {
    auto it = aliases_.find(Lower(model.substr(0, slash)));
    if (it != aliases_.end()) {
      return {it->second, std::string(model.substr(slash + 1))};
    }
  }
  return {"", std::string(model)};
}

std::optional<Price> PricingTable::Find(std::string_view provider, std::string_view model) const {
  const std::string canonical = provider.empty() ? std::string() : CanonicalProvider(provider);
  const std::string cache_key = absl::StrCat(canonical, "\n", AV(model));
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = cache_.find(cache_key); it != cache_.end()) {
    return it->second;
  }
  std::string_view bare = model;
  if (const size_t slash = model.rfind('/'); slash != std::string_view::npos) {
    bare = model.substr(slash + 1);
  }
  const v1::PricingEntry* best = nullptr;
  std::tuple<int, int, int, int> best_rank{-1, 0, 0, 0};
  for (const v1::PricingEntry& e : effective_) {
    int provider_rank = 0;
    if (e.provider() == "*") {
      provider_rank = 0;
    } else if (!canonical.empty() && absl::EqualsIgnoreCase(e.provider(), canonical)) {
      provider_rank = 1;
    } else {
      continue;
    }
    if (!GlobMatch(e.model(), model) && (bare == model || !GlobMatch(e.model(), bare))) {
      continue;
    }
    const auto [exact, literal, wild] = Specificity(e.model());
    const std::tuple<int, int, int, int> rank{provider_rank, exact, literal, wild};
    if (best == nullptr || rank > best_rank) {
      best = &e;
      best_rank = rank;
    }
  }
  std::optional<Price> out;
  if (best != nullptr) {
    out = ResolvePrice(*best);
  }
  if (cache_.size() >= kCacheLimit) {
    cache_.clear();
  }
  cache_.emplace(cache_key, out);
  return out;
}

}  // namespace omniroute::usage
