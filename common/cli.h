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

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_util.h"
#include "common/log.h"
#include "common/strings.h"

namespace omniroute::cli {

// Command-line flags shared by the service binaries.
struct ServiceFlags {
  std::string config_path;  // --config; empty = LoadConfig's default
  std::string listen;       // --listen; empty = OMNIROUTE_LISTEN or the service's default
  bool help = false;
};

// Parses `--config PATH`, `--listen HOST:PORT` (also in the `--flag=value` form) and
// `--help`/`-h`. Unknown arguments are errors.
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

// The usage text of a service binary.
inline std::string ServiceUsage(std::string_view binary, std::string_view what, int default_port) {
  return absl::StrCat(
      "Usage: ", AV(binary), " [--config PATH] [--listen HOST:PORT]\n\n", AV(what),
      "\n\n"
      "  --config PATH       YAML config file (default: $OMNIROUTE_CONFIG, else\n"
      "                      $DATA_DIR/omniroute.yaml)\n"
      "  --listen HOST:PORT  gRPC address (default: $OMNIROUTE_LISTEN, else 0.0.0.0:",
      default_port,
      ")\n"
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

// Blocks SIGTERM and SIGINT in the calling thread and in every thread it starts later. Call
// it first in main(), before any thread exists.
inline void BlockTerminationSignals() {
  const sigset_t set = TerminationSignals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

// Waits until SIGTERM or SIGINT arrives (they must be blocked) and returns its number.
inline int WaitForTerminationSignal() {
  const sigset_t set = TerminationSignals();
  int sig = 0;
  while (sigwait(&set, &sig) != 0) {
  }
  return sig;
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
};

// The main() of a service binary: blocks SIGTERM/SIGINT, parses the flags (--help prints the
// usage), calls `wire`, serves the result with the health service on, logs one "listening"
// line, and on SIGTERM/SIGINT shuts down gracefully (calls in flight get
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

    const int sig = WaitForTerminationSignal();
    LogInfo("shutting down",
            {{"service", info.name}, {"signal", sig == SIGINT ? "SIGINT" : "SIGTERM"}});
    server->Shutdown(std::chrono::system_clock::now() + shutdown_grace);
    server->Wait();
    if (wiring->on_stop) {
      wiring->on_stop();
    }
    server.reset();
    wiring->service.reset();
    LogInfo("stopped", {{"service", info.name}});
    return 0;
  } catch (const std::exception& e) {
    LogError("service failed", {{"service", info.name}, {"error", e.what()}});
    return 1;
  }
}

}  // namespace omniroute::cli
