#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/format.h"

namespace omniroute {

// A provider the gateway can route to: a built-in one from the registry or a custom node.
struct ProviderSpec {
  std::string id;
  std::string name;
  std::vector<std::string> prefixes;  // model prefixes that select it (id included)
  Format format = common::v1::FORMAT_OPENAI_CHAT;
  AuthStyle auth = common::v1::AUTH_STYLE_BEARER;
  bool oauth = false;
  std::string base_url;  // API root with its version segment, no trailing slash
  std::vector<std::string> models;
  bool custom = false;  // declared as a node in the config file
};

// A provider account (an API key on a provider).
struct ConnectionSpec {
  std::string id;  // "<provider>:<name>"
  std::string provider;
  std::string name;
  std::string api_key;  // resolved (api_key or api_key_env); never logged
  int priority = 1;
  bool enabled = true;
};

struct ClientKeySpec {
  std::string name;
  std::string key;
};

struct Config {
  struct Server {
    std::string host = "0.0.0.0";
    int port = 20128;
    bool require_api_key = false;
    int threads = 0;  // 0 = one per core
    int64_t body_limit_bytes = 16 * 1024 * 1024;
    int upstream_connect_timeout_ms = 10000;
    int upstream_timeout_ms = 600000;  // whole non-streamed answer / idle gap in a stream
    int drain_timeout_ms = 30000;
  } server;

  // Addresses (host:port) of the services, for the distributed edge; empty = in-process.
  struct Services {
    std::string router;
    std::string translator;
    std::string accounts;
    std::string usage;
  } services;

  struct Storage {
    std::string sqlite_path;   // all-in-one default: $DATA_DIR/omniroute.db
    std::string postgres_url;  // when set, the usage service writes to PostgreSQL
  } storage;

  struct Redis {
    std::string url;  // redis://host:port or unix:///path; empty = in-memory state
  } redis;

  struct Resilience {
    int64_t cooldown_base_ms = 3000;
    int64_t cooldown_oauth_base_ms = 5000;
    int64_t cooldown_max_ms = 120000;
    int max_backoff_steps = 5;
  } resilience;

  std::string data_dir;
  std::string config_path;

  std::vector<ProviderSpec> nodes;
  std::vector<ConnectionSpec> connections;
  std::vector<ClientKeySpec> api_keys;

  // Secrets: from the environment, else generated once and kept under data_dir (0600).
  std::string admin_key;       // OMNIROUTE_ADMIN_KEY
  std::string api_key_secret;  // API_KEY_SECRET
  std::string jwt_secret;      // JWT_SECRET
  std::string initial_password;  // INITIAL_PASSWORD
};

using ConfigPtr = std::shared_ptr<const Config>;

// Parses YAML text strictly: unknown keys and wrong types are errors naming the key's path.
// Environment overrides are not applied here.
absl::StatusOr<Config> ParseConfig(const std::string& yaml_text);

// Resolves the config path (--config, OMNIROUTE_CONFIG, $DATA_DIR/omniroute.yaml), reads it
// when it exists (a missing default file means an empty config), applies environment
// overrides (PORT, DATA_DIR, REQUIRE_API_KEY, secrets, OMNIROUTE_*_ADDR, REDIS_URL,
// DATABASE_URL) and loads or generates secrets. `flag_path` is --config's value or empty.
absl::StatusOr<ConfigPtr> LoadConfig(const std::string& flag_path, bool generate_secrets = true);

// The built-in providers plus the config's custom nodes.
class ProviderRegistry {
 public:
  static absl::StatusOr<std::vector<ProviderSpec>> BuiltIns();
  explicit ProviderRegistry(std::vector<ProviderSpec> providers);

  // By id or model prefix; nullptr when unknown.
  const ProviderSpec* Find(std::string_view id_or_prefix) const;
  const std::vector<ProviderSpec>& all() const { return providers_; }

 private:
  std::vector<ProviderSpec> providers_;
};

// Builds the registry for a config: built-ins, then the config's nodes (a node may shadow
// a built-in id).
absl::StatusOr<std::shared_ptr<const ProviderRegistry>> BuildRegistry(const Config& config);

}  // namespace omniroute
