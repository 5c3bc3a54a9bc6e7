// The routing admin API, health and the runtime routing configuration of LocalRouter.
#include <boost/json.hpp>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/format.h"
#include "common/strings.h"
#include "catalog.h"
#include "local_router.h"

namespace omniroute::router {
namespace json = boost::json;

namespace {

constexpr char kRuntimeDocument[] = "runtime";

v1::AdminResponse JsonResponse(int status, const json::value& body) {
  v1::AdminResponse out;
  out.set_status(status);
  out.set_body(json::serialize(body));
  return out;
}

v1::AdminResponse ErrorResponse(int status, std::string_view message) {
  const char* type = status == 404   ? "not_found_error"
                     : status == 403 ? "permission_error"
                     : status == 409 ? "conflict_error"
                     : status >= 500 ? "server_error"
                                     : "invalid_request_error";
  return JsonResponse(status, json::object{{"error", json::object{{"message", message},
                                                                  {"type", type},
                                                                  {"param", nullptr},
                                                                  {"code", nullptr}}}});
}

v1::AdminResponse StatusResponse(const absl::Status& s) {
  // An object the admin API may not change (managed by the config file) is forbidden here.
  const int status = s.code() == absl::StatusCode::kFailedPrecondition
                         ? 403
                         : HttpStatusFromStatus(s);
  return ErrorResponse(status, SV(s.message()));
}

// "/api/combos/a%2Fb" → {"combos", "a/b"}.
std::vector<std::string> Segments(std::string_view path) {
  std::vector<std::string> out;
  if (absl::StartsWith(AV(path), "/api/")) path.remove_prefix(5);
  for (absl::string_view part : absl::StrSplit(AV(path), '/', absl::SkipEmpty())) {
    out.push_back(PercentDecode(SV(part), /*plus_is_space=*/false));
  }
  return out;
}

json::object Parsed(std::string_view body, absl::Status* status) {
  if (body.empty()) return {};
  json::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec || !v.is_object()) {
    *status = absl::InvalidArgumentError("the request body must be a JSON object");
    return {};
  }
  return std::move(v.get_object());
}

const char* OriginName(RoutingTable::Origin o) {
  return o == RoutingTable::Origin::kFile ? "file" : "api";
}

const char* StateName(BreakerState s) {
  switch (s) {
    case BreakerState::kOpen:
      return "open";
    case BreakerState::kHalfOpen:
      return "half_open";
    default:
      return "closed";
  }
}

double Percentile(const std::vector<int64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  size_t rank = static_cast<size_t>(std::ceil(p / 100.0 * static_cast<double>(sorted.size())));
  rank = std::clamp<size_t>(rank, 1, sorted.size());
  return static_cast<double>(sorted[rank - 1]);
}

// How the admin API treats one kind of routing object.
template <typename Spec>
struct Collection {
  using Type = Spec;
  std::string what;       // "combo"
  std::string key_field;  // "name"
  std::function<std::string(const Spec&)> key;
  std::function<absl::StatusOr<Spec>(const std::string&)> parse;
  std::vector<Spec> RuntimeRouting::*list;
  const std::vector<RoutingTable::Entry<Spec>>& (RoutingTable::*entries)() const;
  bool fold_case = false;

  bool Same(const std::string& a, const std::string& b) const {
    return fold_case ? absl::EqualsIgnoreCase(a, b) : a == b;
  }
};

json::object WithOrigin(json::object o, RoutingTable::Origin origin) {
  o["managed"] = OriginName(origin);
  return o;
}

}  // namespace

void LocalRouter::Health(const v1::HealthRequest& request, Callback<v1::HealthResponse> done) {
  done(HealthNow(request.brief()));
}

