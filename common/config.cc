#include "common/config.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/secrets.h"
#include "common/status_macros.h"

namespace omniroute {

extern const char* const kProvidersYaml;  // generated from data/providers.yaml

namespace {

namespace fs = std::filesystem;

// Walks a YAML node strictly: every key read is remembered and the rest are errors.
class Reader {
 public:
  Reader(const YAML::Node& node, std::string path) : node_(node), path_(std::move(path)) {}

  absl::Status CheckMap() const {
    if (node_ && !node_.IsNull() && !node_.IsMap()) {
      return absl::InvalidArgumentError(absl::StrCat(Where(), ": expected a mapping"));
    }
    return absl::OkStatus();
  }

  // Fails on keys that were never asked for.
  absl::Status Finish() const {
    if (!node_ || !node_.IsMap()) return absl::OkStatus();
    for (const auto& kv : node_) {
      const std::string key = kv.first.as<std::string>();
      if (!known_.count(key)) {
        return absl::InvalidArgumentError(absl::StrCat(Child(key), ": unknown key"));
      }
    }
    return absl::OkStatus();
  }

  YAML::Node Get(const std::string& key) {
    known_.insert(key);
    if (!node_ || !node_.IsMap()) return YAML::Node();
    return node_[key];
  }

  std::string Child(const std::string& key) const {
    return path_.empty() ? key : absl::StrCat(path_, ".", key);
  }

  absl::Status String(const std::string& key, std::string* out, bool required = false) {
    YAML::Node n = Get(key);
    if (!n || n.IsNull()) {
      return required ? absl::InvalidArgumentError(absl::StrCat(Child(key), ": required"))
                      : absl::OkStatus();
    }
    if (!n.IsScalar()) {
      return absl::InvalidArgumentError(absl::StrCat(Child(key), ": expected a string"));
    }
    *out = n.Scalar();
    return absl::OkStatus();
  }

  template <typename Int>
  absl::Status Integer(const std::string& key, Int* out, int64_t min, int64_t max) {
    YAML::Node n = Get(key);
    if (!n || n.IsNull()) return absl::OkStatus();
    int64_t v = 0;
    if (!n.IsScalar() || !YAML::convert<int64_t>::decode(n, v)) {
      return absl::InvalidArgumentError(absl::StrCat(Child(key), ": expected an integer"));
    }
    if (v < min || v > max) {
      return absl::InvalidArgumentError(
          absl::StrCat(Child(key), ": must be between ", min, " and ", max));
    }
    *out = static_cast<Int>(v);
    return absl::OkStatus();
  }

  // A per-auth-type value: a number sets both, {api_key, oauth} sets each.
  template <typename Int>
  absl::Status PerAuthInt(const std::string& key, PerAuth<Int>* out, int64_t min, int64_t max) {
    YAML::Node n = Get(key);
    if (!n || n.IsNull()) return absl::OkStatus();
    if (n.IsMap()) {
      Reader sub(n, Child(key));
      RETURN_IF_ERROR(sub.Integer("api_key", &out->api_key, min, max));
      RETURN_IF_ERROR(sub.Integer("oauth", &out->oauth, min, max));
      return sub.Finish();
    }
    Int v{};
    int64_t parsed = 0;
    if (!n.IsScalar() || !YAML::convert<int64_t>::decode(n, parsed)) {
      return absl::InvalidArgumentError(absl::StrCat(
          Child(key), ": expected an integer or a mapping {api_key: N, oauth: N}"));
    }
    if (parsed < min || parsed > max) {
      return absl::InvalidArgumentError(
          absl::StrCat(Child(key), ": must be between ", min, " and ", max));
    }
    v = static_cast<Int>(parsed);
    out->api_key = v;
    out->oauth = v;
    return absl::OkStatus();
  }

  absl::Status Double(const std::string& key, double* out, double min, double max) {
    YAML::Node n = Get(key);
    if (!n || n.IsNull()) return absl::OkStatus();
    double v = 0;
    if (!n.IsScalar() || !YAML::convert<double>::decode(n, v)) {
      return absl::InvalidArgumentError(absl::StrCat(Child(key), ": expected a number"));
    }
    if (v < min || v > max) {
      return absl::InvalidArgumentError(
          absl::StrCat(Child(key), ": must be between ", min, " and ", max));
    }
    *out = v;
    return absl::OkStatus();
  }

  absl::Status Bool(const std::string& key, bool* out) {
    YAML::Node n = Get(key);
    if (!n || n.IsNull()) return absl::OkStatus();
    bool v = false;
    if (!n.IsScalar() || !YAML::convert<bool>::decode(n, v)) {
      return absl::InvalidArgumentError(absl::StrCat(Child(key), ": expected true or false"));
    }
    *out = v;
    return absl::OkStatus();
  }

  absl::Status StringList(const std::string& key, std::vector<std::string>* out) {
    YAML::Node n = Get(key);
    if (!n || n.IsNull()) return absl::OkStatus();
    if (!n.IsSequence()) {
      return absl::InvalidArgumentError(absl::StrCat(Child(key), ": expected a list"));
    }
    out->clear();
    for (size_t i = 0; i < n.size(); ++i) {
      if (!n[i].IsScalar()) {
        return absl::InvalidArgumentError(
            absl::StrCat(Child(key), "[", i, "]: expected a string"));
      }
      out->push_back(n[i].Scalar());
    }
    return absl::OkStatus();
  }

