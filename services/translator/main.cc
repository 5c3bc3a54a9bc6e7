#include "common/cli.h"
#include "common/config.h"
#include "common/status_macros.h"
#include "grpc_translator.h"
#include "local_translator.h"

int main(int argc, char** argv) {
  using namespace omniroute;
  const cli::ServiceInfo info{"translator",
                              "OmniRoute translator service (translator.v1.Translator).", 50052};
  return cli::RunService(
      argc, argv, info, [](const cli::ServiceFlags& flags) -> absl::StatusOr<cli::ServiceWiring> {
        // The translator needs no settings; loading still validates the file.
        ASSIGN_OR_RETURN(ConfigPtr config,
                         LoadConfig(flags.config_path, /*generate_secrets=*/false));
        (void)config;
        return cli::ServiceWiring{
            translator::MakeTranslatorGrpcService(translator::MakeLocalTranslator()), nullptr};
      });
}
