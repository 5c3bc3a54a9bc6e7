#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "absl/status/status.h"

namespace omniroute {

// Metadata key carrying the gateway's request id between services.
inline constexpr char kRequestIdMetadata[] = "x-request-id";

inline grpc::Status ToGrpcStatus(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

inline absl::Status FromGrpcStatus(const grpc::Status& s) {
  return absl::Status(static_cast<absl::StatusCode>(s.error_code()), s.error_message());
}

// An insecure channel to a service on the internal network (host:port or unix:path).
std::shared_ptr<grpc::Channel> MakeServiceChannel(const std::string& address);

// Builds and starts a server on `address` with the standard health service enabled and the
// given services registered; marks each named service SERVING; counts every call in
// GrpcServerMetrics::Default() (common/metrics.h). Returns nullptr on failure.
std::unique_ptr<grpc::Server> StartGrpcServer(const std::string& address,
                                              std::initializer_list<grpc::Service*> services,
                                              int* bound_port = nullptr);

}  // namespace omniroute