  // Calls fn(Reader&) for each element of a list of mappings.
  template <typename Fn>
  absl::Status List(const std::string& key, Fn fn) {
    YAML::Node n = Get(key);
    if (!n || n.IsNull()) return absl::OkStatus();
    if (!n.IsSequence()) {
      return absl::InvalidArgumentError(absl::StrCat(Child(key), ": expected a list"));
    }
    for (size_t i = 0; i < n.size(); ++i) {
      Reader item(n[i], absl::StrCat(Child(key), "[", i, "]"));
      if (!n[i].IsMap()) {
        return absl::InvalidArgumentError(absl::StrCat(item.path_, ": expected a mapping"));
      }
      RETURN_IF_ERROR(fn(item));
      RETURN_IF_ERROR(item.Finish());
    }
    return absl::OkStatus();
  }

  // Calls fn(Reader&) on a nested mapping.
  template <typename Fn>
  absl::Status Map(const std::string& key, Fn fn) {
    Reader sub(Get(key), Child(key));
    RETURN_IF_ERROR(sub.CheckMap());
    RETURN_IF_ERROR(fn(sub));
    return sub.Finish();
  }

  const std::string& path() const { return path_; }

 private:
  std::string Where() const { return path_.empty() ? "<root>" : path_; }

  YAML::Node node_;
  std::string path_;
  std::set<std::string> known_;
};

std::string TrimSlash(std::string url) {
  while (!url.empty() && url.back() == '/') url.pop_back();
  return url;
}

absl::Status ValidBaseUrl(const std::string& path, const std::string& url) {
  if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ".base_url: must start with http:// or https://"));
  }
  return absl::OkStatus();
}

absl::Status ReadProvider(Reader& r, ProviderSpec* p, bool node) {
  RETURN_IF_ERROR(r.String("id", &p->id, true));
  RETURN_IF_ERROR(r.String("name", &p->name));
  if (p->name.empty()) p->name = p->id;
  std::string format = "openai";
  RETURN_IF_ERROR(r.String("format", &format));
  if (!ParseFormat(format, &p->format)) {
    return absl::InvalidArgumentError(absl::StrCat(
        r.Child("format"), ": must be one of openai, responses, anthropic, gemini"));
  }
  std::string auth;
  RETURN_IF_ERROR(r.String("auth", &auth));
  if (auth.empty()) {
    p->auth = p->format == common::v1::FORMAT_ANTHROPIC ? common::v1::AUTH_STYLE_X_API_KEY
              : p->format == common::v1::FORMAT_GEMINI  ? common::v1::AUTH_STYLE_GOOG_API_KEY
                                                        : common::v1::AUTH_STYLE_BEARER;
  } else if (!ParseAuthStyle(auth, &p->auth)) {
    return absl::InvalidArgumentError(absl::StrCat(
        r.Child("auth"), ": must be one of bearer, x-api-key, goog-api-key, none"));
  }
  RETURN_IF_ERROR(r.String("base_url", &p->base_url, true));
  RETURN_IF_ERROR(ValidBaseUrl(r.path(), p->base_url));
  p->base_url = TrimSlash(p->base_url);
  RETURN_IF_ERROR(r.StringList("models", &p->models));
  RETURN_IF_ERROR(r.StringList("prefixes", &p->prefixes));
  if (std::find(p->prefixes.begin(), p->prefixes.end(), p->id) == p->prefixes.end()) {
    p->prefixes.insert(p->prefixes.begin(), p->id);
  }
  if (!node) {
    std::string kind = "api_key";
    RETURN_IF_ERROR(r.String("kind", &kind));
    p->oauth = kind == "oauth";
  }
  p->custom = node;
  for (char c : p->id) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' &&
        c != '.') {
      return absl::InvalidArgumentError(
          absl::StrCat(r.Child("id"), ": only letters, digits, '-', '_' and '.' are allowed"));
    }
  }
  return absl::OkStatus();
}

std::string NormalizeStrategy(std::string s) {
  s = absl::AsciiStrToLower(s);
  std::replace(s.begin(), s.end(), '_', '-');
  if (s == "power-of-two-choices" || s == "power-of-two") return "p2c";
  return s;
}

absl::Status ReadStrategy(Reader& r, const std::string& key, std::string* out, bool combo) {
  std::string v;
  RETURN_IF_ERROR(r.String(key, &v));
  if (v.empty()) return absl::OkStatus();
  v = NormalizeStrategy(v);
  if (combo ? !IsComboStrategy(v) : !IsAccountStrategy(v)) {
    std::vector<std::string> names;
    if (combo) {
      for (const char* n : kComboStrategies) names.push_back(n);
    } else {
      for (const char* n : kAccountStrategies) names.push_back(n);
    }
    return absl::InvalidArgumentError(
        absl::StrCat(r.Child(key), ": must be one of ", absl::StrJoin(names, ", ")));
  }
  *out = std::move(v);
  return absl::OkStatus();
}

absl::Status ReadRoutingOverride(Reader& r, RoutingOverride* o) {
  RETURN_IF_ERROR(ReadStrategy(r, "strategy", &o->strategy, /*combo=*/false));
  RETURN_IF_ERROR(r.Integer("sticky_limit", &o->sticky_limit, 1, 1000000));
  return absl::OkStatus();
}

