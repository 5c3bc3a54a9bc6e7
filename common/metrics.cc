#include "common/metrics.h"

#include <civetweb.h>
#include <dirent.h>
#include <prometheus/collectable.h>
#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/metric_family.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <mutex>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "common/log.h"

namespace omniroute {
namespace {

// "/pkg.Service/Method" → {"pkg.Service", "Method"}.
std::pair<std::string, std::string> SplitMethod(std::string_view full) {
  if (full.starts_with('/')) full.remove_prefix(1);
  const size_t slash = full.find('/');
  if (slash == std::string_view::npos) return {"unknown", std::string(full)};
  return {std::string(full.substr(0, slash)), std::string(full.substr(slash + 1))};
}

std::string_view TypeName(grpc::experimental::ServerRpcInfo::Type type) {
  using Type = grpc::experimental::ServerRpcInfo::Type;
  switch (type) {
    case Type::UNARY:
      return "unary";
    case Type::CLIENT_STREAMING:
      return "client_stream";
    case Type::SERVER_STREAMING:
      return "server_stream";
    case Type::BIDI_STREAMING:
      return "bidi_stream";
  }
  return "unknown";
}

// Counts one call: started when created, handled when the status goes out (or, for a call that ends
// without one, as Canceled when destroyed).
class MetricsInterceptor : public grpc::experimental::Interceptor {
 public:
  MetricsInterceptor(GrpcServerMetrics* metrics, grpc::experimental::ServerRpcInfo* info)
      : metrics_(metrics),
        type_(TypeName(info->type())),
        method_(info->method() != nullptr ? info->method() : "/unknown/unknown"),
        start_(std::chrono::steady_clock::now()) {
    metrics_->Started(type_, method_);
  }
  ~MetricsInterceptor() override {
    if (!handled_) Handle(grpc::StatusCode::CANCELLED);
  }

  void Intercept(grpc::experimental::InterceptorBatchMethods* methods) override {
    if (!handled_ && methods->QueryInterceptionHookPoint(
                         grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      Handle(methods->GetSendStatus().error_code());
    }
    methods->Proceed();
  }

 private:
  void Handle(grpc::StatusCode code) {
    handled_ = true;
    const std::chrono::duration<double> took = std::chrono::steady_clock::now() - start_;
    metrics_->Handled(type_, method_, code, took.count());
  }

  GrpcServerMetrics* const metrics_;
  const std::string_view type_;
  const std::string method_;
  const std::chrono::steady_clock::time_point start_;
  bool handled_ = false;
};

class MetricsInterceptorFactory : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit MetricsInterceptorFactory(GrpcServerMetrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new MetricsInterceptor(metrics_, info);
  }

