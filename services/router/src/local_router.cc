#include "local_router.h"

#include <algorithm>
#include <chrono>
#include <fstream>
#include <sstream>
#include <unordered_set>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "memory_state_store.h"

namespace omniroute::router {
namespace {

constexpr int64_t kDayMs = 86400000;
constexpr int64_t kHourMs = 3600000;

absl::Status ValidateModel(std::string_view model) {
  if (model.empty()) return absl::InvalidArgumentError("you must provide a model parameter");
  if (model.size() > 256) return absl::InvalidArgumentError("model name is too long");
  for (unsigned char c : model) {
    if (c < 0x20 || c == 0x7f) {
      return absl::InvalidArgumentError("model name contains control characters");
    }
  }
  if (absl::StrContains(AV(model), "../") || absl::StrContains(AV(model), "..\\")) {
    return absl::InvalidArgumentError("model name contains a path traversal");
  }
  return absl::OkStatus();
}

std::string LockoutKey(std::string_view provider, std::string_view connection,
                       std::string_view model) {
  return absl::StrCat(AV(provider), ":", AV(connection), ":", AV(model));
}

int64_t Seconds(int64_t ms) { return std::max<int64_t>(1, (ms + 999) / 1000); }

// A non-zero id for this router process (PlanEpoch.router_id).
uint64_t NewRouterId() {
  std::random_device rd;
  return ((uint64_t{rd()} << 32) | rd()) | 1;
}

// The earliest time something excluded from a plan becomes usable again, per reason.
struct Exclusions {
  int64_t cooldown = 0;
  int64_t lockout = 0;
  int64_t breaker = 0;
  int64_t pacing = 0;
  int64_t quota = 0;  // a provider reported the connection's quota spent until then
  std::vector<std::string> open_breakers;

  static void Note(int64_t& slot, int64_t at) { slot = slot == 0 ? at : std::min(slot, at); }
  int64_t Earliest() const {
    int64_t e = 0;
    for (int64_t v : {cooldown, lockout, breaker, pacing, quota}) {
      if (v > 0) e = e == 0 ? v : std::min(e, v);
    }
    return e;
  }
};

}  // namespace

int64_t SystemNowMs() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

struct LocalRouter::Target {
  const ProviderSpec* provider = nullptr;
  std::string model;                      // upstream model
  const ComboSpec* combo = nullptr;       // innermost combo (its account routing override)
  std::vector<std::string> use_counters;  // bumped when this target serves first
};

struct LocalRouter::PlanContext {
  int64_t now = 0;
  bool grouped = false;  // the model resolved through a combo or a chain name
  // Every strategy used orders by the table and the state alone (no counter, no chance).
  bool deterministic = true;
  std::unordered_map<std::string, int64_t> counters;

