#pragma once

#include <grpcpp/support/server_interceptor.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace prometheus {
class Collectable;
class Counter;
class Histogram;
class Registry;
template <typename T>
class Family;
}  // namespace prometheus

struct mg_context;

namespace omniroute {

// The process-wide registry: gRPC server metrics and whatever else a process registers.
const std::shared_ptr<prometheus::Registry>& MetricsRegistry();

// Collects process_cpu_seconds_total, process_resident_memory_bytes, process_virtual_memory_bytes,
// process_open_fds, process_max_fds and process_start_time_seconds from /proc/self at each scrape.
std::shared_ptr<prometheus::Collectable> MakeProcessCollector();

// gRPC server metrics named as grpc-ecosystem's go-grpc-prometheus names them:
// grpc_server_started_total and grpc_server_handled_total{grpc_type, grpc_service, grpc_method[,
// grpc_code]} and the grpc_server_handling_seconds histogram. Thread-safe.
class GrpcServerMetrics {
 public:
  explicit GrpcServerMetrics(prometheus::Registry& registry);

  // The metrics of every server StartGrpcServer builds (in MetricsRegistry()).
  static GrpcServerMetrics& Default();

  // An interceptor factory for grpc::ServerBuilder that counts into this object, which must outlive
  // the server.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> InterceptorFactory();

  // `full_method` is "/package.Service/Method".
  void Started(std::string_view type, std::string_view full_method);
  void Handled(std::string_view type, std::string_view full_method, grpc::StatusCode code,
               double seconds);

 private:
  prometheus::Family<prometheus::Counter>* started_;
  prometheus::Family<prometheus::Counter>* handled_;
  prometheus::Family<prometheus::Histogram>* handling_seconds_;
};

// go-grpc-prometheus's label value of a status code: "OK", "NotFound", "Unavailable", ...
std::string_view GrpcCodeName(grpc::StatusCode code);

// A small HTTP server for Prometheus: GET /metrics answers the text exposition format 0.0.4
// (MetricsRegistry(), the process metrics, then the text of each source in order); GET /healthz
// answers "ok". Serves on its own two threads until destroyed.
class MetricsServer {
 public:
  using TextSource = std::function<std::string()>;

  // Listens on `address` (HOST:PORT; port 0 picks a free one).
  static absl::StatusOr<std::unique_ptr<MetricsServer>> Start(const std::string& address,
                                                              std::vector<TextSource> sources);
  ~MetricsServer();
  MetricsServer(const MetricsServer&) = delete;
  MetricsServer& operator=(const MetricsServer&) = delete;

  // The bound port.
  int port() const { return port_; }
  // The whole /metrics body.
  std::string Render() const;

 private:
  MetricsServer() = default;

  std::vector<TextSource> sources_;
  std::shared_ptr<prometheus::Collectable> process_;
  mg_context* ctx_ = nullptr;
  int port_ = 0;
};

}  // namespace omniroute
