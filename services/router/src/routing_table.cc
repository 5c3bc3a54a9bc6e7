#include "routing_table.h"

#include <algorithm>
#include <boost/json.hpp>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "common/status_macros.h"
#include "common/strings.h"

namespace omniroute::router {
namespace json = boost::json;

namespace {

template <typename T>
json::array ToJsonArray(const std::vector<T>& items) {
  json::array out;
  for (const auto& item : items) out.push_back(ToJson(item));
  return out;
}

json::object OverrideRoutingJson(const RoutingOverride& r) {
  json::object o;
  if (!r.strategy.empty()) o["strategy"] = r.strategy;
  if (r.sticky_limit > 0) o["sticky_limit"] = r.sticky_limit;
  return o;
}

json::value PerAuthJson(int64_t api_key, int64_t oauth) {
  return json::object{{"api_key", api_key}, {"oauth", oauth}};
}

// Parses each element of a JSON array with `parse(text)`.
template <typename T, typename Parse>
absl::Status ParseList(const json::object& root, std::string_view key, Parse parse,
                       std::vector<T>* out) {
  const json::value* v = root.if_contains(key);
  if (v == nullptr || v->is_null()) return absl::OkStatus();
  if (!v->is_array()) {
    return absl::InvalidArgumentError(absl::StrCat(AV(key), ": expected a list"));
  }
  for (const json::value& item : v->get_array()) {
    auto parsed = parse(json::serialize(item));
    if (!parsed.ok()) {
      return absl::InvalidArgumentError(absl::StrCat(AV(key), ": ", parsed.status().message()));
    }
    out->push_back(*std::move(parsed));
  }
  return absl::OkStatus();
}

// Specificity of a wildcard pattern: more literal characters first, then fewer wildcards.
std::pair<int, int> Specificity(std::string_view pattern) {
  int literal = 0;
  int wild = 0;
  for (char c : pattern) {
    if (c == '*' || c == '?') {
      ++wild;
    } else {
      ++literal;
    }
  }
  return {literal, wild};
}

bool HasWildcard(std::string_view s) { return s.find_first_of("*?") != std::string_view::npos; }

// Whether a connection serves `model` (the upstream model name, without a prefix).
bool ServesModel(const ConnectionSpec& connection, std::string_view model) {
  return connection.models.empty() || std::find(connection.models.begin(), connection.models.end(),
                                                model) != connection.models.end();
}

}  // namespace

json::object ToJson(const ComboSpec& c) {
  json::object o{{"name", c.name}};
  if (!c.strategy.empty()) o["strategy"] = c.strategy;
  if (c.sticky_limit > 0) o["sticky_limit"] = c.sticky_limit;
  json::object routing = OverrideRoutingJson(c.routing);
  if (!routing.empty()) o["routing"] = std::move(routing);
  json::array models;
  for (const auto& m : c.models) {
    if (m.weight == 1 && m.cost < 0) {
      models.push_back(json::value(m.model));
      continue;
    }
    json::object mo{{"model", m.model}, {"weight", m.weight}};
    if (m.cost >= 0) mo["cost"] = m.cost;
    models.push_back(std::move(mo));
  }
  o["models"] = std::move(models);
  return o;
}

json::object ToJson(const AliasSpec& a) { return {{"pattern", a.pattern}, {"target", a.target}}; }

json::object ToJson(const FallbackChainSpec& f) {
  json::array models;
  for (const auto& m : f.models) models.push_back(json::value(m));
  return {{"name", f.name}, {"models", std::move(models)}};
}

json::object ToJson(const ProviderOverride& p) {
  json::object o{{"id", p.id}};
  json::object routing = OverrideRoutingJson(p.routing);
  if (!routing.empty()) o["routing"] = std::move(routing);
  json::object queue;
  if (p.rpm >= 0) queue["rpm"] = p.rpm;
  if (p.min_gap_ms >= 0) queue["min_gap_ms"] = p.min_gap_ms;
  if (p.max_concurrent >= 0) queue["max_concurrent"] = p.max_concurrent;
  if (!queue.empty()) o["queue"] = std::move(queue);
  return o;
}

json::object ToJson(const RoutingSettings& r) {
  return {{"strategy", r.strategy},
          {"sticky_limit", r.sticky_limit},
          {"session_ttl_s", r.session_ttl_s},
          {"combo_strategy", r.combo_strategy},
          {"max_candidates", r.max_candidates}};
}

json::object ToJson(const ResilienceConfig& r) {
  return {
      {"cooldown",
       json::object{{"base_ms", PerAuthJson(r.cooldown.base_ms.api_key, r.cooldown.base_ms.oauth)},
                    {"max_ms", r.cooldown.max_ms},
                    {"max_backoff_steps", PerAuthJson(r.cooldown.max_backoff_steps.api_key,
                                                      r.cooldown.max_backoff_steps.oauth)},
                    {"use_upstream_retry_hints", r.cooldown.use_upstream_retry_hints}}},
      {"lockout", json::object{{"base_ms", r.lockout.base_ms}, {"max_ms", r.lockout.max_ms}}},
      {"breaker",
       json::object{{"failure_threshold", PerAuthJson(r.breaker.failure_threshold.api_key,
                                                      r.breaker.failure_threshold.oauth)},
                    {"reset_timeout_ms", PerAuthJson(r.breaker.reset_timeout_ms.api_key,
                                                     r.breaker.reset_timeout_ms.oauth)},
                    {"max_reset_multiplier", r.breaker.max_reset_multiplier}}},
      {"queue", json::object{{"rpm", r.queue.rpm},
                             {"min_gap_ms", r.queue.min_gap_ms},
                             {"max_concurrent", r.queue.max_concurrent},
                             {"lease_ttl_ms", r.queue.lease_ttl_ms}}},
      {"wait_for_cooldown", json::object{{"enabled", r.wait_for_cooldown.enabled},
                                         {"max_wait_ms", r.wait_for_cooldown.max_wait_ms},
                                         {"max_retries", r.wait_for_cooldown.max_retries}}},
  };
}

void MergeJson(json::object& base, const json::object& patch) {
  for (const auto& kv : patch) {
    json::value* existing = base.if_contains(kv.key());
    if (existing != nullptr && existing->is_object() && kv.value().is_object()) {
      MergeJson(existing->get_object(), kv.value().get_object());
    } else {
      base[kv.key()] = kv.value();
    }
  }
}

std::string SerializeRuntime(const RuntimeRouting& r) {
  json::object root{{"version", r.version},
                    {"routing", r.routing_patch},
                    {"resilience", r.resilience_patch},
                    {"providers", ToJsonArray(r.providers)},
                    {"combos", ToJsonArray(r.combos)},
                    {"aliases", ToJsonArray(r.aliases)},
                    {"fallback_chains", ToJsonArray(r.fallback_chains)}};
  return json::serialize(root);
}

absl::StatusOr<RuntimeRouting> ParseRuntime(std::string_view text) {
  json::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec || !v.is_object()) return absl::InvalidArgumentError("runtime routing: invalid JSON");
  const json::object& root = v.get_object();
  RuntimeRouting out;
  if (const json::value* ver = root.if_contains("version"); ver && ver->is_number()) {
    out.version = ver->to_number<int64_t>();
  }
  if (const json::value* p = root.if_contains("routing"); p && p->is_object()) {
    out.routing_patch = p->get_object();
  }
  if (const json::value* p = root.if_contains("resilience"); p && p->is_object()) {
    out.resilience_patch = p->get_object();
  }
  RETURN_IF_ERROR(ParseList(root, "providers", ParseProviderOverride, &out.providers));
  RETURN_IF_ERROR(ParseList(root, "combos", ParseComboSpec, &out.combos));
  RETURN_IF_ERROR(ParseList(root, "aliases", ParseAliasSpec, &out.aliases));
  RETURN_IF_ERROR(ParseList(root, "fallback_chains", ParseFallbackChainSpec, &out.fallback_chains));
  return out;
}

