#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "accounts.h"
#include "common/config.h"
#include "common/config_reload.h"
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

  // Applies the server settings of a reloaded config that change while serving:
  // require_api_key, body_limit_bytes and the upstream timeouts. Listen address, threads
  // and drain timeout keep their start-up values.
  void ReloadConfig(const ConfigPtr& config);
  // Counts a reload attempt in omniroute_config_reloads_total{result}.
  void CountConfigReload(std::string_view result);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// How RunEdgeUntilSignal reloads the config file (SIGHUP, or the file changed).
struct EdgeReload {
  std::string flag_path;  // --config's value at start
  // The process's other services (the all-in-one's router, accounts, usage); applied before
  // the edge's own settings, an error refuses the new config. Empty = the edge's only.
  ConfigApplier apply;
};

// Serves until SIGTERM or SIGINT, then shuts down; returns the process exit code. Reloads
// the config on SIGHUP and when its file changes.
int RunEdgeUntilSignal(ConfigPtr config, EdgeServices services, std::string mode,
                       EdgeReload reload = {});

}  // namespace omniroute::edge