v1::HealthResponse LocalRouter::HealthNow(bool brief) {
  const std::shared_ptr<const RoutingTable> table_ptr = table();
  const RoutingTable& t = *table_ptr;
  const int64_t now = options_.clock();
  v1::HealthResponse out;
  out.set_now_ms(now);
  out.set_store(state_->Kind());
  const bool healthy = state_->Healthy();
  out.set_store_healthy(healthy);
  if (state_->Kind() == "memory") {
    out.set_store_detail("routing state in process memory");
  } else if (healthy) {
    out.set_store_detail("routing state shared in Redis");
  } else {
    out.set_store_detail("Redis unreachable: routing on process-local state until it returns");
  }
  StateQuery q;
  q.providers = t.ConnectedProviders();
  const StateSnapshot snap = state_->Read(q, now);
  for (size_t i = 0; i < q.providers.size(); ++i) {
    const std::string& id = q.providers[i];
    const BreakerStatus& b = snap.breakers[i];
    v1::ProviderHealth* ph = out.add_providers();
    ph->set_provider(id);
    const bool half_open_due =
        b.state == BreakerState::kOpen && now >= b.open_until_ms;  // waiting for its probe
    ph->set_state(half_open_due ? "half_open" : StateName(b.state));
    ph->set_failures(b.failures);
    ph->set_trips(b.trips);
    if (b.state == BreakerState::kOpen && b.open_until_ms > now) {
      ph->set_retry_in_ms(b.open_until_ms - now);
    }
    if (const ProviderSpec* p = t.registry().Find(id)) ph->set_oauth(p->oauth);
    if (brief) continue;
    std::vector<int64_t> samples = state_->Latencies(id);
    std::sort(samples.begin(), samples.end());
    ph->set_samples(static_cast<int32_t>(samples.size()));
    ph->set_p50_ms(Percentile(samples, 50));
    ph->set_p95_ms(Percentile(samples, 95));
    ph->set_p99_ms(Percentile(samples, 99));
  }
  std::vector<ActiveCooldown> active;
  if (!brief) active = state_->ActiveCooldowns(t.ConnectionIds(), now);
  for (const ActiveCooldown& c : active) {
    if (c.scope == CooldownScope::kConnection) {
      v1::CooldownState* cs = out.add_cooldowns();
      cs->set_connection_id(c.id);
      if (const ConnectionSpec* spec = t.FindConnection(c.id)) cs->set_provider(spec->provider);
      cs->set_remaining_ms(c.until_ms - now);
      cs->set_level(c.level);
      continue;
    }
    // "provider:connection:model", where the connection id is "provider:name".
    v1::LockoutState* ls = out.add_lockouts();
    ls->set_key(c.id);
    ls->set_remaining_ms(c.until_ms - now);
    const size_t a = c.id.find(':');
    const size_t b = a == std::string::npos ? std::string::npos : c.id.find(':', a + 1);
    const size_t d = b == std::string::npos ? std::string::npos : c.id.find(':', b + 1);
    if (d != std::string::npos) {
      ls->set_provider(c.id.substr(0, a));
      ls->set_connection_id(c.id.substr(a + 1, d - a - 1));
      ls->set_model(c.id.substr(d + 1));
    }
  }
  for (const auto& [name, value] : state_->Stats()) (*out.mutable_counters())[name] = value;
  (*out.mutable_counters())["store_errors"] = state_->Errors();
  return out;
}

void LocalRouter::Admin(const v1::AdminRequest& request, Callback<v1::AdminResponse> done) {
  v1::AdminResponse out = AdminNow(request);
  // Any change (resets included) makes the plans made before it stale.
  if (!absl::EqualsIgnoreCase(request.method(), "GET")) plan_epoch_.fetch_add(1);
  *out.mutable_epoch() = Epoch();
  done(std::move(out));
}

