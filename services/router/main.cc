#include <chrono>
#include <memory>

#include "common/callback.h"
#include "common/cli.h"
#include "common/config.h"
#include "common/grpc_util.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "grpc_accounts.h"
#include "grpc_router.h"
#include "local_router.h"
#include "redis_state_store.h"
#include "router_metrics.h"
#include "state_store.h"

int main(int argc, char** argv) {
  using namespace omniroute;
  const cli::ServiceInfo info{"router", "OmniRoute router service (router.v1.Router).", 50051};
  return cli::RunService(
      argc, argv, info, [](const cli::ServiceFlags& flags) -> absl::StatusOr<cli::ServiceWiring> {
        ASSIGN_OR_RETURN(ConfigPtr config,
                         LoadConfig(flags.config_path, /*generate_secrets=*/false));
        ASSIGN_OR_RETURN(std::shared_ptr<const ProviderRegistry> registry, BuildRegistry(*config));
        router::StateStorePtr state;
        if (config->redis.url.empty()) {
          state = router::MakeMemoryStateStore();
          LogInfo("routing state in memory");
        } else {
          ASSIGN_OR_RETURN(state, router::MakeRedisStateStore(config->redis.url,
                                                              router::RedisStateStoreOptions()));
        }
        // Calls run on the gRPC service's own threads, so reports may wait on Redis there.
        router::RouterOptions options;
        options.async_reports = false;
        if (!config->services.accounts.empty()) {
          // Nodes, connections, custom models and blocked providers as the admin API sets them.
          accounts::AccountsPtr accounts_client =
              accounts::MakeAccountsGrpcClient(MakeServiceChannel(config->services.accounts));
          options.catalog_source = [accounts_client](int64_t known_version,
                                                     Callback<accounts::v1::Catalog> done) {
            accounts_client->GetCatalog(known_version, std::move(done));
          };
          LogInfo("catalog from the accounts service", {{"address", config->services.accounts}});
        } else {
          LogInfo("no accounts service (services.accounts): nodes and connections of the file");
        }
        auto impl = std::make_shared<router::LocalRouter>(config, registry, std::move(state),
                                                          std::move(options));
        cli::ServiceWiring wiring{router::MakeRouterGrpcService(impl), nullptr};
        wiring.config = config;
        wiring.reload = [impl](const ConfigPtr& next) { return impl->ReloadConfig(next); };
        // Breakers, cooldowns, lockouts and the state store, as Health answers them.
        wiring.metrics_text = [impl] {
          absl::StatusOr<router::v1::HealthResponse> health =
              AwaitCallback<router::v1::HealthResponse>(
                  [&impl](Callback<router::v1::HealthResponse> done) {
                    impl->Health(router::v1::HealthRequest(), std::move(done));
                  },
                  std::chrono::seconds(2));
          return health.ok() ? router::RouterHealthMetricsText(*health) : std::string();
        };
        return wiring;
      });
}