absl::Status ReadRoutingSettings(Reader& r, RoutingSettings* s) {
  RETURN_IF_ERROR(ReadStrategy(r, "strategy", &s->strategy, /*combo=*/false));
  RETURN_IF_ERROR(r.Integer("sticky_limit", &s->sticky_limit, 1, 1000000));
  RETURN_IF_ERROR(r.Integer("session_ttl_s", &s->session_ttl_s, 1, 30 * 86400));
  RETURN_IF_ERROR(ReadStrategy(r, "combo_strategy", &s->combo_strategy, /*combo=*/true));
  RETURN_IF_ERROR(r.Integer("max_candidates", &s->max_candidates, 1, 1000));
  return absl::OkStatus();
}

constexpr int64_t kDayMs = 86400000;

absl::Status ReadResilience(Reader& r, ResilienceConfig* c) {
  RETURN_IF_ERROR(r.Map("cooldown", [&](Reader& cd) -> absl::Status {
    RETURN_IF_ERROR(cd.PerAuthInt("base_ms", &c->cooldown.base_ms, 0, kDayMs));
    RETURN_IF_ERROR(cd.Integer("max_ms", &c->cooldown.max_ms, 0, kDayMs));
    RETURN_IF_ERROR(cd.PerAuthInt("max_backoff_steps", &c->cooldown.max_backoff_steps, 0, 30));
    RETURN_IF_ERROR(cd.Bool("use_upstream_retry_hints", &c->cooldown.use_upstream_retry_hints));
    return absl::OkStatus();
  }));
  RETURN_IF_ERROR(r.Map("lockout", [&](Reader& l) -> absl::Status {
    RETURN_IF_ERROR(l.Integer("base_ms", &c->lockout.base_ms, 0, kDayMs));
    RETURN_IF_ERROR(l.Integer("max_ms", &c->lockout.max_ms, 0, 7 * kDayMs));
    return absl::OkStatus();
  }));
  RETURN_IF_ERROR(r.Map("breaker", [&](Reader& b) -> absl::Status {
    RETURN_IF_ERROR(b.PerAuthInt("failure_threshold", &c->breaker.failure_threshold, 0, 1000000));
    RETURN_IF_ERROR(b.PerAuthInt("reset_timeout_ms", &c->breaker.reset_timeout_ms, 1, kDayMs));
    RETURN_IF_ERROR(b.Integer("max_reset_multiplier", &c->breaker.max_reset_multiplier, 1, 1024));
    return absl::OkStatus();
  }));
  RETURN_IF_ERROR(r.Map("queue", [&](Reader& q) -> absl::Status {
    RETURN_IF_ERROR(q.Integer("rpm", &c->queue.rpm, 0, 1000000));
    RETURN_IF_ERROR(q.Integer("min_gap_ms", &c->queue.min_gap_ms, 0, kDayMs));
    RETURN_IF_ERROR(q.Integer("max_concurrent", &c->queue.max_concurrent, 0, 1000000));
    RETURN_IF_ERROR(q.Integer("lease_ttl_ms", &c->queue.lease_ttl_ms, 1000, kDayMs));
    return absl::OkStatus();
  }));
  RETURN_IF_ERROR(r.Map("wait_for_cooldown", [&](Reader& w) -> absl::Status {
    RETURN_IF_ERROR(w.Bool("enabled", &c->wait_for_cooldown.enabled));
    RETURN_IF_ERROR(w.Integer("max_wait_ms", &c->wait_for_cooldown.max_wait_ms, 0, 600000));
    RETURN_IF_ERROR(w.Integer("max_retries", &c->wait_for_cooldown.max_retries, 0, 100));
    return absl::OkStatus();
  }));
  return absl::OkStatus();
}

// The routing/queue keys of a `providers:` entry or a node.
absl::Status ReadProviderOverrideKeys(Reader& r, ProviderOverride* o) {
  RETURN_IF_ERROR(r.Map("routing", [&](Reader& rt) { return ReadRoutingOverride(rt, &o->routing); }));
  RETURN_IF_ERROR(r.Map("queue", [&](Reader& q) -> absl::Status {
    RETURN_IF_ERROR(q.Integer("rpm", &o->rpm, 0, 1000000));
    RETURN_IF_ERROR(q.Integer("min_gap_ms", &o->min_gap_ms, 0, kDayMs));
    RETURN_IF_ERROR(q.Integer("max_concurrent", &o->max_concurrent, 0, 1000000));
    return absl::OkStatus();
  }));
  return absl::OkStatus();
}

bool HasOverride(const ProviderOverride& o) {
  return !o.routing.strategy.empty() || o.routing.sticky_limit > 0 || o.rpm >= 0 ||
         o.min_gap_ms >= 0 || o.max_concurrent >= 0;
}

absl::Status ValidName(const std::string& path, const std::string& name) {
  if (name.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": must not be empty"));
  if (name.size() > 200) return absl::InvalidArgumentError(absl::StrCat(path, ": too long"));
  for (unsigned char ch : name) {
    if (ch < 0x20 || ch == 0x7f) {
      return absl::InvalidArgumentError(absl::StrCat(path, ": control characters"));
    }
  }
  return absl::OkStatus();
}

