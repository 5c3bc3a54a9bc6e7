// omniroute-edge: the HTTP data plane of the distributed gateway. Calls the router,
// translator, accounts and usage services over gRPC.
#include <iostream>

#include "absl/strings/ascii.h"
#include "common/cli.h"
#include "common/config.h"
#include "common/grpc_util.h"
#include "common/log.h"
#include "common/strings.h"
#include "edge.h"
#include "grpc_accounts.h"
#include "grpc_router.h"
#include "grpc_translator.h"
#include "grpc_usage.h"

int main(int argc, char** argv) {
  using namespace omniroute;
  auto flags = cli::ParseServiceFlags(argc, argv);
  if (!flags.ok() || flags->help || !flags->listen.empty()) {
    std::cerr << (flags.ok() ? "" : std::string(flags.status().message()) + "\n")
              << "usage: omniroute-edge [--config FILE]\n"
                 "  listens on server.port (env PORT); services from services.* or env\n"
                 "  OMNIROUTE_ROUTER_ADDR, OMNIROUTE_TRANSLATOR_ADDR, OMNIROUTE_ACCOUNTS_ADDR,\n"
                 "  OMNIROUTE_USAGE_ADDR (host:port)\n";
    return flags.ok() && flags->help ? 0 : 2;
  }
  auto config = LoadConfig(flags->config_path);
  if (!config.ok()) {
    LogError("invalid configuration", {{"error", SV(config.status().message())}});
    return 1;
  }
  const auto& svc = (*config)->services;
  for (const auto& [name, addr] : {std::pair{"router", svc.router},
                                   {"translator", svc.translator},
                                   {"accounts", svc.accounts},
                                   {"usage", svc.usage}}) {
    if (addr.empty()) {
      LogError("invalid configuration",
               {{"error", absl::StrCat("services.", name, " (or OMNIROUTE_",
                                       absl::AsciiStrToUpper(name), "_ADDR) is required")}});
      return 1;
    }
  }
  auto router_ch = MakeServiceChannel(svc.router);
  auto translator_ch = MakeServiceChannel(svc.translator);
  auto accounts_ch = MakeServiceChannel(svc.accounts);
  auto usage_ch = MakeServiceChannel(svc.usage);
  edge::EdgeServices services;
  services.router = router::MakeRouterGrpcClient(router_ch);
  services.translator = translator::MakeTranslatorGrpcClient(translator_ch);
  services.accounts = accounts::MakeAccountsGrpcClient(accounts_ch);
  // Records wait on disk while the usage service is unreachable (one spool per edge).
  usage::UsageClientOptions usage_options;
  usage_options.spool_dir = (*config)->data_dir + "/spool/usage-edge";
  services.usage = usage::MakeUsageGrpcClient(usage_ch, usage_options);
  // Ready when the services on the request path can be reached. Usage is not among them:
  // records wait in the edge's queue while it is away.
  services.ready = [router_ch, accounts_ch] {
    for (const auto& ch : {router_ch, accounts_ch}) {
      const auto state = ch->GetState(/*try_to_connect=*/true);
      if (state != GRPC_CHANNEL_READY && state != GRPC_CHANNEL_IDLE) return false;
    }
    return true;
  };
  return edge::RunEdgeUntilSignal(*config, std::move(services), "distributed",
                                  edge::EdgeReload{flags->config_path, nullptr});
}
