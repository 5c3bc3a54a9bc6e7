#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/service_type.h>

#include <chrono>
#include <cstddef>
#include <memory>

#include "usage.h"

namespace omniroute::usage {

// The usage.v1.Usage gRPC service over an implementation (converts and delegates).
std::unique_ptr<grpc::Service> MakeUsageGrpcService(UsagePtr impl);

// How the client adapter queues and sends records.
struct UsageClientOptions {
  size_t max_queued = 100000;                 // beyond this the oldest queued record is dropped
  size_t batch_size = 500;                    // records per Record call
  std::chrono::milliseconds batch_delay{50};  // how long a partial batch waits for more
  std::chrono::milliseconds call_timeout{5000};
  std::chrono::milliseconds retry_min{100};  // backoff while the service is unreachable
  std::chrono::milliseconds retry_max{2000};
  std::chrono::milliseconds flush_on_destroy{2000};
};

// Usage that calls a remote usage service over `channel`. Record() only queues: one
// background thread sends the queue in order, in batches, retrying while the service is
// unreachable.
UsagePtr MakeUsageGrpcClient(std::shared_ptr<grpc::Channel> channel,
                             const UsageClientOptions& options = {});

}  // namespace omniroute::usage