absl::Status ReadCombo(Reader& r, ComboSpec* c) {
  RETURN_IF_ERROR(r.String("name", &c->name, true));
  RETURN_IF_ERROR(ValidName(r.Child("name"), c->name));
  RETURN_IF_ERROR(ReadStrategy(r, "strategy", &c->strategy, /*combo=*/true));
  RETURN_IF_ERROR(r.Integer("sticky_limit", &c->sticky_limit, 1, 1000000));
  RETURN_IF_ERROR(r.Map("routing", [&](Reader& rt) { return ReadRoutingOverride(rt, &c->routing); }));
  YAML::Node models = r.Get("models");
  const std::string path = r.Child("models");
  if (!models || !models.IsSequence() || models.size() == 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": a non-empty list is required"));
  }
  for (size_t i = 0; i < models.size(); ++i) {
    ComboModelSpec m;
    const std::string item = absl::StrCat(path, "[", i, "]");
    if (models[i].IsScalar()) {
      m.model = models[i].Scalar();
    } else if (models[i].IsMap()) {
      Reader mr(models[i], item);
      RETURN_IF_ERROR(mr.String("model", &m.model, true));
      RETURN_IF_ERROR(mr.Integer("weight", &m.weight, 0, 1000000));
      RETURN_IF_ERROR(mr.Double("cost", &m.cost, 0, 1e12));
      RETURN_IF_ERROR(mr.Finish());
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat(item, ": expected a model string or {model, weight, cost}"));
    }
    RETURN_IF_ERROR(ValidName(item, m.model));
    if (m.model == c->name) {
      return absl::InvalidArgumentError(absl::StrCat(item, ": a combo cannot contain itself"));
    }
    c->models.push_back(std::move(m));
  }
  return absl::OkStatus();
}

absl::Status ReadAlias(Reader& r, AliasSpec* a) {
  RETURN_IF_ERROR(r.String("pattern", &a->pattern, true));
  RETURN_IF_ERROR(r.String("target", &a->target, true));
  RETURN_IF_ERROR(ValidName(r.Child("pattern"), a->pattern));
  RETURN_IF_ERROR(ValidName(r.Child("target"), a->target));
  return absl::OkStatus();
}

absl::Status ReadChain(Reader& r, FallbackChainSpec* f) {
  RETURN_IF_ERROR(r.String("name", &f->name, true));
  RETURN_IF_ERROR(ValidName(r.Child("name"), f->name));
  RETURN_IF_ERROR(r.StringList("models", &f->models));
  if (f->models.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(r.Child("models"), ": a non-empty list is required"));
  }
  for (size_t i = 0; i < f->models.size(); ++i) {
    RETURN_IF_ERROR(ValidName(absl::StrCat(r.Child("models"), "[", i, "]"), f->models[i]));
  }
  return absl::OkStatus();
}

// Parses one mapping from YAML/JSON text with `fn(Reader&)`, strictly.
template <typename Fn>
absl::Status ParseOne(const std::string& text, Fn fn) {
  YAML::Node root;
  try {
    root = YAML::Load(text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("invalid JSON/YAML: ", e.what()));
  }
  if (!root || root.IsNull() || !root.IsMap()) {
    return absl::InvalidArgumentError("expected an object");
  }
  Reader r(root, "");
  RETURN_IF_ERROR(fn(r));
  return r.Finish();
}

// ---- Usage, pricing and budgets (the usage service) ----

absl::Status ReadPricing(Reader& r, PricingSpec* p) {
  RETURN_IF_ERROR(r.String("provider", &p->provider));
  RETURN_IF_ERROR(r.String("model", &p->model, true));
  if (p->provider.empty()) p->provider = "*";
  if (p->model.empty()) {
    return absl::InvalidArgumentError(absl::StrCat(r.Child("model"), ": required"));
  }
  constexpr double kMax = 1e6;
  RETURN_IF_ERROR(r.Double("input", &p->input, 0, kMax));
  RETURN_IF_ERROR(r.Double("output", &p->output, 0, kMax));
  RETURN_IF_ERROR(r.Double("cached_input", &p->cached_input, 0, kMax));
  RETURN_IF_ERROR(r.Double("cache_creation", &p->cache_creation, 0, kMax));
  RETURN_IF_ERROR(r.Double("reasoning", &p->reasoning, 0, kMax));
  return absl::OkStatus();
}

absl::Status ReadBudget(Reader& r, BudgetSpec* b) {
  std::string key;
  RETURN_IF_ERROR(r.String("key", &key));
  RETURN_IF_ERROR(r.String("key_id", &b->key_id));
  RETURN_IF_ERROR(r.String("team", &b->team));
  if (!key.empty()) {
    if (!b->key_id.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(r.path(), ": set key or key_id, not both"));
    }
    b->key_id = absl::StrCat("cfg:", key);
  }
  if (b->key_id.empty() == b->team.empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat(r.path(), ": set exactly one of key, key_id and team"));
  }
  constexpr double kMax = 1e12;
  RETURN_IF_ERROR(r.Double("daily", &b->daily_usd, 0, kMax));
  RETURN_IF_ERROR(r.Double("weekly", &b->weekly_usd, 0, kMax));
  RETURN_IF_ERROR(r.Double("monthly", &b->monthly_usd, 0, kMax));
  RETURN_IF_ERROR(r.Double("warn_at", &b->warn_at, 0, 1));
  return absl::OkStatus();
}

// "HH:MM" → ms after midnight.
absl::StatusOr<int64_t> ParseTimeOfDay(const std::string& path, const std::string& v) {
  int h = -1;
  int m = -1;
  char tail = 0;
  if (std::sscanf(v.c_str(), "%d:%d%c", &h, &m, &tail) != 2 || h < 0 || h > 23 || m < 0 ||
      m > 59) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": expected HH:MM (UTC), got '", v, "'"));
  }
  return (int64_t{h} * 60 + m) * 60000;
}