v1::AdminResponse LocalRouter::AdminNow(const v1::AdminRequest& request) {
  const std::vector<std::string> seg = Segments(request.path());
  const std::string method = absl::AsciiStrToUpper(request.method());
  absl::Status body_status;
  json::object body = Parsed(request.body(), &body_status);
  if (!body_status.ok()) return StatusResponse(body_status);
  auto not_allowed = [&] {
    return ErrorResponse(405,
                         absl::StrCat("Method ", method, " is not allowed on ", request.path()));
  };

  // Health and resets.
  if (seg == std::vector<std::string>{"health"}) {
    if (method != "GET") return not_allowed();
    const v1::HealthResponse h = HealthNow(/*brief=*/false);
    json::array providers;
    for (const auto& p : h.providers()) {
      providers.push_back(json::object{{"provider", p.provider()},
                                       {"auth", p.oauth() ? "oauth" : "api_key"},
                                       {"breaker", json::object{{"state", p.state()},
                                                                {"failures", p.failures()},
                                                                {"trips", p.trips()},
                                                                {"retry_in_ms", p.retry_in_ms()}}},
                                       {"latency", json::object{{"p50_ms", p.p50_ms()},
                                                                {"p95_ms", p.p95_ms()},
                                                                {"p99_ms", p.p99_ms()},
                                                                {"samples", p.samples()}}}});
    }
    json::array cooldowns;
    for (const auto& c : h.cooldowns()) {
      cooldowns.push_back(json::object{{"connection_id", c.connection_id()},
                                       {"provider", c.provider()},
                                       {"remaining_ms", c.remaining_ms()},
                                       {"level", c.level()}});
    }
    json::array lockouts;
    for (const auto& l : h.lockouts()) {
      lockouts.push_back(json::object{{"key", l.key()},
                                      {"provider", l.provider()},
                                      {"connection_id", l.connection_id()},
                                      {"model", l.model()},
                                      {"remaining_ms", l.remaining_ms()}});
    }
    json::object counters;
    for (const auto& [k, v] : h.counters()) counters[k] = v;
    return JsonResponse(200,
                        json::object{{"status", h.store_healthy() ? "ok" : "degraded"},
                                     {"state_store", json::object{{"kind", h.store()},
                                                                  {"healthy", h.store_healthy()},
                                                                  {"detail", h.store_detail()}}},
                                     {"providers", std::move(providers)},
                                     {"cooldowns", std::move(cooldowns)},
                                     {"lockouts", std::move(lockouts)},
                                     {"counters", std::move(counters)},
                                     {"now_ms", h.now_ms()}});
  }
  if (seg == std::vector<std::string>{"resilience", "reset"}) {
    if (method != "POST") return not_allowed();
    const std::shared_ptr<const RoutingTable> t = table();
    std::vector<std::string> providers;
    if (const json::value* p = body.if_contains("provider"); p && p->is_string()) {
      const std::string name(p->get_string().data(), p->get_string().size());
      const ProviderSpec* spec = t->registry().Find(name);
      if (spec == nullptr) return ErrorResponse(404, absl::StrCat("Unknown provider '", name, "'"));
      providers.push_back(spec->id);
    } else {
      providers = t->ConnectedProviders();
    }
    bool cooldowns = false;
    if (const json::value* c = body.if_contains("cooldowns"); c && c->is_bool()) {
      cooldowns = c->get_bool();
    }
    state_->ResetBreakers(providers);
    state_->AddStat("breaker_resets", static_cast<int64_t>(providers.size()));
    if (cooldowns) state_->ResetCooldowns(t->ConnectionIds());
    json::array reset;
    for (const auto& p : providers) reset.push_back(json::value(p));
    LogInfo("resilience state reset", {{"providers", std::to_string(providers.size())},
                                       {"cooldowns", cooldowns ? "true" : "false"}});
    return JsonResponse(
        200, json::object{{"reset_breakers", std::move(reset)}, {"reset_cooldowns", cooldowns}});
  }

  // The whole routing configuration.
  if (seg == std::vector<std::string>{"routing"}) {
    if (method != "GET") return not_allowed();
    const std::shared_ptr<const RoutingTable> t = table();
    json::array combos, aliases, chains, providers;
    for (const auto& e : t->combos()) combos.push_back(WithOrigin(ToJson(e.spec), e.origin));
    for (const auto& e : t->aliases()) aliases.push_back(WithOrigin(ToJson(e.spec), e.origin));
    for (const auto& e : t->chains()) chains.push_back(WithOrigin(ToJson(e.spec), e.origin));
    for (const auto& e : t->provider_overrides()) {
      providers.push_back(WithOrigin(ToJson(e.spec), e.origin));
    }
    int64_t version = 0;
    {
      std::lock_guard<std::mutex> lock(runtime_mu_);
      version = runtime_.version;
    }
    return JsonResponse(200, json::object{{"routing", ToJson(t->routing())},
                                          {"resilience", ToJson(t->resilience())},
                                          {"providers", std::move(providers)},
                                          {"combos", std::move(combos)},
                                          {"aliases", std::move(aliases)},
                                          {"fallback_chains", std::move(chains)},
                                          {"version", version}});
  }

  // Settings: a PUT patches over the file's values, a DELETE drops the runtime patch.
  if (seg.size() == 2 && seg[0] == "settings" && (seg[1] == "routing" || seg[1] == "resilience")) {
    const bool routing = seg[1] == "routing";
    auto current = [&]() -> json::object {
      const std::shared_ptr<const RoutingTable> t = table();
      return routing ? ToJson(t->routing()) : ToJson(t->resilience());
    };
    if (method == "GET") return JsonResponse(200, current());
    if (method != "PUT" && method != "PATCH" && method != "DELETE") return not_allowed();
    absl::Status s = ChangeRuntime([&](RuntimeRouting& r) -> absl::Status {
      json::object& patch = routing ? r.routing_patch : r.resilience_patch;
      if (method == "DELETE") {
        patch.clear();
        return absl::OkStatus();
      }
      json::object merged = patch;
      MergeJson(merged, body);
      if (routing) {
        RoutingSettings probe;
        RETURN_IF_ERROR(ApplyRoutingPatch(json::serialize(merged), &probe));
      } else {
        ResilienceConfig probe;
        RETURN_IF_ERROR(ApplyResiliencePatch(json::serialize(merged), &probe));
      }
      patch = std::move(merged);
      return absl::OkStatus();
    });
    if (!s.ok()) return StatusResponse(s);
    return JsonResponse(200, current());
  }

  // Per-provider routing and pacing overrides.
  if (seg.size() == 3 && seg[0] == "providers" && seg[2] == "routing") {
    const std::shared_ptr<const RoutingTable> current = table();
    const ProviderSpec* spec = current->registry().Find(seg[1]);
    if (spec == nullptr) return ErrorResponse(404, absl::StrCat("Unknown provider '", seg[1], "'"));
    const std::string id = spec->id;
    auto find = [&](const RoutingTable& t) -> const RoutingTable::Entry<ProviderOverride>* {
      for (const auto& e : t.provider_overrides()) {
        if (e.spec.id == id) return &e;
      }
      return nullptr;
    };
    if (method == "GET") {
      const std::shared_ptr<const RoutingTable> t = table();
      const auto* e = find(*t);
      if (e == nullptr) return JsonResponse(200, json::object{{"id", id}, {"managed", nullptr}});
      return JsonResponse(200, WithOrigin(ToJson(e->spec), e->origin));
    }
    if (method != "PUT" && method != "DELETE") return not_allowed();
    {
      const std::shared_ptr<const RoutingTable> t = table();
      const auto* e = find(*t);
      if (e != nullptr && e->origin == RoutingTable::Origin::kFile) {
        return ErrorResponse(
            403, absl::StrCat("The routing of provider '", id, "' is managed by the config file"));
      }
      if (e == nullptr && method == "DELETE") {
        return ErrorResponse(404, absl::StrCat("No routing override for provider '", id, "'"));
      }
    }
    ProviderOverride o;
    if (method == "PUT") {
      body["id"] = id;
      auto parsed = ParseProviderOverride(json::serialize(body));
      if (!parsed.ok()) return StatusResponse(parsed.status());
      o = *std::move(parsed);
      o.id = id;
    }
    absl::Status s = ChangeRuntime([&](RuntimeRouting& r) -> absl::Status {
      std::erase_if(r.providers, [&](const ProviderOverride& p) {
        const ProviderSpec* ps = current->registry().Find(p.id);
        return (ps ? ps->id : p.id) == id;
      });
      if (method == "PUT") r.providers.push_back(o);
      return absl::OkStatus();
    });
    if (!s.ok()) return StatusResponse(s);
    if (method == "DELETE") return JsonResponse(200, json::object{{"deleted", id}});
    return JsonResponse(200, WithOrigin(ToJson(o), RoutingTable::Origin::kApi));
  }

  // Combos, aliases and fallback chains.
  auto serve = [&](const auto& coll) -> v1::AdminResponse {
    using Spec = typename std::decay_t<decltype(coll)>::Type;
    const std::shared_ptr<const RoutingTable> t = table();
    const auto& entries = ((*t).*(coll.entries))();
    auto find = [&](const std::string& key) -> const RoutingTable::Entry<Spec>* {
      for (const auto& e : entries) {
        if (coll.Same(coll.key(e.spec), key)) return &e;
      }
      return nullptr;
    };
    if (seg.size() == 1) {
      if (method == "GET") {
        json::array list;
        for (const auto& e : entries) list.push_back(WithOrigin(ToJson(e.spec), e.origin));
        return JsonResponse(200, json::object{{"data", std::move(list)}});
      }
      if (method != "POST") return not_allowed();
      auto spec = coll.parse(json::serialize(body));
      if (!spec.ok()) return StatusResponse(spec.status());
      if (find(coll.key(*spec)) != nullptr) {
        return ErrorResponse(
            409, absl::StrCat("A ", coll.what, " '", coll.key(*spec), "' exists; PUT replaces it"));
      }
      absl::Status s = ChangeRuntime([&](RuntimeRouting& r) -> absl::Status {
        (r.*(coll.list)).push_back(*spec);
        return absl::OkStatus();
      });
      if (!s.ok()) return StatusResponse(s);
      return JsonResponse(201, WithOrigin(ToJson(*spec), RoutingTable::Origin::kApi));
    }
    if (seg.size() != 2) {
      return ErrorResponse(404, absl::StrCat("Unknown admin route ", request.path()));
    }
    const std::string& key = seg[1];
    const auto* existing = find(key);
    if (method == "GET") {
      if (existing == nullptr) {
        return ErrorResponse(404, absl::StrCat("No ", coll.what, " '", key, "'"));
      }
      return JsonResponse(200, WithOrigin(ToJson(existing->spec), existing->origin));
    }
    if (method != "PUT" && method != "DELETE") return not_allowed();
    if (existing != nullptr && existing->origin == RoutingTable::Origin::kFile) {
      return ErrorResponse(403, absl::StrCat("The ", coll.what, " '", key,
                                             "' is managed by the config file; edit the file"));
    }
    if (method == "DELETE") {
      if (existing == nullptr) {
        return ErrorResponse(404, absl::StrCat("No ", coll.what, " '", key, "'"));
      }
      absl::Status s = ChangeRuntime([&](RuntimeRouting& r) -> absl::Status {
        std::erase_if(r.*(coll.list), [&](const Spec& x) { return coll.Same(coll.key(x), key); });
        return absl::OkStatus();
      });
      if (!s.ok()) return StatusResponse(s);
      return JsonResponse(200, json::object{{"deleted", key}});
    }
    if (const json::value* k = body.if_contains(coll.key_field);
        k != nullptr &&
        !(k->is_string() &&
          coll.Same(std::string(k->get_string().data(), k->get_string().size()), key))) {
      return ErrorResponse(400, absl::StrCat("'", coll.key_field, "' in the body differs from '",
                                             key, "' in the path"));
    }
    body[coll.key_field] = key;
    auto spec = coll.parse(json::serialize(body));
    if (!spec.ok()) return StatusResponse(spec.status());
    const bool created = existing == nullptr;
    absl::Status s = ChangeRuntime([&](RuntimeRouting& r) -> absl::Status {
      auto& list = r.*(coll.list);
      for (Spec& x : list) {
        if (coll.Same(coll.key(x), key)) {
          x = *spec;
          return absl::OkStatus();
        }
      }
      list.push_back(*spec);
      return absl::OkStatus();
    });
    if (!s.ok()) return StatusResponse(s);
    return JsonResponse(created ? 201 : 200, WithOrigin(ToJson(*spec), RoutingTable::Origin::kApi));
  };
  if (!seg.empty() && seg[0] == "combos") {
    Collection<ComboSpec> coll;
    coll.what = "combo";
    coll.key_field = "name";
    coll.key = [](const ComboSpec& c) { return c.name; };
    coll.parse = ParseComboSpec;
    coll.list = &RuntimeRouting::combos;
    coll.entries = &RoutingTable::combos;
    return serve(coll);
  }
  if (!seg.empty() && seg[0] == "aliases") {
    Collection<AliasSpec> coll;
    coll.what = "alias";
    coll.key_field = "pattern";
    coll.key = [](const AliasSpec& a) { return a.pattern; };
    coll.parse = ParseAliasSpec;
    coll.list = &RuntimeRouting::aliases;
    coll.entries = &RoutingTable::aliases;
    coll.fold_case = true;
    return serve(coll);
  }
  if (!seg.empty() && seg[0] == "fallback-chains") {
    Collection<FallbackChainSpec> coll;
    coll.what = "fallback chain";
    coll.key_field = "name";
    coll.key = [](const FallbackChainSpec& f) { return f.name; };
    coll.parse = ParseFallbackChainSpec;
    coll.list = &RuntimeRouting::fallback_chains;
    coll.entries = &RoutingTable::chains;
    return serve(coll);
  }
  return ErrorResponse(404, absl::StrCat("Unknown admin route ", request.path()));
}

