#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/service_type.h>

#include <memory>

#include "router.h"

namespace omniroute::router {

// The router.v1.Router gRPC service over an implementation (converts and delegates). The
// implementation's calls run on `threads` threads of the service's own, as they may block
// on the state store.
std::unique_ptr<grpc::Service> MakeRouterGrpcService(RouterPtr impl, int threads = 8);

// A Router that calls a remote router service over `channel`.
RouterPtr MakeRouterGrpcClient(std::shared_ptr<grpc::Channel> channel);

}  // namespace omniroute::router