absl::Status ReadUsageSections(Reader& r, Config* c) {
  RETURN_IF_ERROR(r.Map("usage", [&](Reader& u) -> absl::Status {
    UsageSettings& s = c->usage;
    RETURN_IF_ERROR(u.String("budget_reset_utc", &s.budget_reset_utc));
    ASSIGN_OR_RETURN(s.budget_reset_offset_ms,
                     ParseTimeOfDay(u.Child("budget_reset_utc"), s.budget_reset_utc));
    RETURN_IF_ERROR(u.Double("budget_warn_at", &s.budget_warn_at, 0, 1));
    RETURN_IF_ERROR(u.Integer("default_max_output_tokens", &s.default_max_output_tokens, 1,
                              10000000));
    RETURN_IF_ERROR(u.Map("estimate_price", [&](Reader& p) -> absl::Status {
      RETURN_IF_ERROR(p.Double("input", &s.estimate_input_price, 0, 1e6));
      return p.Double("output", &s.estimate_output_price, 0, 1e6);
    }));
    RETURN_IF_ERROR(u.Integer("reservation_ttl_ms", &s.reservation_ttl_ms, 1000, 86400000));
    RETURN_IF_ERROR(u.Integer("settle_ttl_ms", &s.settle_ttl_ms, 1000, 86400000));
    RETURN_IF_ERROR(u.Bool("budget_fail_open", &s.budget_fail_open));
    RETURN_IF_ERROR(u.String("spool_dir", &s.spool_dir));
    RETURN_IF_ERROR(u.Integer("spool_max_bytes", &s.spool_max_bytes, int64_t{1} << 20,
                              int64_t{1} << 40));
    RETURN_IF_ERROR(u.Integer("metrics_top_keys", &s.metrics_top_keys, 0, 10000));
    return absl::OkStatus();
  }));
  RETURN_IF_ERROR(r.List("pricing", [&](Reader& n) -> absl::Status {
    PricingSpec p;
    RETURN_IF_ERROR(ReadPricing(n, &p));
    for (const auto& other : c->pricing) {
      if (absl::EqualsIgnoreCase(other.provider, p.provider) &&
          absl::EqualsIgnoreCase(other.model, p.model)) {
        return absl::InvalidArgumentError(absl::StrCat(n.Child("model"), ": duplicate entry '",
                                                       p.provider, "/", p.model, "'"));
      }
    }
    c->pricing.push_back(std::move(p));
    return absl::OkStatus();
  }));
  RETURN_IF_ERROR(r.List("budgets", [&](Reader& n) -> absl::Status {
    BudgetSpec b;
    RETURN_IF_ERROR(ReadBudget(n, &b));
    for (const auto& other : c->budgets) {
      if (other.key_id == b.key_id && other.team == b.team) {
        return absl::InvalidArgumentError(absl::StrCat(n.path(), ": duplicate budget"));
      }
    }
    c->budgets.push_back(std::move(b));
    return absl::OkStatus();
  }));
  return absl::OkStatus();
}

// ---- End of usage ----

const char* Env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

absl::StatusOr<bool> ParseBoolEnv(const char* name, const char* v) {
  std::string s = absl::AsciiStrToLower(v);
  if (s == "1" || s == "true" || s == "yes" || s == "on") return true;
  if (s == "0" || s == "false" || s == "no" || s == "off") return false;
  return absl::InvalidArgumentError(absl::StrCat(name, ": expected true or false, got '", v, "'"));
}

}  // namespace

