#pragma once

#include <memory>

#include "common/callback.h"
#include "omniroute/router/v1/router.pb.h"

namespace omniroute::router {

// Decides which provider, account and upstream model serve a request.
class Router {
 public:
  virtual ~Router() = default;

  // Resolves request.model into candidates, best first. NOT_FOUND for an unknown model or
  // provider, INVALID_ARGUMENT for a malformed model string. An empty candidate list with
  // retry_after_ms > 0 means every account is cooling down.
  virtual void Plan(const v1::PlanRequest& request, Callback<v1::RoutePlan> done) = 0;

  // Records how one attempt went (cooldowns, statistics). Never blocks the caller.
  virtual void Report(const v1::Outcome& outcome) = 0;

  // The models the configured providers serve.
  virtual void ListModels(Callback<v1::ListModelsResponse> done) = 0;
};

using RouterPtr = std::shared_ptr<Router>;

}  // namespace omniroute::router
