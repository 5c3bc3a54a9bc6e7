// The catalog of the accounts service: nodes, connections, custom models and blocked
// providers, and how LocalRouter adopts it.
#include "catalog.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/status_macros.h"
#include "common/strings.h"
#include "local_router.h"

namespace omniroute::router {
namespace {

ProviderSpec ToProviderSpec(const accounts::v1::Node& node) {
  ProviderSpec p;
  p.id = node.id();
  p.name = node.name().empty() ? node.id() : node.name();
  p.prefixes.assign(node.prefixes().begin(), node.prefixes().end());
  if (std::find(p.prefixes.begin(), p.prefixes.end(), p.id) == p.prefixes.end()) {
    p.prefixes.insert(p.prefixes.begin(), p.id);
  }
  p.format = node.format() == common::v1::FORMAT_UNSPECIFIED ? common::v1::FORMAT_OPENAI_CHAT
                                                             : node.format();
  if (node.auth() != common::v1::AUTH_STYLE_UNSPECIFIED) {
    p.auth = node.auth();
  } else {
    // As for a node of the config file.
    p.auth = p.format == common::v1::FORMAT_ANTHROPIC ? common::v1::AUTH_STYLE_X_API_KEY
             : p.format == common::v1::FORMAT_GEMINI  ? common::v1::AUTH_STYLE_GOOG_API_KEY
                                                      : common::v1::AUTH_STYLE_BEARER;
  }
  p.base_url = node.base_url();
  while (!p.base_url.empty() && p.base_url.back() == '/') p.base_url.pop_back();
  p.models.assign(node.models().begin(), node.models().end());
  p.custom = true;
  return p;
}

// A model of a provider as the upstream knows it: "prefix/model" → "model".
std::string UpstreamModel(const ProviderSpec& provider, const std::string& model) {
  for (const auto& prefix : provider.prefixes) {
    if (absl::StartsWith(model, absl::StrCat(prefix, "/"))) return model.substr(prefix.size() + 1);
  }
  return model;
}

void AddUnique(std::vector<std::string>& list, std::string value) {
  if (std::find(list.begin(), list.end(), value) == list.end()) list.push_back(std::move(value));
}

}  // namespace

absl::StatusOr<CatalogConfig> ApplyCatalog(const Config& file,
                                           const accounts::v1::Catalog& catalog) {
  auto config = std::make_shared<Config>(file);
  config->nodes.clear();
  config->connections.clear();
  for (const auto& node : catalog.nodes()) {
    if (node.id().empty() || node.base_url().empty()) {
      LogWarn("catalog: node left out: it needs an id and a base URL", {{"node", node.id()}});
      continue;
    }
    ProviderSpec p = ToProviderSpec(node);
    auto same = std::find_if(config->nodes.begin(), config->nodes.end(),
                             [&](const ProviderSpec& n) { return n.id == p.id; });
    if (same != config->nodes.end()) {
      *same = std::move(p);
    } else {
      config->nodes.push_back(std::move(p));
    }
  }
  ASSIGN_OR_RETURN(std::shared_ptr<const ProviderRegistry> base, BuildRegistry(*config));

  // Custom models join their provider's list (nodes' in the config too).
  std::vector<ProviderSpec> providers = base->all();
  for (const auto& m : catalog.models()) {
    const ProviderSpec* p = base->Find(m.provider());
    if (p == nullptr || m.model_id().empty()) {
      LogWarn("catalog: custom model left out: unknown provider",
              {{"provider", m.provider()}, {"model", m.model_id()}});
      continue;
    }
    const std::string model = UpstreamModel(*p, m.model_id());
    AddUnique(providers[static_cast<size_t>(p - base->all().data())].models, model);
    for (ProviderSpec& node : config->nodes) {
      if (node.id == p->id) AddUnique(node.models, model);
    }
  }
  auto registry = std::make_shared<const ProviderRegistry>(std::move(providers));

  for (const auto& c : catalog.connections()) {
    const ProviderSpec* p = registry->Find(c.provider());
    if (p == nullptr || c.name().empty()) {
      LogWarn("catalog: connection left out: unknown provider",
              {{"connection", c.id()}, {"provider", c.provider()}});
      continue;
    }
    ConnectionSpec cs;
    cs.id = c.id().empty() ? absl::StrCat(c.provider(), ":", c.name()) : c.id();
    cs.provider = p->id;
    cs.name = c.name();
    cs.priority = c.priority();
    cs.oauth = c.oauth();
    cs.status = c.status();
    // An unset status is taken as active (only the enabled flag then decides).
    cs.enabled = c.enabled() && (c.status().empty() || c.status() == "active");
    for (const auto& m : c.models()) AddUnique(cs.models, UpstreamModel(*p, m));
    // Known only with windows or a reset behind it (an unset field reads 0, not -1).
    if (c.quota_size() > 0 || c.quota_resets_at_ms() > 0) {
      cs.quota_remaining_percent = c.quota_remaining_percent();
      cs.quota_resets_at_ms = c.quota_resets_at_ms();
    }
    auto same = std::find_if(config->connections.begin(), config->connections.end(),
                             [&](const ConnectionSpec& x) { return x.id == cs.id; });
    if (same != config->connections.end()) {
      *same = std::move(cs);
    } else {
      config->connections.push_back(std::move(cs));
    }
  }

  CatalogConfig out;
  for (const auto& b : catalog.access().blocked_providers()) {
    const ProviderSpec* p = registry->Find(b);
    AddUnique(out.blocked_providers, p ? p->id : b);
  }
  out.config = std::move(config);
  out.registry = std::move(registry);
  return out;
}

void LocalRouter::RefreshCatalog() {
  if (!options_.catalog_source) return;
  {
    std::lock_guard<std::mutex> lock(catalog_mu_);
    if (catalog_in_flight_) return;  // a slow accounts service is not asked twice
    catalog_in_flight_ = true;
  }
  options_.catalog_source(catalog_version_.load(),
                          [this](absl::StatusOr<accounts::v1::Catalog> catalog) {
                            AdoptCatalog(std::move(catalog));
                            std::lock_guard<std::mutex> lock(catalog_mu_);
                            catalog_in_flight_ = false;
                            catalog_cv_.notify_all();
                          });
}

void LocalRouter::AdoptCatalog(absl::StatusOr<accounts::v1::Catalog> catalog) {
  if (!catalog.ok()) {
    if (!catalog_failing_.exchange(true)) {
      LogWarn("cannot read the catalog of the accounts service; routing on the last one",
              {{"version", std::to_string(catalog_version_.load())},
               {"error", SV(catalog.status().message())}});
    }
    return;
  }
  if (catalog_failing_.exchange(false)) {
    LogInfo("the catalog of the accounts service is readable again");
  }
  if (catalog->not_modified() || catalog->version() <= 0) return;
  std::lock_guard<std::mutex> lock(runtime_mu_);
  const int64_t version = catalog->version();
  if (version <= catalog_version_.load()) return;  // an older answer arriving late
  // A catalog that cannot be used is not asked for again: the next change brings a new one.
  catalog_version_.store(version);
  auto applied = ApplyCatalog(*file_config_, *catalog);
  if (!applied.ok()) {
    LogWarn("ignoring a catalog of the accounts service",
            {{"version", std::to_string(version)}, {"error", SV(applied.status().message())}});
    return;
  }
  auto table =
      RoutingTable::Build(applied->config, applied->registry, runtime_, applied->blocked_providers);
  if (!table.ok()) {
    LogWarn("ignoring a catalog of the accounts service",
            {{"version", std::to_string(version)}, {"error", SV(table.status().message())}});
    return;
  }
  SetTable(*table);
  catalog_ = *std::move(catalog);
  LogInfo("catalog of the accounts service adopted",
          {{"version", std::to_string(version)},
           {"nodes", std::to_string(applied->config->nodes.size())},
           {"connections", std::to_string(applied->config->connections.size())},
           {"blocked_providers", std::to_string(applied->blocked_providers.size())}});
}

}  // namespace omniroute::router