absl::StatusOr<Config> ParseConfig(const std::string& yaml_text) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("invalid YAML: ", e.what()));
  }
  Config c;
  Reader r(root, "");
  RETURN_IF_ERROR(r.CheckMap());
  RETURN_IF_ERROR(r.Map("server", [&](Reader& s) -> absl::Status {
    RETURN_IF_ERROR(s.String("host", &c.server.host));
    RETURN_IF_ERROR(s.Integer("port", &c.server.port, 0, 65535));
    RETURN_IF_ERROR(s.Bool("require_api_key", &c.server.require_api_key));
    RETURN_IF_ERROR(s.Integer("threads", &c.server.threads, 0, 256));
    RETURN_IF_ERROR(s.Integer("body_limit_bytes", &c.server.body_limit_bytes, 1024,
                              int64_t{1} << 32));
    RETURN_IF_ERROR(s.Integer("upstream_connect_timeout_ms", &c.server.upstream_connect_timeout_ms,
                              1, 600000));
    RETURN_IF_ERROR(
        s.Integer("upstream_timeout_ms", &c.server.upstream_timeout_ms, 1, 3600000));
    RETURN_IF_ERROR(s.Integer("drain_timeout_ms", &c.server.drain_timeout_ms, 0, 3600000));
    return absl::OkStatus();
  }));
  RETURN_IF_ERROR(r.Map("services", [&](Reader& s) -> absl::Status {
    RETURN_IF_ERROR(s.String("router", &c.services.router));
    RETURN_IF_ERROR(s.String("translator", &c.services.translator));
    RETURN_IF_ERROR(s.String("accounts", &c.services.accounts));
    RETURN_IF_ERROR(s.String("usage", &c.services.usage));
    return absl::OkStatus();
  }));
  RETURN_IF_ERROR(r.Map("storage", [&](Reader& s) -> absl::Status {
    RETURN_IF_ERROR(s.String("sqlite_path", &c.storage.sqlite_path));
    RETURN_IF_ERROR(s.String("postgres_url", &c.storage.postgres_url));
    return absl::OkStatus();
  }));
  RETURN_IF_ERROR(r.Map("redis", [&](Reader& s) -> absl::Status {
    return s.String("url", &c.redis.url);
  }));
  RETURN_IF_ERROR(r.Map("routing", [&](Reader& s) { return ReadRoutingSettings(s, &c.routing); }));
  RETURN_IF_ERROR(
      r.Map("resilience", [&](Reader& s) { return ReadResilience(s, &c.resilience); }));
  RETURN_IF_ERROR(r.List("providers", [&](Reader& n) -> absl::Status {
    ProviderOverride o;
    RETURN_IF_ERROR(n.String("id", &o.id, true));
    RETURN_IF_ERROR(ReadProviderOverrideKeys(n, &o));
    RETURN_IF_ERROR(n.String("base_url", &o.base_url));
    if (!o.base_url.empty()) {
      RETURN_IF_ERROR(ValidBaseUrl(n.path(), o.base_url));
      o.base_url = TrimSlash(o.base_url);
    }
    for (const auto& other : c.provider_overrides) {
      if (other.id == o.id) {
        return absl::InvalidArgumentError(absl::StrCat(n.Child("id"), ": duplicate '", o.id, "'"));
      }
    }
    c.provider_overrides.push_back(std::move(o));
    return absl::OkStatus();
  }));
  RETURN_IF_ERROR(r.List("combos", [&](Reader& n) -> absl::Status {
    ComboSpec combo;
    RETURN_IF_ERROR(ReadCombo(n, &combo));
    for (const auto& other : c.combos) {
      if (other.name == combo.name) {
        return absl::InvalidArgumentError(
            absl::StrCat(n.Child("name"), ": duplicate combo '", combo.name, "'"));
      }
    }
    c.combos.push_back(std::move(combo));
    return absl::OkStatus();
  }));
  RETURN_IF_ERROR(r.List("aliases", [&](Reader& n) -> absl::Status {
    AliasSpec a;
    RETURN_IF_ERROR(ReadAlias(n, &a));
    for (const auto& other : c.aliases) {
      if (absl::EqualsIgnoreCase(other.pattern, a.pattern)) {
        return absl::InvalidArgumentError(
            absl::StrCat(n.Child("pattern"), ": duplicate alias '", a.pattern, "'"));
      }
    }
    c.aliases.push_back(std::move(a));
    return absl::OkStatus();
  }));
  RETURN_IF_ERROR(r.List("fallback_chains", [&](Reader& n) -> absl::Status {
    FallbackChainSpec f;
    RETURN_IF_ERROR(ReadChain(n, &f));
    for (const auto& other : c.fallback_chains) {
      if (other.name == f.name) {
        return absl::InvalidArgumentError(
            absl::StrCat(n.Child("name"), ": duplicate fallback chain '", f.name, "'"));
      }
    }
    c.fallback_chains.push_back(std::move(f));
    return absl::OkStatus();
  }));
  RETURN_IF_ERROR(r.String("data_dir", &c.data_dir));
  RETURN_IF_ERROR(r.List("nodes", [&](Reader& n) -> absl::Status {
    ProviderSpec p;
    ProviderOverride o;
    RETURN_IF_ERROR(ReadProviderOverrideKeys(n, &o));
    RETURN_IF_ERROR(ReadProvider(n, &p, /*node=*/true));
    if (HasOverride(o)) {
      o.id = p.id;
      c.provider_overrides.push_back(std::move(o));
    }
    for (const auto& other : c.nodes) {
      if (other.id == p.id) {
        return absl::InvalidArgumentError(absl::StrCat(n.Child("id"), ": duplicate '", p.id, "'"));
      }
    }
    c.nodes.push_back(std::move(p));
    return absl::OkStatus();
  }));
  RETURN_IF_ERROR(r.List("connections", [&](Reader& n) -> absl::Status {
    ConnectionSpec cs;
    RETURN_IF_ERROR(n.String("provider", &cs.provider, true));
    RETURN_IF_ERROR(n.String("name", &cs.name, true));
    RETURN_IF_ERROR(n.String("api_key", &cs.api_key));
    std::string env;
    RETURN_IF_ERROR(n.String("api_key_env", &env));
    if (!env.empty()) {
      if (!cs.api_key.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat(n.path(), ": set api_key or api_key_env, not both"));
      }
      const char* v = Env(env.c_str());
      if (!v) {
        return absl::InvalidArgumentError(absl::StrCat(
            n.Child("api_key_env"), ": environment variable ", env, " is not set"));
      }
      cs.api_key = v;
    }
    RETURN_IF_ERROR(n.Integer("priority", &cs.priority, 0, 1000000));
    RETURN_IF_ERROR(n.Bool("enabled", &cs.enabled));
    RETURN_IF_ERROR(n.String("proxy", &cs.proxy));
    if (!cs.proxy.empty() && !absl::StartsWith(cs.proxy, "http://")) {
      return absl::InvalidArgumentError(
          absl::StrCat(n.Child("proxy"), ": expected http://host:port"));
    }
    cs.id = absl::StrCat(cs.provider, ":", cs.name);
    for (const auto& other : c.connections) {
      if (other.id == cs.id) {
        return absl::InvalidArgumentError(
            absl::StrCat(n.Child("name"), ": duplicate connection '", cs.id, "'"));
      }
    }
    c.connections.push_back(std::move(cs));
    return absl::OkStatus();
  }));
  RETURN_IF_ERROR(r.List("api_keys", [&](Reader& n) -> absl::Status {
    ClientKeySpec k;
    RETURN_IF_ERROR(n.String("name", &k.name, true));
    RETURN_IF_ERROR(n.String("key", &k.key, true));
    if (k.key.size() < 8) {
      return absl::InvalidArgumentError(absl::StrCat(n.Child("key"), ": at least 8 characters"));
    }
    c.api_keys.push_back(std::move(k));
    return absl::OkStatus();
  }));
  RETURN_IF_ERROR(ReadUsageSections(r, &c));
  RETURN_IF_ERROR(r.Finish());
  return c;
}

