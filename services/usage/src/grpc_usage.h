#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/service_type.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "usage.h"

namespace omniroute::usage {

// The usage.v1.Usage gRPC service over an implementation (converts and delegates).
std::unique_ptr<grpc::Service> MakeUsageGrpcService(UsagePtr impl);

// How the client adapter queues and sends records.
struct UsageClientOptions {
  size_t max_queued = 100000;                 // in memory; beyond this the oldest is dropped
  size_t batch_size = 500;                    // records per Record call
  std::chrono::milliseconds batch_delay{50};  // how long a partial batch waits for more
  std::chrono::milliseconds call_timeout{5000};
  std::chrono::milliseconds retry_min{100};  // backoff while the service is unreachable
  std::chrono::milliseconds retry_max{2000};
  std::chrono::milliseconds flush_on_destroy{2000};
  // Durable spool (fsync'd, bounded) for records while the service is unreachable, e.g.
  // $DATA_DIR/spool/usage-edge; empty = records wait in memory only. One process per
  // directory.
  std::string spool_dir;
  int64_t spool_max_bytes = int64_t{256} << 20;
};

// Usage that calls a remote usage service over `channel`. Record() only queues: one
// background thread sends the queue in order, in batches (unary Record calls, each
// acknowledged once durable on the service). While the service is unreachable the queue
// spills to the spool (when configured) and the spool is replayed, in order, before newer
// records once the service answers again. Flush() drains the queue and the spool; what it
// cannot deliver in time stays in the spool for the next start.
UsagePtr MakeUsageGrpcClient(std::shared_ptr<grpc::Channel> channel,
                             const UsageClientOptions& options = {});

}  // namespace omniroute::usage