absl::StatusOr<std::shared_ptr<const RoutingTable>> RoutingTable::Build(
    ConfigPtr file, std::shared_ptr<const ProviderRegistry> registry, const RuntimeRouting& runtime,
    const std::vector<std::string>& blocked_providers) {
  auto t = std::make_shared<RoutingTable>();
  t->file_ = file;
  t->registry_ = registry;
  t->routing_ = file->routing;
  t->resilience_ = file->resilience;
  if (!runtime.routing_patch.empty()) {
    RETURN_IF_ERROR(ApplyRoutingPatch(json::serialize(runtime.routing_patch), &t->routing_));
  }
  if (!runtime.resilience_patch.empty()) {
    RETURN_IF_ERROR(
        ApplyResiliencePatch(json::serialize(runtime.resilience_patch), &t->resilience_));
  }
  for (const auto& c : file->combos) t->combos_.push_back({c, Origin::kFile});
  for (const auto& c : runtime.combos) {
    if (!t->FindCombo(c.name)) t->combos_.push_back({c, Origin::kApi});
  }
  for (const auto& a : file->aliases) t->aliases_.push_back({a, Origin::kFile});
  for (const auto& a : runtime.aliases) {
    const bool taken = std::any_of(t->aliases_.begin(), t->aliases_.end(), [&](const auto& e) {
      return absl::AsciiStrToLower(e.spec.pattern) == absl::AsciiStrToLower(a.pattern);
    });
    if (!taken) t->aliases_.push_back({a, Origin::kApi});
  }
  for (const auto& f : file->fallback_chains) t->chains_.push_back({f, Origin::kFile});
  for (const auto& f : runtime.fallback_chains) {
    if (!t->FindChain(f.name)) t->chains_.push_back({f, Origin::kApi});
  }
  for (ProviderOverride o : file->provider_overrides) {
    if (const ProviderSpec* p = registry->Find(o.id)) o.id = p->id;
    t->overrides_.push_back({o, Origin::kFile});
  }
  for (ProviderOverride o : runtime.providers) {
    if (const ProviderSpec* p = registry->Find(o.id)) o.id = p->id;
    const bool taken = std::any_of(t->overrides_.begin(), t->overrides_.end(),
                                   [&](const auto& e) { return e.spec.id == o.id; });
    if (!taken) t->overrides_.push_back({o, Origin::kApi});
  }
  for (const auto& e : t->aliases_) {
    t->wildcard_aliases_.push_back(&e.spec);
  }
  std::stable_sort(t->wildcard_aliases_.begin(), t->wildcard_aliases_.end(),
                   [](const AliasSpec* a, const AliasSpec* b) {
                     auto [la, wa] = Specificity(a->pattern);
                     auto [lb, wb] = Specificity(b->pattern);
                     if (la != lb) return la > lb;
                     return wa < wb;
                   });
  for (const auto& c : file->connections) {
    if (!c.enabled) continue;
    const ProviderSpec* p = registry->Find(c.provider);
    if (p) t->by_provider_[p->id].push_back(&c);
  }
  for (const std::string& b : blocked_providers) {
    const ProviderSpec* p = registry->Find(b);
    std::string id = p ? p->id : b;
    if (std::find(t->blocked_.begin(), t->blocked_.end(), id) == t->blocked_.end()) {
      t->blocked_.push_back(std::move(id));
    }
  }
  for (auto& [id, list] : t->by_provider_) {
    std::stable_sort(
        list.begin(), list.end(),
        [](const ConnectionSpec* a, const ConnectionSpec* b) { return a->priority < b->priority; });
  }
  return std::shared_ptr<const RoutingTable>(std::move(t));
}

