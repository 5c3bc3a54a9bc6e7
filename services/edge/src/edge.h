#pragma once

#include <functional>
#include <memory>
#include <string>

#include "absl/status/status.h"
#include "accounts.h"
#include "common/config.h"
#include "router.h"
#include "translator.h"
#include "usage.h"

namespace omniroute::edge {

// The services the edge calls, in-process or over gRPC.
struct EdgeServices {
  router::RouterPtr router;
  accounts::AccountsPtr accounts;
  translator::TranslatorPtr translator;
  usage::UsagePtr usage;
  // True when router, accounts and translator complete their calls before returning
  // (in-process): the edge then skips the hop through its event loop and its caches.
  // Accounts calls may still answer later (an OAuth refresh, the admin API); the edge
  // handles both.
  bool in_process = false;
  // Whether the services can be reached; nullptr = always.
  std::function<bool()> ready;
};

// The HTTP data plane: client APIs, admin API, health and metrics.
class EdgeServer {
 public:
  EdgeServer(ConfigPtr config, EdgeServices services, std::string mode);
  ~EdgeServer();

  // Binds config->server.host:port (port 0 picks one) and starts the event-loop threads.
  absl::Status Start();
  int port() const;

  // Stops accepting, lets in-flight requests finish (at most drain_timeout_ms), flushes
  // queued usage records, and stops the threads.
  void Shutdown();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Serves until SIGTERM or SIGINT, then shuts down; returns the process exit code.
int RunEdgeUntilSignal(ConfigPtr config, EdgeServices services, std::string mode);

}  // namespace omniroute::edge
