#pragma once

#include <memory>

#include "absl/status/status.h"
#include "common/callback.h"
#include "omniroute/router/v1/router.pb.h"

namespace omniroute::router {

// Decides which provider, account and upstream model serve a request.
class Router {
 public:
  virtual ~Router() = default;

  // Resolves request.model into candidates, best first. NOT_FOUND for an unknown model or
  // provider, INVALID_ARGUMENT for a malformed model string or an ambiguous bare name. An
  // empty candidate list says why (reason, message, retry_after_ms) and, through wait_ms,
  // whether the caller should wait and plan again.
  virtual void Plan(const v1::PlanRequest& request, Callback<v1::RoutePlan> done) = 0;

  // Records how one attempt went (cooldowns, lockouts, breaker, pacing, sessions,
  // statistics) and frees the candidate's slot. Never blocks on a remote call.
  virtual void Report(const v1::Outcome& outcome) = 0;

  // Records outcomes in order, as Report does each, and says where the router's plans
  // stand afterwards (see RoutePlan.cache_ms).
  virtual void ReportBatch(const v1::OutcomeBatch& batch, Callback<v1::ReportBatchAck> done) {
    for (const v1::Outcome& outcome : batch.outcomes()) Report(outcome);
    done(v1::ReportBatchAck());
  }

  // The models the configured providers serve.
  virtual void ListModels(Callback<v1::ListModelsResponse> done) = 0;

  // An in-flight slot for a paced candidate that has none yet (see Candidate.paced).
  virtual void Acquire(const v1::AcquireRequest& request, Callback<v1::AcquireResponse> done) {
    v1::AcquireResponse granted;
    granted.set_granted(true);
    done(std::move(granted));
  }

  // Breakers, cooldowns, lockouts, latency, counters and the state store's reachability.
  virtual void Health(const v1::HealthRequest& request, Callback<v1::HealthResponse> done) {
    done(absl::UnimplementedError("health is not available"));
  }

  // The routing admin API (see AdminRequest in router.proto).
  virtual void Admin(const v1::AdminRequest& request, Callback<v1::AdminResponse> done) {
    done(absl::UnimplementedError("the routing admin API is not available"));
  }
};

using RouterPtr = std::shared_ptr<Router>;

// Whether recording `outcome` may change what a plan says: anything but a plain 2xx
// success (no network error, not a breaker probe, no rate-limit header saying nothing is
// left until a reset). Such an outcome invalidates cached plans (RoutePlan.cache_ms).
inline bool ChangesRouting(const v1::Outcome& outcome) {
  const int status = outcome.http_status();
  if (status < 200 || status >= 300 || outcome.network_error()) return true;
  if (outcome.candidate().probe()) return true;
  if (outcome.has_rate_limit()) {
    const v1::RateLimit& rl = outcome.rate_limit();
    if (rl.remaining_requests() == 0 && rl.reset_requests_ms() > 0) return true;
    if (rl.remaining_tokens() == 0 && rl.reset_tokens_ms() > 0) return true;
  }
  return false;
}

}  // namespace omniroute::router