bool IsAccountStrategy(std::string_view name) {
  for (const char* n : kAccountStrategies) {
    if (name == n) return true;
  }
  return false;
}

bool IsComboStrategy(std::string_view name) {
  for (const char* n : kComboStrategies) {
    if (name == n) return true;
  }
  return false;
}

absl::StatusOr<ComboSpec> ParseComboSpec(const std::string& text) {
  ComboSpec c;
  RETURN_IF_ERROR(ParseOne(text, [&](Reader& r) { return ReadCombo(r, &c); }));
  return c;
}

absl::StatusOr<AliasSpec> ParseAliasSpec(const std::string& text) {
  AliasSpec a;
  RETURN_IF_ERROR(ParseOne(text, [&](Reader& r) { return ReadAlias(r, &a); }));
  return a;
}

absl::StatusOr<FallbackChainSpec> ParseFallbackChainSpec(const std::string& text) {
  FallbackChainSpec f;
  RETURN_IF_ERROR(ParseOne(text, [&](Reader& r) { return ReadChain(r, &f); }));
  return f;
}

// ---- Usage, pricing and budgets ----

absl::StatusOr<PricingSpec> ParsePricingSpec(const std::string& text) {
  PricingSpec p;
  RETURN_IF_ERROR(ParseOne(text, [&](Reader& r) { return ReadPricing(r, &p); }));
  return p;
}

absl::StatusOr<std::vector<PricingSpec>> ParsePricingDocument(const std::string& text) {
  std::vector<PricingSpec> out;
  RETURN_IF_ERROR(ParseOne(text, [&](Reader& r) {
    return r.List("pricing", [&](Reader& n) -> absl::Status {
      PricingSpec p;
      RETURN_IF_ERROR(ReadPricing(n, &p));
      out.push_back(std::move(p));
      return absl::OkStatus();
    });
  }));
  return out;
}

absl::StatusOr<BudgetSpec> ParseBudgetSpec(const std::string& text) {
  BudgetSpec b;
  RETURN_IF_ERROR(ParseOne(text, [&](Reader& r) { return ReadBudget(r, &b); }));
  return b;
}

// ---- End of usage ----

absl::StatusOr<ProviderOverride> ParseProviderOverride(const std::string& text) {
  ProviderOverride o;
  RETURN_IF_ERROR(ParseOne(text, [&](Reader& r) -> absl::Status {
    RETURN_IF_ERROR(r.String("id", &o.id, true));
    return ReadProviderOverrideKeys(r, &o);
  }));
  return o;
}

absl::Status ApplyRoutingPatch(const std::string& text, RoutingSettings* out) {
  RoutingSettings copy = *out;
  RETURN_IF_ERROR(ParseOne(text, [&](Reader& r) { return ReadRoutingSettings(r, &copy); }));
  *out = std::move(copy);
  return absl::OkStatus();
}

absl::Status ApplyResiliencePatch(const std::string& text, ResilienceConfig* out) {
  ResilienceConfig copy = *out;
  RETURN_IF_ERROR(ParseOne(text, [&](Reader& r) { return ReadResilience(r, &copy); }));
  *out = std::move(copy);
  return absl::OkStatus();
}

