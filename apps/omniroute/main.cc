// omniroute: the all-in-one gateway. Edge, router, translator, accounts and usage in one
// process; state in memory (or Redis when configured), usage in SQLite (or PostgreSQL).
#include <cstring>
#include <iostream>

#include "common/config.h"
#include "common/log.h"
#include "common/strings.h"
#include "edge.h"
#include "local_accounts.h"
#include "local_router.h"
#include "local_translator.h"
#include "local_usage.h"

int main(int argc, char** argv) {
  using namespace omniroute;
  std::string config_path;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--config") && i + 1 < argc) {
      config_path = argv[++i];
    } else if (!std::strncmp(argv[i], "--config=", 9)) {
      config_path = argv[i] + 9;
    } else if (!std::strcmp(argv[i], "--help") || !std::strcmp(argv[i], "-h")) {
      std::cout << "usage: omniroute [--config FILE]\n"
                   "  FILE defaults to $OMNIROUTE_CONFIG, then $DATA_DIR/omniroute.yaml\n"
                   "  env: PORT DATA_DIR REQUIRE_API_KEY OMNIROUTE_ADMIN_KEY API_KEY_SECRET\n"
                   "       JWT_SECRET INITIAL_PASSWORD REDIS_URL DATABASE_URL\n";
      return 0;
    } else {
      std::cerr << "unknown argument: " << argv[i] << " (see --help)\n";
      return 2;
    }
  }
  auto config = LoadConfig(config_path);
  if (!config.ok()) {
    LogError("invalid configuration", {{"error", SV(config.status().message())}});
    return 1;
  }
  auto registry = BuildRegistry(**config);
  if (!registry.ok()) {
    LogError("invalid configuration", {{"error", SV(registry.status().message())}});
    return 1;
  }
  auto store = (*config)->storage.postgres_url.empty()
                   ? usage::MakeSqliteUsageStore((*config)->storage.sqlite_path)
                   : usage::MakePostgresUsageStore((*config)->storage.postgres_url);
  if (store.ok()) {
    if (absl::Status s = (*store)->Migrate(); !s.ok()) store = s;
  }
  if (!store.ok()) {
    LogError("cannot open the usage store", {{"error", SV(store.status().message())}});
    return 1;
  }
  edge::EdgeServices services;
  auto accounts_options = accounts::AccountsOptionsFromConfig(**config);
  if (accounts_options.ok()) {
    auto made = accounts::MakeLocalAccounts(*config, *std::move(accounts_options));
    if (made.ok()) services.accounts = *std::move(made);
    else accounts_options = made.status();
  }
  if (!accounts_options.ok()) {
    LogError("cannot start accounts", {{"error", SV(accounts_options.status().message())}});
    return 1;
  }
  router::RouterOptions router_options;
  // With Redis, outcome reports wait on it: record them off the event loops.
  router_options.async_reports = !(*config)->redis.url.empty();
  router_options.catalog_source = [accounts = services.accounts](int64_t known, auto done) {
    accounts->GetCatalog(known, std::move(done));
  };
  services.router = router::MakeLocalRouter(*config, *registry,
                                            (*config)->redis.url.empty()
                                                ? router::MakeMemoryStateStore()
                                                : router::MakeRedisStateStore((*config)->redis.url),
                                            std::move(router_options));
  services.translator = translator::MakeLocalTranslator();
  auto usage_impl =
      usage::MakeLocalUsage(std::move(store).value(), usage::LocalUsageOptionsFromConfig(**config));
  if (!usage_impl.ok()) {
    LogError("cannot start usage", {{"error", SV(usage_impl.status().message())}});
    return 1;
  }
  services.usage = *std::move(usage_impl);
  services.in_process = true;

  // Config reload: the router first (it refuses what it cannot route), then accounts (put
  // the router back if that fails), then usage; the edge's own settings last.
  auto local_router = std::dynamic_pointer_cast<router::LocalRouter>(services.router);
  auto in_force = std::make_shared<ConfigPtr>(*config);
  edge::EdgeReload reload;
  reload.flag_path = config_path;
  reload.apply = [local_router, accounts = services.accounts, usage = services.usage,
                  in_force](const ConfigPtr& next) -> absl::Status {
    if (absl::Status s = local_router->ReloadConfig(next); !s.ok()) return s;
    if (absl::Status s = accounts::ReloadAccountsConfig(*accounts, next); !s.ok()) {
      (void)local_router->ReloadConfig(*in_force);
      return s;
    }
    if (absl::Status s = usage::ReloadUsageConfig(*usage, *next); !s.ok()) return s;
    *in_force = next;
    return absl::OkStatus();
  };
  return edge::RunEdgeUntilSignal(*config, std::move(services), "all-in-one", std::move(reload));
}