const ComboSpec* RoutingTable::FindCombo(std::string_view name) const {
  for (const auto& e : combos_) {
    if (e.spec.name == name) return &e.spec;
  }
  return nullptr;
}

const FallbackChainSpec* RoutingTable::FindChain(std::string_view name) const {
  for (const auto& e : chains_) {
    if (e.spec.name == name) return &e.spec;
  }
  return nullptr;
}

const AliasSpec* RoutingTable::MatchAlias(std::string_view model) const {
  for (const auto& e : aliases_) {
    if (!HasWildcard(e.spec.pattern) && e.spec.pattern == model) return &e.spec;
  }
  for (const AliasSpec* a : wildcard_aliases_) {
    if (GlobMatch(a->pattern, model)) return a;
  }
  return nullptr;
}

const std::vector<const ConnectionSpec*>& RoutingTable::Connections(
    const std::string& provider) const {
  static const std::vector<const ConnectionSpec*> kNone;
  auto it = by_provider_.find(provider);
  return it == by_provider_.end() ? kNone : it->second;
}

std::vector<const ConnectionSpec*> RoutingTable::Connections(const std::string& provider,
                                                             std::string_view model) const {
  std::vector<const ConnectionSpec*> out;
  for (const ConnectionSpec* c : Connections(provider)) {
    if (ServesModel(*c, model)) out.push_back(c);
  }
  return out;
}