namespace {

// Combos may contain combos, at most kMaxComboDepth deep, and never themselves.
absl::Status ValidateCombos(const RoutingTable& t) {
  std::function<absl::StatusOr<int>(const ComboSpec&, std::vector<std::string>&)> depth;
  depth = [&](const ComboSpec& c, std::vector<std::string>& stack) -> absl::StatusOr<int> {
    if (std::find(stack.begin(), stack.end(), c.name) != stack.end()) {
      stack.push_back(c.name);
      return absl::InvalidArgumentError(
          absl::StrCat("combos form a cycle: ", absl::StrJoin(stack, " → ")));
    }
    stack.push_back(c.name);
    int deepest = 0;
    for (const auto& m : c.models) {
      std::string name = m.model;
      if (const AliasSpec* a = t.MatchAlias(name)) name = a->target;
      if (const ComboSpec* inner = t.FindCombo(name)) {
        ASSIGN_OR_RETURN(int d, depth(*inner, stack));
        deepest = std::max(deepest, d);
      }
    }
    stack.pop_back();
    return deepest + 1;
  };
  // File combos are the file's business (a plan leaves out what is nested too deep).
  for (const auto& e : t.combos()) {
    if (e.origin != RoutingTable::Origin::kApi) continue;
    std::vector<std::string> stack;
    ASSIGN_OR_RETURN(int d, depth(e.spec, stack));
    if (d > kMaxComboDepth) {
      return absl::InvalidArgumentError(absl::StrCat("combo '", e.spec.name, "' nests ", d,
                                                     " levels of combos; at most ", kMaxComboDepth,
                                                     " are allowed"));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::Status LocalRouter::ChangeRuntime(
    const std::function<absl::Status(RuntimeRouting&)>& mutate) {
  std::lock_guard<std::mutex> lock(runtime_mu_);
  // Read-modify-write against the shared copy: start from the newest, and start over when
  // another replica published in between.
  for (int attempt = 0;; ++attempt) {
    if (state_->Shared()) {
      if (const auto doc = state_->GetDocument(kRuntimeDocument);
          doc && doc->version > runtime_.version) {
        if (auto parsed = ParseRuntime(doc->body); parsed.ok()) {
          parsed->version = doc->version;
          AdoptRuntime(*std::move(parsed), /*persist=*/true);
        }
      }
    }
    RuntimeRouting next = runtime_;
    RETURN_IF_ERROR(mutate(next));
    next.version = std::max(options_.clock(), runtime_.version + 1);
    const std::shared_ptr<const RoutingTable> base = this->table();
    auto table = RoutingTable::Build(base->file_ptr(), base->registry_ptr(), next,
                                     base->blocked_providers());
    if (!table.ok()) return absl::InvalidArgumentError(table.status().message());
    RETURN_IF_ERROR(ValidateCombos(**table));
    const bool published =
        state_->PutDocument(kRuntimeDocument, SharedDocument{next.version, SerializeRuntime(next)});
    if (!published && state_->Shared() && attempt < 3) continue;
    runtime_ = next;
    SetTable(*table);
    Persist(runtime_);
    LogInfo("routing configuration changed", {{"version", std::to_string(runtime_.version)}});
    return absl::OkStatus();
  }
}

void LocalRouter::AdoptRuntime(RuntimeRouting runtime, bool persist) {
  const std::shared_ptr<const RoutingTable> base = this->table();
  auto table = RoutingTable::Build(base->file_ptr(), base->registry_ptr(), runtime,
                                   base->blocked_providers());
  if (!table.ok()) {
    LogWarn(
        "ignoring a shared routing configuration",
        {{"version", std::to_string(runtime.version)}, {"error", SV(table.status().message())}});
    return;
  }
  runtime_ = std::move(runtime);
  SetTable(*table);
  if (persist) Persist(runtime_);
  LogInfo("routing configuration adopted from another replica",
          {{"version", std::to_string(runtime_.version)}});
}

absl::Status LocalRouter::ReloadConfig(ConfigPtr config) {
  if (config == nullptr) return absl::InvalidArgumentError("no config");
  std::shared_ptr<const ProviderRegistry> registry;
  ASSIGN_OR_RETURN(registry, BuildRegistry(*config));
  std::lock_guard<std::mutex> lock(runtime_mu_);
  ConfigPtr base = config;
  std::vector<std::string> blocked;
  if (catalog_) {
    ASSIGN_OR_RETURN(CatalogConfig applied, ApplyCatalog(*config, *catalog_));
    base = std::move(applied.config);
    registry = std::move(applied.registry);
    blocked = std::move(applied.blocked_providers);
  }
  auto table = RoutingTable::Build(std::move(base), std::move(registry), runtime_, blocked);
  if (!table.ok()) return absl::InvalidArgumentError(table.status().message());
  // Combos nested too deep are accepted as at start (Plan leaves their depths out).
  file_config_ = std::move(config);
  SetTable(*std::move(table));
  return absl::OkStatus();
}

void LocalRouter::Persist(const RuntimeRouting& runtime) {
  if (options_.runtime_path.empty()) return;
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path path(options_.runtime_path);
  if (path.has_parent_path()) fs::create_directories(path.parent_path(), ec);
  const std::string tmp = options_.runtime_path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << SerializeRuntime(runtime) << "\n";
    if (!out) {
      LogWarn("cannot persist the routing configuration", {{"path", tmp}});
      return;
    }
  }
  fs::rename(tmp, path, ec);
  if (ec) {
    LogWarn("cannot persist the routing configuration",
            {{"path", options_.runtime_path}, {"error", ec.message()}});
  }
}

void LocalRouter::Tick() {
  const int64_t now = options_.clock();
  state_->Maintain(now);
  RefreshCatalog();
  if (!state_->Shared() || !state_->Healthy()) return;
  const std::optional<SharedDocument> doc = state_->GetDocument(kRuntimeDocument);
  std::lock_guard<std::mutex> lock(runtime_mu_);
  if (doc && doc->version > runtime_.version) {
    auto parsed = ParseRuntime(doc->body);
    if (!parsed.ok()) {
      LogWarn("ignoring a shared routing configuration",
              {{"error", SV(parsed.status().message())}});
      return;
    }
    parsed->version = doc->version;
    AdoptRuntime(*std::move(parsed), /*persist=*/true);
  } else if (runtime_.version > 0 && (!doc || doc->version < runtime_.version)) {
    // The shared copy is missing or older (e.g. Redis restarted empty): publish ours.
    state_->PutDocument(kRuntimeDocument,
                        SharedDocument{runtime_.version, SerializeRuntime(runtime_)});
  }
}

}  // namespace omniroute::router
