#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/service_type.h>

#include <memory>

#include "router.h"

namespace omniroute::router {

// The router.v1.Router gRPC service over an implementation (converts and delegates).
std::unique_ptr<grpc::Service> MakeRouterGrpcService(RouterPtr impl);

// A Router that calls a remote router service over `channel`.
RouterPtr MakeRouterGrpcClient(std::shared_ptr<grpc::Channel> channel);

}  // namespace omniroute::router
