#pragma once

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "absl/status/statusor.h"
#include "common/config.h"
#include "common/strings.h"
#include "state_store.h"

namespace omniroute::router {

// What the routing admin API changed over the config file. Persisted by the router (a JSON
// file under DATA_DIR) and shared with the other replicas through the state store.
struct RuntimeRouting {
  int64_t version = 0;                      // ms since the epoch of the last change
  boost::json::object routing_patch;        // applied over the file's `routing:`
  boost::json::object resilience_patch;     // applied over the file's `resilience:`
  std::vector<ProviderOverride> providers;  // replace the file's override of the same id
  std::vector<ComboSpec> combos;
  std::vector<AliasSpec> aliases;
  std::vector<FallbackChainSpec> fallback_chains;
};

std::string SerializeRuntime(const RuntimeRouting& runtime);
absl::StatusOr<RuntimeRouting> ParseRuntime(std::string_view json);

// JSON forms of the routing objects (the shapes the config file and the admin API take).
boost::json::object ToJson(const ComboSpec& combo);
boost::json::object ToJson(const AliasSpec& alias);
boost::json::object ToJson(const FallbackChainSpec& chain);
boost::json::object ToJson(const ProviderOverride& o);
boost::json::object ToJson(const RoutingSettings& routing);
boost::json::object ToJson(const ResilienceConfig& resilience);

// Deep merge of JSON objects: keys of `patch` replace those of `base`, objects merge.
void MergeJson(boost::json::object& base, const boost::json::object& patch);


// The effective routing configuration: the file's, with the runtime changes applied.
// Immutable; the router swaps in a new one on every change.
class RoutingTable {
 public:
  // Where an object comes from: the config file (read-only through the API) or the API.
  enum class Origin { kFile, kApi };

  template <typename T>
  struct Entry {
    T spec;
    Origin origin;
  };

  // `file` is the config the table starts from: the YAML file's, or that config with the
  // nodes and connections of the accounts catalog. `blocked_providers` (ids or prefixes)
  // serve nothing.
  static absl::StatusOr<std::shared_ptr<const RoutingTable>> Build(
      ConfigPtr file, std::shared_ptr<const ProviderRegistry> registry,
      const RuntimeRouting& runtime, const std::vector<std::string>& blocked_providers = {});

  const Config& file() const { return *file_; }
  const ConfigPtr& file_ptr() const { return file_; }
  const ProviderRegistry& registry() const { return *registry_; }
  const std::shared_ptr<const ProviderRegistry>& registry_ptr() const { return registry_; }
  const RoutingSettings& routing() const { return routing_; }
  const ResilienceConfig& resilience() const { return resilience_; }

  // Whether the administrator blocked a provider (by its canonical id).
  bool Blocked(std::string_view provider) const;
  // The blocked providers, canonical ids.
  const std::vector<std::string>& blocked_providers() const { return blocked_; }

  const ComboSpec* FindCombo(std::string_view name) const;
  const FallbackChainSpec* FindChain(std::string_view name) const;
  // The alias for `model`: an exact pattern first, then the most specific wildcard pattern
  // (more literal characters, then fewer wildcards, then declaration order).
  const AliasSpec* MatchAlias(std::string_view model) const;

  // The enabled connections of a provider, by priority; empty when none.
  const std::vector<const ConnectionSpec*>& Connections(const std::string& provider) const;
  // Those of them that serve `model` (a connection with its own models serves only those).
  std::vector<const ConnectionSpec*> Connections(const std::string& provider,
                                                 std::string_view model) const;
  // The models a connected provider serves: its own when one of its connections serves any
  // model, then those of its connections; empty when it has no connection.
  std::vector<std::string> ServedModels(const ProviderSpec& provider) const;
  // Whether `model` is among them.
  bool Serves(const ProviderSpec& provider, std::string_view model) const;
  // Every provider that has a connection.
  std::vector<std::string> ConnectedProviders() const;
  // Every enabled connection id.
  std::vector<std::string> ConnectionIds() const;
  const ConnectionSpec* FindConnection(const std::string& id) const;

  // The account strategy override of a provider (empty fields = none).
  RoutingOverride ProviderRouting(const std::string& provider) const;
  PacingPolicy Pacing(const std::string& provider) const;
  CooldownPolicy Cooldown(bool oauth) const;
  CooldownPolicy Lockout() const;
  BreakerPolicy Breaker(bool oauth) const;

  const std::vector<Entry<ComboSpec>>& combos() const { return combos_; }
  const std::vector<Entry<AliasSpec>>& aliases() const { return aliases_; }
  const std::vector<Entry<FallbackChainSpec>>& chains() const { return chains_; }
  const std::vector<Entry<ProviderOverride>>& provider_overrides() const { return overrides_; }

 private:
  ConfigPtr file_;
  std::shared_ptr<const ProviderRegistry> registry_;
  RoutingSettings routing_;
  ResilienceConfig resilience_;
  std::vector<Entry<ComboSpec>> combos_;
  std::vector<Entry<AliasSpec>> aliases_;
  std::vector<Entry<FallbackChainSpec>> chains_;
  std::vector<Entry<ProviderOverride>> overrides_;
  std::vector<const AliasSpec*> wildcard_aliases_;  // most specific first
  std::unordered_map<std::string, std::vector<const ConnectionSpec*>> by_provider_;
  std::vector<std::string> blocked_;
};

}  // namespace omniroute::router
