#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/service_type.h>
#include <pthread.h>
#include <signal.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/config.h"
#include "common/config_reload.h"
#include "common/grpc_util.h"
#include "common/log.h"
#include "common/metrics.h"
#include <prometheus/counter.h>
#include <prometheus/registry.h>
#include "common/strings.h"

namespace omniroute::cli {

// Command-line flags shared by the service binaries.
struct ServiceFlags {
  std::string config_path;  // --config; empty = LoadConfig's default
  std::string listen;       // --listen; empty = OMNIROUTE_LISTEN or the service's default
  // --metrics-listen; empty = OMNIROUTE_METRICS_LISTEN or the gRPC port + 1000; "off"
  std::string metrics_listen;
  bool help = false;
};

// Parses `--config PATH`, `--listen HOST:PORT`, `--metrics-listen HOST:PORT|off` (also in
// the `--flag=value` form) and `--help`/`-h`. Unknown arguments are errors.
inline absl::StatusOr<ServiceFlags> ParseServiceFlags(int argc, char** argv) {
  ServiceFlags flags;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      flags.help = true;
      continue;
    }
    std::string* target = nullptr;
    std::string_view name = arg;
    std::string_view value;
    bool has_value = false;
    if (const size_t eq = arg.find('='); eq != std::string_view::npos && arg.starts_with("--")) {
      name = arg.substr(0, eq);
      value = arg.substr(eq + 1);
      has_value = true;
    }
    if (name == "--config") {
      target = &flags.config_path;
    } else if (name == "--listen") {
      target = &flags.listen;
    } else if (name == "--metrics-listen") {
      target = &flags.metrics_listen;
    } else {
      return absl::InvalidArgumentError(absl::StrCat("unknown argument '", AV(arg), "'"));
    }
    if (!has_value) {
      if (i + 1 >= argc) {
        return absl::InvalidArgumentError(absl::StrCat(AV(name), " needs a value"));
      }
      value = argv[++i];
    }
    if (value.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(AV(name), " needs a value"));
    }
    *target = std::string(value);
  }
  return flags;
}

// The address to listen on: --listen, else OMNIROUTE_LISTEN, else 0.0.0.0:`default_port`.
inline std::string ListenAddress(const ServiceFlags& flags, int default_port) {
  if (!flags.listen.empty()) {
    return flags.listen;
  }
  if (const char* env = std::getenv("OMNIROUTE_LISTEN"); env != nullptr && *env != '\0') {
    return env;
  }
  return absl::StrCat("0.0.0.0:", default_port);
}

// `address` with its port replaced by `port` ("0.0.0.0:0" → "0.0.0.0:43117"); unchanged for
// addresses without a port (unix:...).
inline std::string WithPort(const std::string& address, int port) {
  if (port <= 0 || address.starts_with("unix:")) {
    return address;
  }
  const size_t colon = address.rfind(':');
  if (colon == std::string::npos || address.find(']', colon) != std::string::npos) {
    return absl::StrCat(address, ":", port);
  }
  return absl::StrCat(address.substr(0, colon + 1), port);
}

// The address of the Prometheus endpoint: --metrics-listen, else OMNIROUTE_METRICS_LISTEN,
// else the gRPC address `bound` with its port + 1000 (50051 → 51051); "" when "off" or when
// `bound` has no such port (unix:...).
inline std::string MetricsAddress(const ServiceFlags& flags, const std::string& bound,
                                  int bound_port) {
  std::string address = flags.metrics_listen;
  if (address.empty()) {
    if (const char* env = std::getenv("OMNIROUTE_METRICS_LISTEN"); env != nullptr) {
      address = env;
    }
  }
  if (address == "off") {
    return "";
  }
  if (!address.empty()) {
    return address;
  }
  if (bound.starts_with("unix:") || bound_port <= 0 || bound_port + 1000 > 65535) {
    return "";
  }
  return WithPort(bound, bound_port + 1000);
}

// The usage text of a service binary.
inline std::string ServiceUsage(std::string_view binary, std::string_view what, int default_port) {
  return absl::StrCat(
      "Usage: ", AV(binary),
      " [--config PATH] [--listen HOST:PORT] [--metrics-listen HOST:PORT]\n\n", AV(what),
      "\n\n"
      "  --config PATH       YAML config file (default: $OMNIROUTE_CONFIG, else\n"
      "                      $DATA_DIR/omniroute.yaml)\n"
      "  --listen HOST:PORT  gRPC address (default: $OMNIROUTE_LISTEN, else 0.0.0.0:",
      default_port,
      ")\n"
      "  --metrics-listen HOST:PORT|off\n"
      "                      Prometheus /metrics and /healthz (default:\n"
      "                      $OMNIROUTE_METRICS_LISTEN, else the gRPC port + 1000)\n"
      "  --help              this text\n");
}

// SIGTERM and SIGINT.
inline sigset_t TerminationSignals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  return set;
}

// SIGTERM, SIGINT and SIGHUP (reload the config).
inline sigset_t HandledSignals() {
  sigset_t set = TerminationSignals();
  sigaddset(&set, SIGHUP);
  return set;
}

// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread and in every thread it starts
// later. Call it first in main(), before any thread exists.
inline void BlockTerminationSignals() {
  const sigset_t set = HandledSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

// Waits until SIGTERM or SIGINT arrives (they must be blocked) and returns its number. Each
// SIGHUP meanwhile calls `on_hangup` (when set) and the wait goes on.
inline int WaitForTerminationSignal(const std::function<void()>& on_hangup = nullptr) {
  const sigset_t set = HandledSignals();
  int sig = 0;
  for (;;) {
    if (sigwait(&set, &sig) != 0) {
      continue;
    }
    if (sig != SIGHUP) {
      return sig;
    }
    if (on_hangup) {
      on_hangup();
    }
  }
}

// What a service binary is.
struct ServiceInfo {
  std::string_view name;         // "router": logs and the binary name omniroute-<name>
  std::string_view description;  // one line for --help
  int default_port = 0;
};

// What a service's wiring produced.
struct ServiceWiring {
  std::unique_ptr<grpc::Service> service;
  // Runs after the server stopped taking calls, before the service is destroyed (e.g. a
  // flush of queued writes).
  std::function<void()> on_stop;
  // Config reload (SIGHUP, or the file changed): `config` is the one the service started
  // with; `reload` applies a new one or refuses it (leaving the old one in force). Without
  // `reload`, SIGHUP is ignored.
  ConfigPtr config;
  ConfigApplier reload;
  // Prometheus text of the service's own metrics, appended to its /metrics after the gRPC
  // server and process metrics; called on the metrics server's threads, may block briefly.
  std::function<std::string()> metrics_text;
};

// The main() of a service binary: blocks SIGTERM/SIGINT/SIGHUP, parses the flags (--help
// prints the usage), calls `wire`, serves the result with the health service on, logs one
// "listening" line, reloads the config on SIGHUP or when its file changes (when the wiring
// has `reload`), and on SIGTERM/SIGINT shuts down gracefully (calls in flight get
// `shutdown_grace`) and returns 0. Returns 1 when wiring or listening fails, 2 on bad flags.
inline int RunService(int argc, char** argv, const ServiceInfo& info,
                      const std::function<absl::StatusOr<ServiceWiring>(const ServiceFlags&)>& wire,
                      std::chrono::milliseconds shutdown_grace = std::chrono::seconds(5)) {
  BlockTerminationSignals();
  const std::string binary = absl::StrCat("omniroute-", AV(info.name));
  const std::string usage = ServiceUsage(binary, info.description, info.default_port);
  absl::StatusOr<ServiceFlags> flags = ParseServiceFlags(argc, argv);
  if (!flags.ok()) {
    std::fprintf(stderr, "%s: %s\n\n%s", binary.c_str(),
                 std::string(flags.status().message()).c_str(), usage.c_str());
    return 2;
  }
  if (flags->help) {
    std::fputs(usage.c_str(), stdout);
    return 0;
  }
  try {
    absl::StatusOr<ServiceWiring> wiring = wire(*flags);
    if (!wiring.ok()) {
      LogError("start-up failed",
               {{"service", info.name}, {"error", SV(wiring.status().message())}});
      return 1;
    }
    const std::string address = ListenAddress(*flags, info.default_port);
    int port = 0;
    std::unique_ptr<grpc::Server> server = StartGrpcServer(address, {wiring->service.get()}, &port);
    if (server == nullptr || port == 0) {
      LogError("cannot listen", {{"service", info.name}, {"addr", address}});
      return 1;
    }
    const std::string bound = WithPort(address, port);
    LogInfo("listening", {{"service", info.name}, {"addr", bound}});
    // A metrics port given explicitly must be served; the derived default is best effort.
    std::unique_ptr<MetricsServer> metrics;
    if (const std::string metrics_address = MetricsAddress(*flags, bound, port);
        !metrics_address.empty()) {
      std::vector<MetricsServer::TextSource> sources;
      if (wiring->metrics_text) {
        sources.push_back(wiring->metrics_text);
      }
      absl::StatusOr<std::unique_ptr<MetricsServer>> started =
          MetricsServer::Start(metrics_address, std::move(sources));
      const bool explicit_address = !flags->metrics_listen.empty() ||
                                    std::getenv("OMNIROUTE_METRICS_LISTEN") != nullptr;
      if (started.ok()) {
        metrics = *std::move(started);
        LogInfo("metrics", {{"service", info.name},
                            {"addr", WithPort(metrics_address, metrics->port())}});
      } else if (explicit_address) {
        LogError("cannot serve metrics", {{"service", info.name}, {"addr", metrics_address}});
        return 1;
      } else {
        LogWarn("no metrics endpoint", {{"service", info.name}, {"addr", metrics_address}});
      }
    }

    std::unique_ptr<ConfigReloader> reloader;
    if (wiring->reload && wiring->config) {
      ConfigReloaderOptions reload_options;
      reload_options.flag_path = flags->config_path;
      reload_options.service = std::string(info.name);
      // omniroute_config_reloads_total{result} beside the service's other metrics.
      auto& reloads = prometheus::BuildCounter()
                          .Name("omniroute_config_reloads_total")
                          .Help("Config file reloads, by result (ok, error)")
                          .Register(*MetricsRegistry());
      reload_options.on_result = [&reloads](const char* result) {
        reloads.Add({{"result", result}}).Increment();
      };
      reloader = std::make_unique<ConfigReloader>(wiring->config, wiring->reload,
                                                  std::move(reload_options));
      reloader->Start();
    }
    const int sig = WaitForTerminationSignal([&reloader] {
      if (reloader) {
        reloader->RequestReload();
      }
    });
    reloader.reset();  // no reload while shutting down
    LogInfo("shutting down",
            {{"service", info.name}, {"signal", sig == SIGINT ? "SIGINT" : "SIGTERM"}});
    server->Shutdown(std::chrono::system_clock::now() + shutdown_grace);
    server->Wait();
    if (wiring->on_stop) {
      wiring->on_stop();
    }
    server.reset();
    metrics.reset();
    wiring->service.reset();
    LogInfo("stopped", {{"service", info.name}});
    return 0;
  } catch (const std::exception& e) {
    LogError("service failed", {{"service", info.name}, {"error", e.what()}});
    return 1;
  }
}

}  // namespace omniroute::cli
