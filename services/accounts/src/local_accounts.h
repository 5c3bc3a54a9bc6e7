#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "accounts.h"
#include "accounts_store.h"
#include "common/config.h"
#include "common/crypto.h"
#include "http_fetch.h"

namespace omniroute::accounts {

struct AccountsOptions {
  // Where API-created objects live; nullptr = an in-memory SQLite database (tests).
  AccountsStorePtr store;
  // Serialises OAuth refreshes of one connection across processes; nullptr = this process.
  std::unique_ptr<NamedLock> lock;
  // Encrypts secrets at rest; nullopt = a random key (tests).
  std::optional<crypto::Keyring> keyring;
  // Outbound calls (OAuth endpoints, connection tests); nullptr = MakeHttpFetcher().
  std::unique_ptr<HttpFetcher> http;
  // Every OAuth URL https://HOST/PATH becomes <base>/HOST/PATH (OMNIROUTE_OAUTH_BASE).
  std::string oauth_url_base;
  std::function<int64_t()> clock;  // ms since the epoch; default: the system clock
  // A thread that adopts changes other replicas made (store version), every interval.
  bool background = true;
  int64_t sync_interval_ms = 1000;
  int workers = 2;                  // threads for admin calls and token refreshes
  bool allow_key_reveal = false;    // ALLOW_API_KEY_REVEAL
  bool cookie_secure = false;       // AUTH_COOKIE_SECURE
  // How long an edge may cache a resolved client key: revocation reaches every edge within
  // this plus sync_interval_ms.
  int key_cache_ttl_s = 5;
  int64_t session_ttl_s = 24 * 3600;
  int login_max_failures = 5;            // per client IP in login_window_s
  int64_t login_window_s = 15 * 60;
};

// The accounts service: client keys (file and API), provider connections with encrypted
// secrets, custom nodes and models, OAuth flows and refreshes, admin login and access
// settings. Lookups on the request path answer from memory; store and network calls run on
// its worker threads.
absl::StatusOr<AccountsPtr> MakeLocalAccounts(ConfigPtr config, AccountsOptions options);

// Reloads the config file's client keys, connections and nodes of an accounts service made
// by MakeLocalAccounts (anything else: FAILED_PRECONDITION). On error nothing changes.
absl::Status ReloadAccountsConfig(Accounts& accounts, ConfigPtr config);

// Prometheus text of the accounts service: connections by provider and status, client keys,
// OAuth refreshes by provider and result, admin logins by result ("" for other Accounts).
std::string AccountsMetricsText(const Accounts& accounts);

// Options from the config and environment: the store (DATABASE_URL → PostgreSQL, else the
// SQLite file), the keyring of DATA_DIR, OMNIROUTE_OAUTH_BASE, ALLOW_API_KEY_REVEAL,
// AUTH_COOKIE_SECURE, OMNIROUTE_OAUTH_CA_FILE.
absl::StatusOr<AccountsOptions> AccountsOptionsFromConfig(const Config& config);

}  // namespace omniroute::accounts
