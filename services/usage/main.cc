#include <chrono>
#include <filesystem>
#include <string>
#include <system_error>

#include "common/callback.h"
#include "common/cli.h"
#include "common/config.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "grpc_usage.h"
#include "local_usage.h"
#include "usage_store.h"

int main(int argc, char** argv) {
  using namespace omniroute;
  const cli::ServiceInfo info{"usage", "OmniRoute usage service (usage.v1.Usage).", 50054};
  return cli::RunService(
      argc, argv, info, [](const cli::ServiceFlags& flags) -> absl::StatusOr<cli::ServiceWiring> {
        ASSIGN_OR_RETURN(ConfigPtr config,
                         LoadConfig(flags.config_path, /*generate_secrets=*/false));
        usage::UsageStorePtr store;
        if (!config->storage.postgres_url.empty()) {
          ASSIGN_OR_RETURN(store, usage::MakePostgresUsageStore(config->storage.postgres_url));
          LogInfo("usage store", {{"kind", "postgres"}});
        } else {
          std::error_code ec;
          const std::filesystem::path dir =
              std::filesystem::path(config->storage.sqlite_path).parent_path();
          if (!dir.empty()) {
            std::filesystem::create_directories(dir, ec);
          }
          ASSIGN_OR_RETURN(store, usage::MakeSqliteUsageStore(config->storage.sqlite_path));
          LogInfo("usage store", {{"kind", "sqlite"}, {"path", config->storage.sqlite_path}});
        }
        RETURN_IF_ERROR(store->Migrate());
        usage::LocalUsageOptions options = usage::LocalUsageOptionsFromConfig(*config);
        // Budget spend and reservations are shared through Redis when it is configured, so
        // that every replica of the usage service agrees.
        options.redis_url = config->redis.url;
        LogInfo("usage spool", {{"dir", options.spool_dir}});
        ASSIGN_OR_RETURN(usage::UsagePtr impl,
                         usage::MakeLocalUsage(std::move(store), std::move(options)));
        cli::ServiceWiring wiring{
            usage::MakeUsageGrpcService(impl), [impl] {
              const size_t pending = impl->Flush(std::chrono::seconds(10));
              if (pending > 0) {
                LogError("usage records not stored at exit", {{"count", std::to_string(pending)}});
              }
            }};
        wiring.config = config;
        wiring.reload = [impl](const ConfigPtr& next) {
          return usage::ReloadUsageConfig(*impl, *next);
        };
        // The usage metrics (records, tokens, cost, store writes, spool, reservations).
        wiring.metrics_text = [impl] {
          absl::StatusOr<usage::v1::MetricsResponse> metrics =
              AwaitCallback<usage::v1::MetricsResponse>(
                  [&impl](Callback<usage::v1::MetricsResponse> done) {
                    impl->Metrics(std::move(done));
                  },
                  std::chrono::seconds(2));
          return metrics.ok() ? metrics->text() : std::string();
        };
        return wiring;
      });
}