std::vector<std::string> RoutingTable::ServedModels(const ProviderSpec& provider) const {
  const auto& conns = Connections(provider.id);
  std::vector<std::string> out;
  if (std::any_of(conns.begin(), conns.end(),
                  [](const ConnectionSpec* c) { return c->models.empty(); })) {
    out = provider.models;
  }
  for (const ConnectionSpec* c : conns) {
    for (const auto& m : c->models) {
      if (std::find(out.begin(), out.end(), m) == out.end()) out.push_back(m);
    }
  }
  return out;
}

bool RoutingTable::Serves(const ProviderSpec& provider, std::string_view model) const {
  for (const ConnectionSpec* c : Connections(provider.id)) {
    const auto& models = c->models.empty() ? provider.models : c->models;
    if (std::find(models.begin(), models.end(), model) != models.end()) return true;
  }
  return false;
}

bool RoutingTable::Blocked(std::string_view provider) const {
  return std::find(blocked_.begin(), blocked_.end(), provider) != blocked_.end();
}

std::vector<std::string> RoutingTable::ConnectedProviders() const {
  std::vector<std::string> out;
  for (const auto& [id, list] : by_provider_) {
    if (!list.empty()) out.push_back(id);
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> RoutingTable::ConnectionIds() const {
  std::vector<std::string> out;
  for (const auto& [id, list] : by_provider_) {
    for (const auto* c : list) out.push_back(c->id);
  }
  std::sort(out.begin(), out.end());
  return out;
}

const ConnectionSpec* RoutingTable::FindConnection(const std::string& id) const {
  for (const auto& [provider, list] : by_provider_) {
    for (const auto* c : list) {
      if (c->id == id) return c;
    }
  }
  return nullptr;
}

RoutingOverride RoutingTable::ProviderRouting(const std::string& provider) const {
  for (const auto& e : overrides_) {
    if (e.spec.id == provider) return e.spec.routing;
  }
  return {};
}

PacingPolicy RoutingTable::Pacing(const std::string& provider) const {
  PacingPolicy p;
  p.rpm = resilience_.queue.rpm;
  p.min_gap_ms = resilience_.queue.min_gap_ms;
  p.max_concurrent = resilience_.queue.max_concurrent;
  p.lease_ttl_ms = resilience_.queue.lease_ttl_ms;
  for (const auto& e : overrides_) {
    if (e.spec.id != provider) continue;
    if (e.spec.rpm >= 0) p.rpm = e.spec.rpm;
    if (e.spec.min_gap_ms >= 0) p.min_gap_ms = e.spec.min_gap_ms;
    if (e.spec.max_concurrent >= 0) p.max_concurrent = e.spec.max_concurrent;
  }
  return p;
}

CooldownPolicy RoutingTable::Cooldown(bool oauth) const {
  CooldownPolicy p;
  p.base_ms = resilience_.cooldown.base_ms.For(oauth);
  p.max_ms = resilience_.cooldown.max_ms;
  p.max_steps = resilience_.cooldown.max_backoff_steps.For(oauth);
  return p;
}

CooldownPolicy RoutingTable::Lockout() const {
  CooldownPolicy p;
  p.base_ms = resilience_.lockout.base_ms;
  p.max_ms = resilience_.lockout.max_ms;
  p.max_steps = 30;
  return p;
}

BreakerPolicy RoutingTable::Breaker(bool oauth) const {
  BreakerPolicy p;
  p.failure_threshold = resilience_.breaker.failure_threshold.For(oauth);
  p.reset_timeout_ms = resilience_.breaker.reset_timeout_ms.For(oauth);
  p.max_reset_multiplier = resilience_.breaker.max_reset_multiplier;
  return p;
}

}  // namespace omniroute::router
