#include <memory>

#include "common/cli.h"
#include "common/config.h"
#include "common/status_macros.h"
#include "grpc_accounts.h"
#include "local_accounts.h"

int main(int argc, char** argv) {
  using namespace omniroute;
  const cli::ServiceInfo info{"accounts", "OmniRoute accounts service (accounts.v1.Accounts).",
                              50053};
  return cli::RunService(
      argc, argv, info, [](const cli::ServiceFlags& flags) -> absl::StatusOr<cli::ServiceWiring> {
        ASSIGN_OR_RETURN(ConfigPtr config, LoadConfig(flags.config_path));
        ASSIGN_OR_RETURN(accounts::AccountsOptions options,
                         accounts::AccountsOptionsFromConfig(*config));
        ASSIGN_OR_RETURN(accounts::AccountsPtr impl,
                         accounts::MakeLocalAccounts(config, std::move(options)));
        cli::ServiceWiring wiring{accounts::MakeAccountsGrpcService(impl), nullptr};
        wiring.config = config;
        wiring.metrics_text = [impl] { return accounts::AccountsMetricsText(*impl); };
        wiring.reload = [impl](const ConfigPtr& next) {
          return accounts::ReloadAccountsConfig(*impl, next);
        };
        return wiring;
      });
}
