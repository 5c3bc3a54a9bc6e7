#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/config.h"
#include "omniroute/accounts/v1/accounts.pb.h"

namespace omniroute::router {

// What the router routes over once it has a catalog from the accounts service.
struct CatalogConfig {
  ConfigPtr config;  // the file's, with the catalog's nodes and connections instead of its own
  std::shared_ptr<const ProviderRegistry> registry;  // built-ins, nodes, custom models
  std::vector<std::string> blocked_providers;        // canonical ids
};

// The routing configuration of `catalog` over the file's config. The catalog lists every node
// and connection (those of the file included), so its lists replace the file's. Connections
// not enabled or not active are kept disabled; custom models join their provider's list.
// Objects naming an unknown provider or missing required fields are left out (logged).
absl::StatusOr<CatalogConfig> ApplyCatalog(const Config& file,
                                           const accounts::v1::Catalog& catalog);

}  // namespace omniroute::router
