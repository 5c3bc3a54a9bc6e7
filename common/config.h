#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
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
  std::string proxy;  // HTTP proxy for upstream requests: "http://[user:pass@]host:port" or ""
  // From the accounts service's catalog (file connections keep the defaults).
  bool oauth = false;
  std::string status;               // active | expired | needs_login | error | disabled
  std::vector<std::string> models;  // when not empty, the only models the connection serves
  // The provider's quota as last reported (subscription plans): percent left in the window
  // that limits it (-1 = unknown) and when that window resets (ms since the epoch; 0 = unknown).
  double quota_remaining_percent = -1;
  int64_t quota_resets_at_ms = 0;
};

// A value that may differ between API-key and OAuth connections. In YAML a number sets
// both; a mapping {api_key: N, oauth: M} sets each.
template <typename T>
struct PerAuth {
  T api_key{};
  T oauth{};
  T For(bool is_oauth) const { return is_oauth ? oauth : api_key; }
};

// Account strategies (how the connections of one provider are ordered).
inline constexpr const char* kAccountStrategies[] = {
    "fill-first", "round-robin", "p2c", "random", "least-used", "cost-optimized"};
// Combo strategies (how the models of a combo are ordered).
inline constexpr const char* kComboStrategies[] = {
    "priority", "round-robin", "random", "weighted", "least-used", "cost-optimized"};

// `routing:` — global account strategy and sessions.
struct RoutingSettings {
  std::string strategy = "fill-first";  // one of kAccountStrategies
  int sticky_limit = 3;                 // round-robin: requests per account before moving on
  int session_ttl_s = 1800;             // sticky sessions (X-Session-Id)
  std::string combo_strategy = "priority";  // default strategy of combos that set none
  int max_candidates = 30;              // longest plan
};

// A strategy override (per provider, node or combo); empty/0 = inherit.
struct RoutingOverride {
  std::string strategy;
  int sticky_limit = 0;
};

// `resilience.queue` — pacing per connection; 0 = no limit.
struct QueueSettings {
  int rpm = 0;
  int64_t min_gap_ms = 0;
  int max_concurrent = 0;
  int64_t lease_ttl_ms = 300000;  // an in-flight slot is freed after this even if unreported
};

// `resilience:` — cooldowns, lockouts, breaker, pacing, waiting.
struct ResilienceConfig {
  struct Cooldown {
    PerAuth<int64_t> base_ms{3000, 5000};
    int64_t max_ms = 120000;
    PerAuth<int> max_backoff_steps{5, 8};
    bool use_upstream_retry_hints = true;
  } cooldown;
  // Model-scoped lockouts (provider:connection:model) after a 404 or a model-specific 429.
  struct Lockout {
    int64_t base_ms = 120000;
    int64_t max_ms = 1800000;
  } lockout;
  struct Breaker {
    PerAuth<int> failure_threshold{12, 8};
    PerAuth<int64_t> reset_timeout_ms{30000, 60000};
    int max_reset_multiplier = 16;  // reset timeout doubles per failed probe up to this; 1 = never
  } breaker;
  QueueSettings queue;
  struct WaitForCooldown {
    bool enabled = true;
    int64_t max_wait_ms = 30000;
    int max_retries = 3;
  } wait_for_cooldown;
};

// `providers:` entry (or a node's routing/queue keys): per-provider overrides.
struct ProviderOverride {
  std::string id;  // provider id or prefix as written; canonical once loaded
  RoutingOverride routing;
  // Pacing for this provider's connections; -1 = the global value.
  int rpm = -1;
  int64_t min_gap_ms = -1;
  int max_concurrent = -1;
  // `providers:` entries of the config file only: the built-in provider's base URL instead of
  // the registry's (e.g. a subscription provider pointed at a relay or a mock); "" = keep it.
  std::string base_url;
};

struct ComboModelSpec {
  std::string model;  // a model string: prefix/model, bare name, alias or another combo
  int weight = 1;     // weighted strategy
  double cost = -1;   // cost-optimized strategy (any unit; lower first); < 0 = unknown
};

// A named list of models usable as a model name.
struct ComboSpec {
  std::string name;
  std::string strategy;  // empty = routing.combo_strategy
  int sticky_limit = 0;  // round-robin; 0 = routing.sticky_limit
  RoutingOverride routing;  // account strategy for the combo's models
  std::vector<ComboModelSpec> models;
};

// A model alias: `pattern` may hold `*` and `?` (case-insensitive).
struct AliasSpec {
  std::string pattern;
  std::string target;
};

