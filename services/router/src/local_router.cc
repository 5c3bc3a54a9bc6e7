#include "local_router.h"

#include <algorithm>
#include <chrono>
#include <ctime>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/strings.h"

namespace omniroute::router {
namespace {

// A connection as the router sees it: no secret.
struct Route {
  const ProviderSpec* provider;
  const ConnectionSpec* connection;
};

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

class LocalRouter final : public Router {
 public:
  LocalRouter(ConfigPtr config, std::shared_ptr<const ProviderRegistry> registry,
              StateStorePtr state, Clock clock)
      : config_(std::move(config)),
        registry_(std::move(registry)),
        state_(std::move(state)),
        clock_(std::move(clock)) {
    for (const auto& c : config_->connections) {
      if (!c.enabled) continue;
      const ProviderSpec* p = registry_->Find(c.provider);
      if (p) by_provider_[p->id].push_back(&c);
    }
    for (auto& [id, list] : by_provider_) {
      std::stable_sort(list.begin(), list.end(),
                       [](const ConnectionSpec* a, const ConnectionSpec* b) {
                         return a->priority < b->priority;
                       });
    }
  }

  // Interface
  void Plan(const v1::PlanRequest& request, Callback<v1::RoutePlan> done) override {
    done(PlanNow(request));
  }

  void Report(const v1::Outcome& outcome) override {
    const auto& cand = outcome.candidate();
    if (cand.connection_id().empty()) return;
    const int status = outcome.http_status();
    const bool retryable = outcome.network_error() || status == 429 || status == 408 ||
                           status >= 500;
    if (retryable) {
      const ProviderSpec* p = registry_->Find(cand.provider());
      CooldownPolicy policy;
      policy.base_ms = p && p->oauth ? config_->resilience.cooldown_oauth_base_ms
                                     : config_->resilience.cooldown_base_ms;
      policy.max_ms = config_->resilience.cooldown_max_ms;
      policy.max_steps = config_->resilience.max_backoff_steps;
      state_->StartCooldown(cand.connection_id(), clock_(), policy, outcome.retry_after_ms());
    } else if (status >= 200 && status < 300) {
      state_->ClearCooldown(cand.connection_id());
    }
  }

  void ListModels(Callback<v1::ListModelsResponse> done) override {
    v1::ListModelsResponse out;
    for (const auto& p : registry_->all()) {
      if (!by_provider_.count(p.id)) continue;
      for (const auto& m : p.models) {
        auto* info = out.add_models();
        info->set_id(absl::StrCat(p.prefixes.front(), "/", m));
        info->set_owned_by(p.id);
      }
    }
    done(std::move(out));
  }

 private:
  // Which provider serves `model`, and the upstream model name.
  absl::StatusOr<std::pair<const ProviderSpec*, std::string>> Resolve(std::string_view model) {
    if (size_t slash = model.find('/'); slash != std::string_view::npos) {
      std::string_view prefix = model.substr(0, slash);
      std::string_view rest = model.substr(slash + 1);
      if (const ProviderSpec* p = registry_->Find(prefix)) {
        if (rest.empty()) {
          return absl::InvalidArgumentError(absl::StrCat("model '", AV(model), "' names no model"));
        }
        return std::make_pair(p, std::string(rest));
      }
    }
    // A bare name: a provider that lists it among its models, else inference by family.
    std::vector<const ProviderSpec*> serving;
    for (const auto& p : registry_->all()) {
      if (!by_provider_.count(p.id)) continue;
      if (std::find(p.models.begin(), p.models.end(), model) != p.models.end()) {
        serving.push_back(&p);
      }
    }
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
    if (absl::StartsWith(AV(lower), "gpt-") || absl::StartsWith(AV(lower), "o1") ||
        absl::StartsWith(AV(lower), "o3") || absl::StartsWith(AV(lower), "o4") ||
        absl::StartsWith(AV(lower), "chatgpt-")) {
      inferred = "openai";
    } else if (absl::StartsWith(AV(lower), "claude-")) {
      inferred = "anthropic";
    } else if (absl::StartsWith(AV(lower), "gemini-")) {
      inferred = "gemini";
    }
    if (inferred) {
      if (const ProviderSpec* p = registry_->Find(inferred)) {
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

  absl::StatusOr<v1::RoutePlan> PlanNow(const v1::PlanRequest& request) {
    if (auto s = ValidateModel(request.model()); !s.ok()) return s;
    auto resolved = Resolve(request.model());
    if (!resolved.ok()) return resolved.status();
    const ProviderSpec* provider = resolved->first;
    auto it = by_provider_.find(provider->id);
    if (it == by_provider_.end() || it->second.empty()) {
      return absl::NotFoundError(absl::StrCat("No active connection for provider '", provider->id,
                                              "' (model '", request.model(), "')"));
    }
    const auto& conns = it->second;
    std::vector<std::string> ids;
    ids.reserve(conns.size());
    for (const auto* c : conns) ids.push_back(c->id);
    const int64_t now = clock_();
    const std::vector<int64_t> until = state_->CooldownUntil(ids, now);
    v1::RoutePlan plan;
    plan.set_resolved_model(absl::StrCat(provider->id, "/", resolved->second));
    int64_t earliest = 0;
    for (size_t i = 0; i < conns.size(); ++i) {
      const int64_t u = i < until.size() ? until[i] : 0;
      if (u > now) {
        earliest = earliest == 0 ? u : std::min(earliest, u);
        continue;
      }
      auto* cand = plan.add_candidates();
      cand->set_provider(provider->id);
      cand->set_connection_id(conns[i]->id);
      cand->set_connection_name(conns[i]->name);
      cand->set_upstream_model(resolved->second);
      cand->set_format(provider->format);
      cand->set_base_url(provider->base_url);
      cand->set_auth_style(provider->auth);
    }
    if (plan.candidates_size() == 0) plan.set_retry_after_ms(std::max<int64_t>(1, earliest - now));
    return plan;
  }

  ConfigPtr config_;
  std::shared_ptr<const ProviderRegistry> registry_;
  StateStorePtr state_;
  Clock clock_;
  std::unordered_map<std::string, std::vector<const ConnectionSpec*>> by_provider_;
};

}  // namespace

int64_t SystemNowMs() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

RouterPtr MakeLocalRouter(ConfigPtr config, std::shared_ptr<const ProviderRegistry> registry,
                          StateStorePtr state, Clock clock) {
  return std::make_shared<LocalRouter>(std::move(config), std::move(registry), std::move(state),
                                       std::move(clock));
}

}  // namespace omniroute::router
