#pragma once

#include <pthread.h>
#include <signal.h>

#include <cstdlib>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"

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
      return absl::InvalidArgumentError(absl::StrCat("unknown argument '", arg, "'"));
    }
    if (!has_value) {
      if (i + 1 >= argc) {
        return absl::InvalidArgumentError(absl::StrCat(name, " needs a value"));
      }
      value = argv[++i];
    }
    if (value.empty()) {
      return absl::InvalidArgumentError(absl::StrCat(name, " needs a value"));
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
inline std::string ServiceUsage(std::string_view binary, std::string_view what,
                                int default_port) {
  return absl::StrCat(
      "Usage: ", binary, " [--config PATH] [--listen HOST:PORT]\n\n", what,
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

}  // namespace omniroute::cli