// Models tried, in order, after a model of the chain fails.
struct FallbackChainSpec {
  std::string name;
  std::vector<std::string> models;
};

struct ClientKeySpec {
  std::string name;
  std::string key;
};

// ---- Usage, pricing and budgets (the usage service) ----

// A `pricing:` entry: USD per 1M tokens for a provider (id or prefix; "*" = any) and a
// model name or pattern (`*`, `?`, case-insensitive). A negative optional price inherits:
// cached_input and cache_creation the input price, reasoning the output price.
struct PricingSpec {
  std::string provider = "*";
  std::string model;
  double input = 0;
  double output = 0;
  double cached_input = -1;
  double cache_creation = -1;
  double reasoning = -1;
};

// A `budgets:` entry: limits in USD of a client key (`key: NAME` of `api_keys`, or
// `key_id: ID`) or of a team; 0 = no limit for that window.
struct BudgetSpec {
  std::string key_id;  // "cfg:<name>" for `key: <name>`
  std::string team;
  double daily_usd = 0;
  double weekly_usd = 0;
  double monthly_usd = 0;
  double warn_at = 0;  // fraction; 0 = usage.budget_warn_at
};

// `usage:` — recording, spooling, budgets.
struct UsageSettings {
  std::string budget_reset_utc = "00:00";  // HH:MM (UTC) at which the windows start
  int64_t budget_reset_offset_ms = 0;      // the same, in ms after midnight
  double budget_warn_at = 0.8;
  int64_t default_max_output_tokens = 4096;  // reservations of requests without max_tokens
  // Price (USD per 1M tokens) of reservations for a model without a pricing entry.
  double estimate_input_price = 3.0;
  double estimate_output_price = 15.0;
  int64_t reservation_ttl_ms = 900000;  // an unsettled hold is dropped after this
  int64_t settle_ttl_ms = 600000;       // a settled hold waits this long for its record
  bool budget_fail_open = true;         // admit requests while the budget store is down
  std::string spool_dir;                // empty = $DATA_DIR/spool
  int64_t spool_max_bytes = int64_t{1} << 30;
  int metrics_top_keys = 20;            // keys with their own metric label; the rest "other"
};

// Single usage objects from YAML or JSON text, with the config file's rules.
absl::StatusOr<PricingSpec> ParsePricingSpec(const std::string& text);
// A document `pricing: [entries]` (data/pricing.yaml).
absl::StatusOr<std::vector<PricingSpec>> ParsePricingDocument(const std::string& text);
absl::StatusOr<BudgetSpec> ParseBudgetSpec(const std::string& text);

// ---- End of usage ----

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

  RoutingSettings routing;
  ResilienceConfig resilience;
  // Per-provider overrides (`providers:` entries and the `routing:`/`queue:` of nodes).
  std::vector<ProviderOverride> provider_overrides;
  std::vector<ComboSpec> combos;
  std::vector<AliasSpec> aliases;
  std::vector<FallbackChainSpec> fallback_chains;

  std::string data_dir;
  std::string config_path;

  std::vector<ProviderSpec> nodes;
  std::vector<ConnectionSpec> connections;
  std::vector<ClientKeySpec> api_keys;

  // Usage (the usage service): settings, pricing entries and budgets of the file.
  UsageSettings usage;
  std::vector<PricingSpec> pricing;
  std::vector<BudgetSpec> budgets;

  // Secrets: from the environment, else generated once and kept under data_dir (0600).
  std::string admin_key;       // OMNIROUTE_ADMIN_KEY
  std::string api_key_secret;  // API_KEY_SECRET
  std::string jwt_secret;      // JWT_SECRET
  std::string initial_password;  // INITIAL_PASSWORD
};

using ConfigPtr = std::shared_ptr<const Config>;

// Parsers of single routing objects from YAML or JSON text, with the file's rules (the
// admin API takes the same shapes as the config file).
absl::StatusOr<ComboSpec> ParseComboSpec(const std::string& text);
absl::StatusOr<AliasSpec> ParseAliasSpec(const std::string& text);
absl::StatusOr<FallbackChainSpec> ParseFallbackChainSpec(const std::string& text);
absl::StatusOr<ProviderOverride> ParseProviderOverride(const std::string& text);
// Apply the keys present in `text` (a `routing:` or `resilience:` mapping) over `out`.
absl::Status ApplyRoutingPatch(const std::string& text, RoutingSettings* out);
absl::Status ApplyResiliencePatch(const std::string& text, ResilienceConfig* out);
bool IsAccountStrategy(std::string_view name);
bool IsComboStrategy(std::string_view name);

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