absl::StatusOr<ConfigPtr> LoadConfig(const std::string& flag_path, bool generate_secrets) {
  std::string data_dir;
  if (const char* d = Env("DATA_DIR")) {
    data_dir = d;
  } else if (const char* home = Env("HOME")) {
    data_dir = std::string(home) + "/.omniroute";
  } else {
    data_dir = ".omniroute";
  }
  std::string path = flag_path;
  bool explicit_path = !path.empty();
  if (path.empty()) {
    if (const char* p = Env("OMNIROUTE_CONFIG")) {
      path = p;
      explicit_path = true;
    } else {
      path = data_dir + "/omniroute.yaml";
    }
  }
  std::string text;
  std::ifstream in(path);
  if (in) {
    std::stringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  } else if (explicit_path) {
    return absl::NotFoundError(absl::StrCat("config file ", path, ": cannot be read"));
  }
  auto parsed = ParseConfig(text);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", parsed.status().message()));
  }
  Config c = std::move(parsed).value();
  c.config_path = path;
  if (!Env("DATA_DIR") && !c.data_dir.empty()) data_dir = c.data_dir;
  c.data_dir = data_dir;

  if (const char* v = Env("PORT")) {
    int port = std::atoi(v);
    if (port <= 0 || port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("PORT: invalid port '", v, "'"));
    }
    c.server.port = port;
  }
  if (const char* v = Env("REQUIRE_API_KEY")) {
    ASSIGN_OR_RETURN(c.server.require_api_key, ParseBoolEnv("REQUIRE_API_KEY", v));
  }
  if (const char* v = Env("OMNIROUTE_ROUTER_ADDR")) c.services.router = v;
  if (const char* v = Env("OMNIROUTE_TRANSLATOR_ADDR")) c.services.translator = v;
  if (const char* v = Env("OMNIROUTE_ACCOUNTS_ADDR")) c.services.accounts = v;
  if (const char* v = Env("OMNIROUTE_USAGE_ADDR")) c.services.usage = v;
  if (const char* v = Env("REDIS_URL")) c.redis.url = v;
  if (const char* v = Env("DATABASE_URL")) c.storage.postgres_url = v;
  if (c.storage.sqlite_path.empty()) c.storage.sqlite_path = data_dir + "/omniroute.db";

  if (generate_secrets) {
    std::error_code ec;
    fs::create_directories(data_dir, ec);
    if (ec) {
      return absl::FailedPreconditionError(
          absl::StrCat("DATA_DIR ", data_dir, ": ", ec.message()));
    }
    ASSIGN_OR_RETURN(c.admin_key, EnvOrStoredSecret("OMNIROUTE_ADMIN_KEY", data_dir, "admin_key",
                                                    "sk-admin-"));
    ASSIGN_OR_RETURN(c.api_key_secret,
                     EnvOrStoredSecret("API_KEY_SECRET", data_dir, "api_key_secret", ""));
    ASSIGN_OR_RETURN(c.jwt_secret, EnvOrStoredSecret("JWT_SECRET", data_dir, "jwt_secret", ""));
    ASSIGN_OR_RETURN(c.initial_password,
                     EnvOrStoredSecret("INITIAL_PASSWORD", data_dir, "initial_password", ""));
  }
  // Connections may name a provider by prefix ("cc"); keep the canonical id.
  ASSIGN_OR_RETURN(auto registry, BuildRegistry(c));
  for (auto& conn : c.connections) {
    conn.provider = registry->Find(conn.provider)->id;
    conn.id = absl::StrCat(conn.provider, ":", conn.name);
  }
  for (auto& o : c.provider_overrides) {
    const ProviderSpec* p = registry->Find(o.id);
    if (p == nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(path, ": providers: unknown provider '", o.id, "'"));
    }
    o.id = p->id;
  }
  return std::make_shared<const Config>(std::move(c));
}

absl::StatusOr<std::vector<ProviderSpec>> ProviderRegistry::BuiltIns() {
  YAML::Node root = YAML::Load(kProvidersYaml);
  std::vector<ProviderSpec> out;
  Reader r(root, "providers.yaml");
  RETURN_IF_ERROR(r.List("providers", [&](Reader& n) -> absl::Status {
    ProviderSpec p;
    RETURN_IF_ERROR(ReadProvider(n, &p, /*node=*/false));
    out.push_back(std::move(p));
    return absl::OkStatus();
  }));
  RETURN_IF_ERROR(r.Finish());
  return out;
}

ProviderRegistry::ProviderRegistry(std::vector<ProviderSpec> providers)
    : providers_(std::move(providers)) {}

const ProviderSpec* ProviderRegistry::Find(std::string_view id_or_prefix) const {
  // Custom nodes come last in providers_ and win over built-ins with the same prefix.
  for (auto it = providers_.rbegin(); it != providers_.rend(); ++it) {
    if (it->id == id_or_prefix) return &*it;
  }
  for (auto it = providers_.rbegin(); it != providers_.rend(); ++it) {
    for (const auto& p : it->prefixes) {
      if (p == id_or_prefix) return &*it;
    }
  }
  return nullptr;
}

absl::StatusOr<std::shared_ptr<const ProviderRegistry>> BuildRegistry(const Config& config) {
  ASSIGN_OR_RETURN(std::vector<ProviderSpec> all, ProviderRegistry::BuiltIns());
  // `providers: [{id, base_url}]`: a built-in's base URL (matched by id, then by prefix).
  for (const auto& o : config.provider_overrides) {
    if (o.base_url.empty()) continue;
    auto it = std::find_if(all.begin(), all.end(), [&](const ProviderSpec& p) { return p.id == o.id; });
    if (it == all.end()) {
      it = std::find_if(all.begin(), all.end(), [&](const ProviderSpec& p) {
        return std::find(p.prefixes.begin(), p.prefixes.end(), o.id) != p.prefixes.end();
      });
    }
    if (it == all.end()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "providers: '", o.id, "': base_url applies to built-in providers only",
          " (a node sets its own base_url)"));
    }
    it->base_url = o.base_url;
  }
  for (const auto& node : config.nodes) {
    all.erase(std::remove_if(all.begin(), all.end(),
                             [&](const ProviderSpec& p) { return p.id == node.id; }),
              all.end());
    all.push_back(node);
  }
  auto registry = std::make_shared<const ProviderRegistry>(std::move(all));
  for (const auto& conn : config.connections) {
    if (!registry->Find(conn.provider)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "connections: '", conn.name, "' names unknown provider '", conn.provider, "'"));
    }
  }
  return registry;
}

}  // namespace omniroute