  // The value of a round-robin counter for this plan (incremented once per plan).
  int64_t Counter(StateStore& store, const std::string& name) {
    auto it = counters.find(name);
    if (it != counters.end()) return it->second;
    const int64_t v = store.Increment(name, now, kDayMs);
    counters.emplace(name, v);
    return v;
  }
};

LocalRouter::LocalRouter(ConfigPtr config, std::shared_ptr<const ProviderRegistry> registry,
                         StateStorePtr state, RouterOptions options)
    : file_config_(std::move(config)),
      state_(std::move(state)),
      options_(std::move(options)),
      rng_(std::random_device{}()),
      router_id_(NewRouterId()) {
  if (options_.runtime_path.empty() && options_.persist && !file_config_->data_dir.empty()) {
    options_.runtime_path = file_config_->data_dir + "/router-runtime.json";
  }
  if (!options_.persist) options_.runtime_path.clear();
  RuntimeRouting runtime;
  if (!options_.runtime_path.empty()) {
    std::ifstream in(options_.runtime_path);
    if (in) {
      std::stringstream ss;
      ss << in.rdbuf();
      auto parsed = ParseRuntime(ss.str());
      if (parsed.ok()) {
        runtime = *std::move(parsed);
      } else {
        LogWarn("ignoring the stored runtime routing changes",
                {{"path", options_.runtime_path}, {"error", SV(parsed.status().message())}});
      }
    }
  }
  auto table = RoutingTable::Build(file_config_, registry, runtime);
  if (!table.ok()) {
    LogWarn("ignoring the stored runtime routing changes",
            {{"path", options_.runtime_path}, {"error", SV(table.status().message())}});
    runtime = RuntimeRouting();
    table = RoutingTable::Build(file_config_, registry, runtime);
  }
  if (!table.ok()) throw std::invalid_argument(std::string(table.status().message()));
  runtime_ = std::move(runtime);
  table_ = *std::move(table);
  if (options_.async_reports) {
    reporter_ = std::thread([this] {
      std::unique_lock<std::mutex> lock(reports_mu_);
      while (true) {
        reports_cv_.wait(lock, [this] { return reports_stopping_ || !reports_.empty(); });
        if (reports_.empty()) return;
        v1::Outcome outcome = std::move(reports_.front());
        reports_.pop_front();
        lock.unlock();
        Record(outcome);
        if (ChangesRouting(outcome)) unrecorded_changes_.fetch_sub(1);
        lock.lock();
      }
    });
  }
  if (options_.background) {
    background_ = std::thread([this] {
      std::unique_lock<std::mutex> lock(tick_mu_);
      while (!stopping_) {
        lock.unlock();
        Tick();
        lock.lock();
        tick_cv_.wait_for(lock, std::chrono::milliseconds(options_.sync_interval_ms),
                          [this] { return stopping_; });
      }
    });
  }
}

LocalRouter::~LocalRouter() {
  {
    std::lock_guard<std::mutex> lock(tick_mu_);
    stopping_ = true;
  }
  tick_cv_.notify_all();
  if (background_.joinable()) background_.join();
  {
    // A catalog request still out answers within its deadline.
    std::unique_lock<std::mutex> lock(catalog_mu_);
    catalog_cv_.wait(lock, [this] { return !catalog_in_flight_; });
  }
  {
    std::lock_guard<std::mutex> lock(reports_mu_);
    reports_stopping_ = true;
  }
  reports_cv_.notify_all();
  if (reporter_.joinable()) reporter_.join();  // records what is queued first
}

std::shared_ptr<const RoutingTable> LocalRouter::table() const {
  std::lock_guard<std::mutex> lock(table_mu_);
  return table_;
}

void LocalRouter::SetTable(std::shared_ptr<const RoutingTable> table) {
  std::lock_guard<std::mutex> lock(table_mu_);
  table_ = std::move(table);
  plan_epoch_.fetch_add(1);
}

v1::PlanEpoch LocalRouter::Epoch() const {
  v1::PlanEpoch out;
  out.set_router_id(router_id_);
  out.set_value(plan_epoch_.load());
  return out;
}

uint64_t LocalRouter::NextRandom() {
  if (options_.random) return options_.random();
  std::lock_guard<std::mutex> lock(random_mu_);
  return rng_();
}

std::string LocalRouter::NewLeaseId(const std::string& request_id) {
  const uint64_t seq = lease_seq_.fetch_add(1);
  if (request_id.empty()) return absl::StrCat("lease-", NextRandom(), "-", seq);
  return absl::StrCat(request_id, "-", seq);
}

void LocalRouter::Plan(const v1::PlanRequest& request, Callback<v1::RoutePlan> done) {
  done(PlanNow(request));
}

absl::StatusOr<std::pair<const ProviderSpec*, std::string>> LocalRouter::ResolveSingle(
    const RoutingTable& t, std::string_view model) const {
  if (size_t slash = model.find('/'); slash != std::string_view::npos) {
    std::string_view prefix = model.substr(0, slash);
    std::string_view rest = model.substr(slash + 1);
    if (const ProviderSpec* p = t.registry().Find(prefix)) {
      if (rest.empty()) {
        return absl::InvalidArgumentError(absl::StrCat("model '", AV(model), "' names no model"));
      }
      return std::make_pair(p, std::string(rest));
    }
  }
  // A bare name: the one connected provider that lists it, else inference by family. A
  // provider the administrator blocked counts only when no other one lists it.
  std::vector<const ProviderSpec*> serving;
  const ProviderSpec* blocked = nullptr;
  for (const auto& p : t.registry().all()) {
    if (!t.Serves(p, model)) continue;
    if (!t.Blocked(p.id)) {
      serving.push_back(&p);
    } else if (blocked == nullptr) {
      blocked = &p;
    }
  }
  if (serving.empty() && blocked != nullptr) serving.push_back(blocked);
  if (serving.size() == 1) return std::make_pair(serving[0], std::string(model));
  if (serving.size() > 1) {
    std::vector<std::string> ids;
    for (const auto* p : serving) ids.push_back(absl::StrCat(p->prefixes.front(), "/", AV(model)));
    return absl::InvalidArgumentError(absl::StrCat("ambiguous_model: '", AV(model),
                                                   "' is served by several providers; use one of ",
                                                   absl::StrJoin(ids, ", ")));
  }
  const std::string lower = absl::AsciiStrToLower(AV(model));
  const char* inferred = nullptr;
  if (absl::StartsWith(lower, "gpt-") || absl::StartsWith(lower, "o1") ||
      absl::StartsWith(lower, "o3") || absl::StartsWith(lower, "o4") ||
      absl::StartsWith(lower, "chatgpt-")) {
    inferred = "openai";
  } else if (absl::StartsWith(lower, "claude-")) {
    inferred = "anthropic";
  } else if (absl::StartsWith(lower, "gemini-")) {
    inferred = "gemini";
  }
  if (inferred) {
    if (const ProviderSpec* p = t.registry().Find(inferred)) {
      return std::make_pair(p, std::string(model));
    }
  }
  if (size_t slash = model.find('/'); slash != std::string_view::npos) {
    return absl::NotFoundError(absl::StrCat("Unknown provider '", AV(model.substr(0, slash)),
                                            "' in model '", AV(model),
                                            "'. GET /v1/models lists the available models."));
  }
  return absl::NotFoundError(absl::StrCat("The model '", AV(model),
                                          "' does not exist or you do not have access to it. "
                                          "GET /v1/models lists the available models."));
}

absl::Status LocalRouter::Expand(const RoutingTable& t, const std::string& model, int depth,
                                 const ComboSpec* combo, std::vector<std::string> use_counters,
                                 bool allow_alias, PlanContext& ctx, std::vector<Target>* out) {
  if (allow_alias) {
    if (const AliasSpec* alias = t.MatchAlias(model)) {
      return Expand(t, alias->target, depth, combo, std::move(use_counters), false, ctx, out);
    }
  }
  if (const ComboSpec* c = t.FindCombo(model)) {
    if (depth >= kMaxComboDepth) {
      return absl::InvalidArgumentError(
          absl::StrCat("combo '", model, "' is nested deeper than ", kMaxComboDepth, " levels"));
    }
    ctx.grouped = true;
    const size_t before = out->size();
    // Nested combos keep the counters of the combos around them.
    std::vector<Target> inner;
    absl::Status s = ExpandCombo(t, *c, depth + 1, ctx, &inner);
    for (Target& target : inner) {
      target.use_counters.insert(target.use_counters.begin(), use_counters.begin(),
                                 use_counters.end());
      out->push_back(std::move(target));
    }
    return out->size() > before ? absl::OkStatus() : s;
  }
  if (const FallbackChainSpec* chain = t.FindChain(model)) {
    if (depth >= kMaxComboDepth) {
      return absl::InvalidArgumentError(absl::StrCat(
          "fallback chain '", model, "' is nested deeper than ", kMaxComboDepth, " levels"));
    }
    ctx.grouped = true;
    absl::Status first_error;
    const size_t before = out->size();
    for (const std::string& m : chain->models) {
      absl::Status s = Expand(t, m, depth + 1, combo, use_counters, true, ctx, out);
      if (!s.ok() && first_error.ok()) first_error = s;
    }
    return out->size() > before ? absl::OkStatus() : first_error;
  }
  ASSIGN_OR_RETURN(auto single, ResolveSingle(t, model));
  out->push_back(Target{single.first, std::move(single.second), combo, std::move(use_counters)});
  return absl::OkStatus();
}

absl::Status LocalRouter::ExpandCombo(const RoutingTable& t, const ComboSpec& combo, int depth,
                                      PlanContext& ctx, std::vector<Target>* out) {
  const std::string& strategy =
      combo.strategy.empty() ? t.routing().combo_strategy : combo.strategy;
  const int sticky = combo.sticky_limit > 0 ? combo.sticky_limit : t.routing().sticky_limit;
  std::vector<ComboChoice> choices(combo.models.size());
  std::vector<std::string> counters;
  for (size_t i = 0; i < combo.models.size(); ++i) {
    choices[i].weight = combo.models[i].weight;
    choices[i].cost = combo.models[i].cost;
    counters.push_back(absl::StrCat("use:", combo.name, ":", combo.models[i].model));
  }
  if (!DeterministicComboStrategy(strategy)) ctx.deterministic = false;
  if (strategy == "least-used") {
    StateQuery q;
    q.counters = counters;
    const StateSnapshot snap = state_->Read(q, ctx.now);
    for (size_t i = 0; i < choices.size() && i < snap.counters.size(); ++i) {
      choices[i].uses = snap.counters[i];
    }
  }
  const int64_t rr =
      UsesRoundRobinCounter(strategy) ? ctx.Counter(*state_, "rr:combo:" + combo.name) : 0;
  const std::vector<size_t> order =
      OrderComboModels(strategy, choices, sticky, rr, [this] { return NextRandom(); });
  absl::Status first_error;
  for (size_t i : order) {
    absl::Status s = Expand(t, combo.models[i].model, depth, &combo, {counters[i]}, true, ctx, out);
    if (!s.ok() && first_error.ok()) first_error = s;
  }
  if (out->empty()) {
    return first_error.ok()
               ? absl::NotFoundError(absl::StrCat("combo '", combo.name, "' has no usable model"))
               : first_error;
  }
  return absl::OkStatus();
}

void LocalRouter::AppendFallbackChain(const RoutingTable& t, const std::string& requested,
                                      const Target* primary, PlanContext& ctx,
                                      std::vector<Target>* out) {
  for (const auto& entry : t.chains()) {
    const FallbackChainSpec& chain = entry.spec;
    for (size_t i = 0; i < chain.models.size(); ++i) {
      bool match = chain.models[i] == requested;
      if (!match && primary != nullptr) {
        auto r = ResolveSingle(t, chain.models[i]);
        match = r.ok() && r->first == primary->provider && r->second == primary->model;
      }
      if (!match) continue;
      for (size_t j = i + 1; j < chain.models.size(); ++j) {
        (void)Expand(t, chain.models[j], 1, nullptr, {}, true, ctx, out);
      }
      return;
    }
  }
}

absl::StatusOr<v1::RoutePlan> LocalRouter::PlanNow(const v1::PlanRequest& request) {
  RETURN_IF_ERROR(ValidateModel(request.model()));
  // The epoch before the table and the state are read: a change landing meanwhile leaves
  // the plan marked with the older value, so that callers drop it.
  const v1::PlanEpoch epoch = Epoch();
  const bool settled = unrecorded_changes_.load() == 0;
  const std::shared_ptr<const RoutingTable> table_ptr = table();
  const RoutingTable& t = *table_ptr;
  PlanContext ctx;
  ctx.now = options_.clock();
  const int64_t now = ctx.now;
  const std::string& model = request.model();

  // 1. The targets (provider, upstream model), in combo order, then the fallback chain.
  std::vector<Target> targets;
  const absl::Status resolved = Expand(t, model, 0, nullptr, {}, true, ctx, &targets);
  const bool direct = resolved.ok() && !ctx.grouped && targets.size() == 1;
  if (direct || (!resolved.ok() && resolved.code() == absl::StatusCode::kNotFound)) {
    AppendFallbackChain(t, model, direct ? &targets[0] : nullptr, ctx, &targets);
  }
  if (targets.empty()) return resolved;
  {
    std::unordered_set<std::string> seen;
    std::vector<Target> unique;
    for (Target& target : targets) {
      if (seen.insert(absl::StrCat(target.provider->id, "/", target.model)).second) {
        unique.push_back(std::move(target));
      }
    }
    targets.swap(unique);
  }
  // Providers the administrator blocked serve nothing: a plan left without targets is refused.
  const bool direct_allowed = direct && !t.Blocked(targets[0].provider->id);
  std::string blocked;
  std::erase_if(targets, [&](const Target& target) {
    if (!t.Blocked(target.provider->id)) return false;
    if (blocked.empty()) blocked = target.provider->id;
    return true;
  });
  if (targets.empty()) {
    return absl::PermissionDeniedError(
        absl::StrCat("provider '", blocked, "' is blocked by the administrator"));
  }

  v1::RoutePlan plan;
  *plan.mutable_epoch() = epoch;
  plan.set_resolved_model(
      direct_allowed ? absl::StrCat(targets[0].provider->id, "/", targets[0].model) : model);

  // 2. Everything the decision needs from the shared state, in one read.
  StateQuery query;
  std::unordered_map<std::string, size_t> conn_index;
  std::unordered_map<std::string, size_t> provider_index;
  std::vector<size_t> lockout_offset(targets.size(), 0);
  std::vector<std::vector<const ConnectionSpec*>> target_conns(targets.size());
  for (size_t k = 0; k < targets.size(); ++k) {
    const ProviderSpec* p = targets[k].provider;
    target_conns[k] = t.Connections(p->id, targets[k].model);
    const auto& conns = target_conns[k];
    lockout_offset[k] = query.lockouts.size();
    if (conns.empty()) continue;
    if (provider_index.emplace(p->id, query.providers.size()).second) {
      query.providers.push_back(p->id);
    }
    for (const ConnectionSpec* c : conns) {
      if (conn_index.emplace(c->id, query.connections.size()).second) {
        query.connections.push_back(c->id);
      }
      query.lockouts.push_back(LockoutKey(p->id, c->id, targets[k].model));
    }
  }
  if (query.providers.empty()) {
    return absl::NotFoundError(absl::StrCat("No active connection for provider '",
                                            targets[0].provider->id, "' (model '", model, "')"));
  }
  query.session = request.session_id();
  const StateSnapshot snap = state_->Read(query, now);

  // 3. Candidates: per target, its eligible connections in account-strategy order.
  enum class Gate { kAllowed, kBlocked, kProbeDue };
  std::vector<Gate> gates(query.providers.size(), Gate::kAllowed);
  Exclusions ex;
  // When the order of eligible connections may change by itself (a quota window resets).
  int64_t reorder_at = 0;
  for (size_t i = 0; i < query.providers.size(); ++i) {
    const BreakerStatus& b = snap.breakers[i];
    if (b.state == BreakerState::kClosed) continue;
    if (b.state == BreakerState::kOpen && now < b.open_until_ms) {
      gates[i] = Gate::kBlocked;
      Exclusions::Note(ex.breaker, b.open_until_ms);
    } else if (b.state == BreakerState::kHalfOpen && b.probe_in_flight) {
      gates[i] = Gate::kBlocked;
      Exclusions::Note(ex.breaker, now + 1000);
    } else {
      gates[i] = Gate::kProbeDue;
    }
  }
  std::vector<v1::Candidate> cands;
  std::vector<size_t> cand_target;
  std::vector<std::string> cand_strategy;
  std::unordered_set<std::string> seen;
  std::unordered_set<std::string> probing;
  const size_t max_candidates = static_cast<size_t>(std::max(t.routing().max_candidates, 1));
  auto add = [&](size_t k, const ConnectionSpec* c, const std::string& strategy, bool probe) {
    if (cands.size() >= max_candidates) return;
    if (!seen.insert(absl::StrCat(c->id, "|", targets[k].model)).second) return;
    const ProviderSpec* p = targets[k].provider;
    v1::Candidate cand;
    cand.set_provider(p->id);
    cand.set_connection_id(c->id);
    cand.set_connection_name(c->name);
    cand.set_upstream_model(targets[k].model);
    cand.set_format(p->format);
    cand.set_base_url(p->base_url);
    cand.set_auth_style(p->auth);
    cand.set_oauth(p->oauth || c->oauth);
    cand.set_probe(probe);
    cand.set_session_id(request.session_id());
    cands.push_back(std::move(cand));
    cand_target.push_back(k);
    cand_strategy.push_back(strategy);
  };
  for (size_t k = 0; k < targets.size(); ++k) {
    const ProviderSpec* p = targets[k].provider;
    const auto& conns = target_conns[k];
    if (conns.empty()) continue;
    const size_t pi = provider_index.at(p->id);
    if (gates[pi] == Gate::kBlocked) {
      if (std::find(ex.open_breakers.begin(), ex.open_breakers.end(), p->id) ==
          ex.open_breakers.end()) {
        ex.open_breakers.push_back(p->id);
      }
      continue;
    }
    std::vector<AccountChoice> eligible;
    for (size_t j = 0; j < conns.size(); ++j) {
      const ConnectionState& cs = snap.connections[conn_index.at(conns[j]->id)];
      const int64_t locked = snap.lockout_until_ms[lockout_offset[k] + j];
      if (cs.cooldown_until_ms > now) {
        Exclusions::Note(ex.cooldown, cs.cooldown_until_ms);
        continue;
      }
      if (QuotaExhausted(*conns[j], now)) {
        Exclusions::Note(ex.quota, conns[j]->quota_resets_at_ms);
        continue;
      }
      if (locked > now) {
        Exclusions::Note(ex.lockout, locked);
        continue;
      }
      if (conns[j]->quota_remaining_percent >= 0 && conns[j]->quota_resets_at_ms > now) {
        Exclusions::Note(reorder_at, conns[j]->quota_resets_at_ms);
      }
      eligible.push_back({conns[j], cs});
    }
    if (eligible.empty()) continue;
    const RoutingOverride combo_routing =
        targets[k].combo ? targets[k].combo->routing : RoutingOverride();
    const RoutingOverride provider_routing = t.ProviderRouting(p->id);
    const std::string strategy = !combo_routing.strategy.empty()      ? combo_routing.strategy
                                 : !provider_routing.strategy.empty() ? provider_routing.strategy
                                                                      : t.routing().strategy;
    const int sticky = combo_routing.sticky_limit > 0      ? combo_routing.sticky_limit
                       : provider_routing.sticky_limit > 0 ? provider_routing.sticky_limit
                                                           : t.routing().sticky_limit;
    if (!DeterministicAccountStrategy(strategy)) ctx.deterministic = false;
    const int64_t rr =
        UsesRoundRobinCounter(strategy) ? ctx.Counter(*state_, "rr:acct:" + p->id) : 0;
    const std::vector<size_t> order =
        OrderAccounts(strategy, eligible, sticky, rr, now, [this] { return NextRandom(); });
    if (gates[pi] == Gate::kProbeDue) {
      // Half-open: exactly one request (across every replica) probes the provider, and
      // only when it would be tried first.
      if (probing.count(p->id)) continue;
      const int64_t probe_ttl = t.Breaker(p->oauth).reset_timeout_ms;
      if (!cands.empty() || !state_->TryProbe(p->id, now, probe_ttl)) {
        Exclusions::Note(ex.breaker, now + 1000);
        if (std::find(ex.open_breakers.begin(), ex.open_breakers.end(), p->id) ==
            ex.open_breakers.end()) {
          ex.open_breakers.push_back(p->id);
        }
        continue;
      }
      probing.insert(p->id);
      state_->AddStat("breaker_probes", 1);
      add(k, eligible[order[0]].connection, strategy, /*probe=*/true);
      continue;
    }
    for (size_t idx : order) add(k, eligible[idx].connection, strategy, false);
  }

  // 4. A sticky session goes first to the connection it is pinned to.
  if (!snap.session_connection.empty() && !cands.empty() && !cands[0].probe()) {
    for (size_t i = 1; i < cands.size(); ++i) {
      if (cands[i].connection_id() != snap.session_connection) continue;
      std::rotate(cands.begin(), cands.begin() + static_cast<int64_t>(i),
                  cands.begin() + static_cast<int64_t>(i) + 1);
      std::rotate(cand_target.begin(), cand_target.begin() + static_cast<int64_t>(i),
                  cand_target.begin() + static_cast<int64_t>(i) + 1);
      std::rotate(cand_strategy.begin(), cand_strategy.begin() + static_cast<int64_t>(i),
                  cand_strategy.begin() + static_cast<int64_t>(i) + 1);
      break;
    }
  }

  // 5. Pacing: the first candidate whose connection has room gets a slot; paced ones in
  // front of it are full now and leave the plan. Later paced candidates get theirs through
  // Acquire when the edge reaches them.
  bool paced = false;
  while (!cands.empty()) {
    const PacingPolicy pacing = t.Pacing(cands[0].provider());
    if (!pacing.enabled()) break;
    paced = true;
    const std::string lease = NewLeaseId(request.request_id());
    const SlotGrant grant = state_->AcquireSlot(cands[0].connection_id(), lease, now, pacing);
    if (grant.granted) {
      if (pacing.max_concurrent > 0) cands[0].set_lease_id(lease);
      break;
    }
    Exclusions::Note(ex.pacing, std::max(grant.retry_at_ms, now + 1));
    cands.erase(cands.begin());
    cand_target.erase(cand_target.begin());
    cand_strategy.erase(cand_strategy.begin());
  }
  for (size_t i = 1; i < cands.size(); ++i) {
    cands[i].set_paced(t.Pacing(cands[i].provider()).enabled());
    paced = paced || cands[i].paced();
  }

  // 6. What the chosen first candidate changes: last use, combo usage counters.
  if (!cands.empty()) {
    const std::string& strategy = cand_strategy[0];
    if (strategy == "least-used" || strategy == "p2c") {
      state_->Touch(cands[0].connection_id(), now);
    }
    for (const std::string& counter : targets[cand_target[0]].use_counters) {
      state_->Increment(counter, now, kHourMs);
    }
  }
  // 7. Whether a remote caller may answer the same model from a copy for a while: only a
  // plan that any request for this model would get from the same table and state (what of
  // the request it depends on, model, client_format and stream, is the caller's cache key),
  // and never past the moment something it left out or ordered by changes by itself. (The
  // answers served from such a copy skip step 6; its combo usage counters are read only by
  // least-used combos, whose plans are never cached.)
  if (!cands.empty() && options_.plan_cache_ms > 0 && settled && ctx.deterministic &&
      request.session_id().empty() && probing.empty() && !paced && ex.pacing == 0) {
    int64_t cache_ms = options_.plan_cache_ms;
    for (int64_t at : {ex.Earliest(), reorder_at}) {
      if (at > 0) cache_ms = std::min(cache_ms, at - now);
    }
    if (cache_ms > 0) plan.set_cache_ms(cache_ms);
  }
  for (auto& c : cands) *plan.add_candidates() = std::move(c);
  for (const auto& p : ex.open_breakers) plan.add_open_breakers(p);
  if (plan.candidates_size() > 0) return plan;

  // 7. Nothing usable now: why, and whether waiting is worth it.
  const int64_t earliest = ex.Earliest();
  const int64_t retry_ms = std::max<int64_t>(1, earliest > now ? earliest - now : 1);
  plan.set_retry_after_ms(retry_ms);
  const bool only_breakers =
      ex.breaker > 0 && ex.cooldown == 0 && ex.lockout == 0 && ex.pacing == 0 && ex.quota == 0;
  if (only_breakers) {
    plan.set_reason(v1::UNAVAILABLE_BREAKER_OPEN);
    plan.set_message(absl::StrCat(
        "The circuit breaker of provider '", absl::StrJoin(ex.open_breakers, "', '"),
        "' is open after repeated upstream failures; retry in ", Seconds(retry_ms), " s"));
    return plan;
  }
  if (ex.cooldown > 0) {
    plan.set_reason(v1::UNAVAILABLE_COOLDOWN);
    plan.set_message(absl::StrCat("Every account for '", model, "' is cooling down; retry in ",
                                  Seconds(retry_ms), " s"));
  } else if (ex.pacing > 0) {
    plan.set_reason(v1::UNAVAILABLE_PACING);
    plan.set_message(absl::StrCat("Every account for '", model,
                                  "' is at its request rate or concurrency limit; retry in ",
                                  Seconds(retry_ms), " s"));
  } else if (ex.quota > 0) {
    // Answered like a cooldown, until the earliest reset of a spent subscription window.
    plan.set_reason(v1::UNAVAILABLE_COOLDOWN);
    plan.set_message(absl::StrCat("Every account for '", model,
                                  "' has used up its provider quota; retry in ",
                                  Seconds(retry_ms), " s"));
  } else {
    plan.set_reason(v1::UNAVAILABLE_LOCKOUT);
    plan.set_message(absl::StrCat("Model '", model,
                                  "' is locked out on every account after upstream errors; "
                                  "retry in ",
                                  Seconds(retry_ms), " s"));
  }
  const auto& wait = t.resilience().wait_for_cooldown;
  if (wait.enabled && wait.max_retries > 0 && retry_ms <= wait.max_wait_ms) {
    plan.set_wait_ms(retry_ms);
    plan.set_max_wait_retries(wait.max_retries);
  }
  return plan;
}

void LocalRouter::Report(const v1::Outcome& outcome) {
  if (!options_.async_reports) {
    Record(outcome);
    return;
  }
  constexpr size_t kMaxQueued = 100000;
  const bool changes = ChangesRouting(outcome);
  {
    std::lock_guard<std::mutex> lock(reports_mu_);
    if (reports_.size() >= kMaxQueued) {
      if (reports_dropped_++ % 10000 == 0) {
        LogWarn("outcome reports dropped: the state store is too slow",
                {{"dropped", std::to_string(reports_dropped_)}});
      }
      return;
    }
    if (changes) unrecorded_changes_.fetch_add(1);
    reports_.push_back(outcome);
  }
  reports_cv_.notify_one();
}

void LocalRouter::ReportBatch(const v1::OutcomeBatch& batch, Callback<v1::ReportBatchAck> done) {
  if (options_.async_reports) {
    for (const v1::Outcome& outcome : batch.outcomes()) Report(outcome);
  } else {
    // In order; each run of plain successes (no change of routing, no slot to free) in one
    // go, which is one round trip to the store.
    std::vector<SuccessRecord> run;
    auto flush = [&] {
      if (run.empty()) return;
      state_->RecordSuccessOutcomes(run, options_.clock());
      run.clear();
    };
    const std::shared_ptr<const RoutingTable> t = table();
    for (const v1::Outcome& outcome : batch.outcomes()) {
      if (!ChangesRouting(outcome) && !outcome.candidate().connection_id().empty() &&
          outcome.candidate().lease_id().empty()) {
        run.push_back(SuccessOf(outcome, *t));
        continue;
      }
      flush();
      Record(outcome);
    }
    flush();
  }
  v1::ReportBatchAck ack;
  *ack.mutable_epoch() = Epoch();
  done(std::move(ack));
}

SuccessRecord LocalRouter::SuccessOf(const v1::Outcome& outcome, const RoutingTable& t) {
  SuccessRecord success;
  success.connection_id = outcome.candidate().connection_id();
  success.provider = outcome.candidate().provider();
  success.probe = outcome.candidate().probe();
  success.latency_ms = outcome.latency_ms();
  success.session = outcome.candidate().session_id();
  success.session_ttl_ms = int64_t{t.routing().session_ttl_s} * 1000;
  return success;
}

void LocalRouter::Record(const v1::Outcome& outcome) {
  RecordOutcome(outcome);
  if (ChangesRouting(outcome)) plan_epoch_.fetch_add(1);
}

void LocalRouter::RecordOutcome(const v1::Outcome& outcome) {
  const v1::Candidate& cand = outcome.candidate();
  if (cand.connection_id().empty()) return;
  const std::shared_ptr<const RoutingTable> table_ptr = table();
  const RoutingTable& t = *table_ptr;
  const int64_t now = options_.clock();
  const std::string& conn = cand.connection_id();
  const std::string& provider = cand.provider();
  bool oauth = cand.oauth();
  if (const ProviderSpec* p = t.registry().Find(provider)) oauth = oauth || p->oauth;
  if (!cand.lease_id().empty()) state_->ReleaseSlot(conn, cand.lease_id());

  const int status = outcome.http_status();
  const bool network = outcome.network_error() || status == 0;
  const bool provider_failure = network || status == 408 || status >= 500;
  const bool hints = t.resilience().cooldown.use_upstream_retry_hints;
  const int64_t hint = hints ? std::max<int64_t>(outcome.retry_after_ms(), 0) : 0;
  auto cool = [&] {
    state_->StartCooldown(CooldownScope::kConnection, conn, now, t.Cooldown(oauth), hint);
    state_->AddStat("cooldowns_started", 1);
  };
  auto lock_out = [&] {
    state_->StartCooldown(CooldownScope::kModel, LockoutKey(provider, conn, cand.upstream_model()),
                          now, t.Lockout(), hint);
    state_->AddStat("lockouts_started", 1);
  };

  if (status >= 200 && status < 300 && !network) {
    const BreakerStatus before = state_->RecordSuccessOutcome(SuccessOf(outcome, t), now);
    if (cand.probe() && before.state == BreakerState::kClosed) {
      state_->AddStat("breaker_closed", 1);
    }
  } else if (provider_failure) {
    cool();
    const BreakerStatus b = state_->RecordFailure(provider, now, t.Breaker(oauth), cand.probe());
    if (b.state == BreakerState::kOpen &&
        b.open_until_ms == now + BreakerOpenMs(t.Breaker(oauth), b.trips)) {
      state_->AddStat("breaker_opened", 1);
      LogWarn("provider circuit breaker open",
              {{"provider", provider},
               {"retry_in_ms", std::to_string(b.open_until_ms - now)},
               {"trips", std::to_string(b.trips)}});
    }
  } else {
    // The provider answered: not a provider failure (a probe that gets any such answer
    // closes the breaker; a connection's 429 neither counts nor resets).
    if (status != 429 || cand.probe()) {
      state_->RecordSuccess(provider, now, cand.probe());
    }
    if (status == 429) {
      if (outcome.model_scoped()) {
        lock_out();
      } else {
        cool();
      }
    } else if (status == 404) {
      lock_out();
    } else if (status == 401) {
      // OAuth: the credential needs a refresh, which a cooldown would not bring.
      if (!oauth) cool();
    } else if (status == 402 || status == 403) {
      cool();
    }
  }

  // Rate-limit auto-detection: an upstream that says nothing is left until its reset.
  if (outcome.has_rate_limit()) {
    const v1::RateLimit& rl = outcome.rate_limit();
    int64_t hold = 0;
    if (rl.remaining_requests() == 0 && rl.reset_requests_ms() > 0) {
      hold = std::max(hold, rl.reset_requests_ms());
    }
    if (rl.remaining_tokens() == 0 && rl.reset_tokens_ms() > 0) {
      hold = std::max(hold, rl.reset_tokens_ms());
    }
    if (hold > 0) {
      hold = std::min(hold, t.resilience().cooldown.max_ms);
      state_->HoldUntil(conn, now, now + hold);
      state_->AddStat("rate_limit_holds", 1);
    }
  }
}

void LocalRouter::ListModels(Callback<v1::ListModelsResponse> done) {
  const std::shared_ptr<const RoutingTable> t = table();
  v1::ListModelsResponse out;
  for (const auto& p : t->registry().all()) {
    if (t->Blocked(p.id)) continue;
    for (const auto& m : t->ServedModels(p)) {
      auto* info = out.add_models();
      info->set_id(absl::StrCat(p.prefixes.front(), "/", m));
      info->set_owned_by(p.id);
    }
  }
  for (const auto& e : t->combos()) {
    auto* info = out.add_models();
    info->set_id(e.spec.name);
    info->set_owned_by("combo");
  }
  done(std::move(out));
}

void LocalRouter::Acquire(const v1::AcquireRequest& request, Callback<v1::AcquireResponse> done) {
  const std::shared_ptr<const RoutingTable> t = table();
  const v1::Candidate& cand = request.candidate();
  v1::AcquireResponse out;
  const PacingPolicy pacing = t->Pacing(cand.provider());
  if (!pacing.enabled() || cand.connection_id().empty()) {
    out.set_granted(true);
    done(std::move(out));
    return;
  }
  const int64_t now = options_.clock();
  const std::string lease = NewLeaseId(request.request_id());
  const SlotGrant grant = state_->AcquireSlot(cand.connection_id(), lease, now, pacing);
  out.set_granted(grant.granted);
  if (grant.granted && pacing.max_concurrent > 0) out.set_lease_id(lease);
  if (!grant.granted) out.set_retry_after_ms(std::max<int64_t>(1, grant.retry_at_ms - now));
  done(std::move(out));
}

RouterPtr MakeLocalRouter(ConfigPtr config, std::shared_ptr<const ProviderRegistry> registry,
                          StateStorePtr state, Clock clock) {
  RouterOptions options;
  options.clock = std::move(clock);
  options.async_reports = state->Shared();
  return MakeLocalRouter(std::move(config), std::move(registry), std::move(state),
                         std::move(options));
}

RouterPtr MakeLocalRouter(ConfigPtr config, std::shared_ptr<const ProviderRegistry> registry,
                          StateStorePtr state, RouterOptions options) {
  return std::make_shared<LocalRouter>(std::move(config), std::move(registry), std::move(state),
                                       std::move(options));
}

}  // namespace omniroute::router