 private:
  GrpcServerMetrics* const metrics_;
};

prometheus::MetricFamily Family(std::string name, std::string help, prometheus::MetricType type,
                                double value) {
  prometheus::ClientMetric metric;
  if (type == prometheus::MetricType::Counter) {
    metric.counter.value = value;
  } else {
    metric.gauge.value = value;
  }
  return prometheus::MetricFamily{std::move(name), std::move(help), type, {metric}};
}

// Reads /proc/self at each scrape.
class ProcessCollector : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override {
    std::vector<prometheus::MetricFamily> out;
    const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
    const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
    std::ifstream stat_file("/proc/self/stat");
    std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
    // Fields after the command name, which is in parentheses and may hold spaces: state is field 3,
    // utime 14, stime 15, starttime 22, vsize 23, rss 24.
    if (const size_t paren = stat.rfind(')'); paren != std::string::npos) {
      std::istringstream in(stat.substr(paren + 2));
      std::vector<std::string> f((std::istream_iterator<std::string>(in)),
                                 std::istream_iterator<std::string>());
      if (f.size() >= 22) {
        const auto field = [&](int n) { return std::strtod(f[n - 3].c_str(), nullptr); };
        out.push_back(Family("process_cpu_seconds_total",
                             "Total user and system CPU time spent in seconds.",
                             prometheus::MetricType::Counter, (field(14) + field(15)) / ticks));
        out.push_back(Family("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                             prometheus::MetricType::Gauge, field(23)));
        out.push_back(Family("process_resident_memory_bytes", "Resident memory size in bytes.",
                             prometheus::MetricType::Gauge, field(24) * page));
        if (const double boot = BootTime(); boot > 0) {
          out.push_back(Family("process_start_time_seconds",
                               "Start time of the process since unix epoch in seconds.",
                               prometheus::MetricType::Gauge, boot + field(22) / ticks));
        }
      }
    }
    if (DIR* dir = opendir("/proc/self/fd"); dir != nullptr) {
      int n = 0;
      while (const dirent* e = readdir(dir)) {
        if (e->d_name[0] != '.') ++n;
      }
      closedir(dir);
      out.push_back(Family("process_open_fds", "Number of open file descriptors.",
                           prometheus::MetricType::Gauge, n - 1));  // less opendir's own
    }
    if (rlimit lim{}; getrlimit(RLIMIT_NOFILE, &lim) == 0) {
      out.push_back(Family("process_max_fds", "Maximum number of open file descriptors.",
                           prometheus::MetricType::Gauge, static_cast<double>(lim.rlim_cur)));
    }
    return out;
  }

 private:
  static double BootTime() {
    std::ifstream in("/proc/stat");
    std::string line;
    while (std::getline(in, line)) {
      if (line.starts_with("btime ")) return std::strtod(line.c_str() + 6, nullptr);
    }
    return 0;
  }
};

const prometheus::Histogram::BucketBoundaries& HandlingBuckets() {
  static const prometheus::Histogram::BucketBoundaries kBuckets = {
      0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120};
  return kBuckets;
}

int HandleRequest(mg_connection* conn, void* data) {
  const auto* server = static_cast<const MetricsServer*>(data);
  const mg_request_info* req = mg_get_request_info(conn);
  const std::string_view uri = req->local_uri != nullptr ? req->local_uri : "";
  const std::string_view method = req->request_method != nullptr ? req->request_method : "";
  std::string body;
  const char* type = "text/plain; charset=utf-8";
  int status = 200;
  if (method != "GET" && method != "HEAD") {
    status = 405;
    body = "method not allowed\n";
  } else if (uri == "/metrics") {
    try {
      body = server->Render();
      type = "text/plain; version=0.0.4; charset=utf-8";
    } catch (const std::exception& e) {
      status = 500;
      body = absl::StrCat("metrics failed: ", e.what(), "\n");
    }
  } else if (uri == "/healthz") {
    body = "ok\n";
  } else {
    status = 404;
    body = "not found\n";
  }
  mg_response_header_start(conn, status);
  mg_response_header_add(conn, "Content-Type", type, -1);
  mg_response_header_add(conn, "Content-Length", std::to_string(body.size()).c_str(), -1);
  mg_response_header_add(conn, "Cache-Control", "no-store", -1);
  mg_response_header_send(conn);
  if (method != "HEAD") mg_write(conn, body.data(), body.size());
  return status;
}

int LogCivetMessage(const mg_connection*, const char* message) {
  LogWarn("metrics server", {{"error", message}});
  return 1;
}

}  // namespace

const std::shared_ptr<prometheus::Registry>& MetricsRegistry() {
  static const auto* registry =
      new std::shared_ptr<prometheus::Registry>(std::make_shared<prometheus::Registry>());
  return *registry;
}

std::shared_ptr<prometheus::Collectable> MakeProcessCollector() {
  return std::make_shared<ProcessCollector>();
}

GrpcServerMetrics::GrpcServerMetrics(prometheus::Registry& registry) {
  started_ = &prometheus::BuildCounter()
                  .Name("grpc_server_started_total")
                  .Help("Total number of RPCs started on the server.")
                  .Register(registry);
  handled_ = &prometheus::BuildCounter()
                  .Name("grpc_server_handled_total")
                  .Help(
                      "Total number of RPCs completed on the server, "
                      "regardless of success "
                      "or failure.")
                  .Register(registry);
  handling_seconds_ = &prometheus::BuildHistogram()
                           .Name("grpc_server_handling_seconds")
                           .Help(
                               "Histogram of response latency (seconds) of gRPC that had "
                               "been application-level handled by the server.")
                           .Register(registry);
}

GrpcServerMetrics& GrpcServerMetrics::Default() {
  static auto* metrics = new GrpcServerMetrics(*MetricsRegistry());
  return *metrics;
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
GrpcServerMetrics::InterceptorFactory() {
  return std::make_unique<MetricsInterceptorFactory>(this);
}

void GrpcServerMetrics::Started(std::string_view type, std::string_view full_method) {
  auto [service, method] = SplitMethod(full_method);
  started_
      ->Add({{"grpc_type", std::string(type)},
             {"grpc_service", std::move(service)},
             {"grpc_method", std::move(method)}})
      .Increment();
}

void GrpcServerMetrics::Handled(std::string_view type, std::string_view full_method,
                                grpc::StatusCode code, double seconds) {
  auto [service, method] = SplitMethod(full_method);
  prometheus::Labels labels = {{"grpc_type", std::string(type)},
                               {"grpc_service", std::move(service)},
                               {"grpc_method", std::move(method)}};
  handling_seconds_->Add(labels, HandlingBuckets()).Observe(seconds);
  labels.emplace("grpc_code", std::string(GrpcCodeName(code)));
  handled_->Add(labels).Increment();
}

std::string_view GrpcCodeName(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "Canceled";
    case grpc::StatusCode::UNKNOWN:
      return "Unknown";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "InvalidArgument";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DeadlineExceeded";
    case grpc::StatusCode::NOT_FOUND:
      return "NotFound";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "AlreadyExists";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PermissionDenied";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "ResourceExhausted";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FailedPrecondition";
    case grpc::StatusCode::ABORTED:
      return "Aborted";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OutOfRange";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "Unimplemented";
    case grpc::StatusCode::INTERNAL:
      return "Internal";
    case grpc::StatusCode::UNAVAILABLE:
      return "Unavailable";
    case grpc::StatusCode::DATA_LOSS:
      return "DataLoss";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "Unauthenticated";
    default:
      return "Unknown";
  }
}

absl::StatusOr<std::unique_ptr<MetricsServer>> MetricsServer::Start(
    const std::string& address, std::vector<TextSource> sources) {
  static std::once_flag init;
  std::call_once(init, [] { mg_init_library(0); });
  std::unique_ptr<MetricsServer> server(new MetricsServer());
  server->sources_ = std::move(sources);
  server->process_ = MakeProcessCollector();
  // civetweb takes numeric addresses only.
  std::string ports = address;
  if (ports.starts_with("localhost:")) ports = absl::StrCat("127.0.0.1", ports.substr(9));
  const char* options[] = {"listening_ports",    ports.c_str(), "num_threads", "2",
                           "request_timeout_ms", "10000",       nullptr};
  mg_callbacks callbacks{};
  callbacks.log_message = LogCivetMessage;
  server->ctx_ = mg_start(&callbacks, nullptr, options);
  if (server->ctx_ == nullptr) {
    return absl::UnavailableError(absl::StrCat("cannot serve metrics on ", address));
  }
  mg_set_request_handler(server->ctx_, "/", HandleRequest, server.get());
  mg_server_port bound[4] = {};
  if (mg_get_server_ports(server->ctx_, 4, bound) > 0) server->port_ = bound[0].port;
  return server;
}

MetricsServer::~MetricsServer() {
  if (ctx_ != nullptr) mg_stop(ctx_);
}

std::string MetricsServer::Render() const {
  std::vector<prometheus::MetricFamily> families = MetricsRegistry()->Collect();
  for (auto& f : process_->Collect()) families.push_back(std::move(f));
  std::string out = prometheus::TextSerializer().Serialize(families);
  for (const TextSource& source : sources_) {
    std::string text = source();
    if (!text.empty() && text.back() != '\n') text.push_back('\n');
    out += text;
  }
  return out;
}

}  // namespace omniroute
