#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/service_type.h>

#include <chrono>
#include <cstddef>
#include <memory>

#include "router.h"

namespace omniroute::router {

// The router.v1.Router gRPC service over an implementation (converts and delegates). The
// implementation's calls run on `threads` threads of the service's own, as they may block
// on the state store.
std::unique_ptr<grpc::Service> MakeRouterGrpcService(RouterPtr impl, int threads = 8);

// How the client adapter caches plans and queues reports.
struct RouterClientOptions {
  // Answer from a copy of a plan the router marked cacheable (RoutePlan.cache_ms).
  bool plan_cache = true;
  size_t max_cached_plans = 1024;  // beyond this the cache starts over
  size_t max_queued_reports = 100000;  // beyond this new reports are dropped (and counted)
  size_t report_batch_size = 500;      // outcomes per ReportBatch call
  // How long a plain success waits for company; any other outcome (and a full batch) is
  // sent at once, with whatever is queued before it.
  std::chrono::milliseconds report_delay{10};
  std::chrono::milliseconds report_timeout{5000};
  std::chrono::milliseconds flush_on_destroy{2000};
};

// A Router that calls a remote router service over `channel`.
//
// Plan answers from a small cache while a plan the router marked cacheable is fresh: per
// model, client_format and stream, for requests without a session id, for at most
// RoutePlan.cache_ms, and only until this client reports an outcome that changes routing
// (ChangesRouting: the whole cache is dropped), makes an admin change, or hears of a newer
// epoch of the router that made the plan (each ReportBatch and Admin answer carries it).
// Report only queues: one background thread sends the queue in order, in ReportBatch
// calls; a full queue drops new reports with a warning, and the destructor sends what is
// queued within flush_on_destroy.
RouterPtr MakeRouterGrpcClient(std::shared_ptr<grpc::Channel> channel,
                               const RouterClientOptions& options = {});

}  // namespace omniroute::router
