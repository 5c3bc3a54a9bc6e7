#pragma once

// The accounts service's implementation (local_accounts.cc) and its admin API
// (accounts_admin.cc). Internal to accounts_lib.

#include <boost/json/object.hpp>

#include "absl/functional/any_invocable.h"
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "local_accounts.h"
#include "oauth.h"

namespace omniroute::accounts {

// Who declared an object: the config file (read-only through the API) or the admin API.
enum class Origin { kFile, kApi };

struct KeyEntry {
  v1::ClientKey key;  // what ResolveClientKey answers
  boost::json::object doc;
  bool enabled = true;
  Origin origin = Origin::kApi;
};

struct ConnectionEntry {
  boost::json::object doc;  // never secrets
  std::string provider;
  bool oauth = false;
  Origin origin = Origin::kApi;
  std::string api_key;          // API-key connections (decrypted)
  v1::Credential credential;    // API-key connections: prebuilt
};

// Everything read from the file and the store; immutable once built.
struct Snapshot {
  int64_t store_version = -1;
  std::unordered_map<std::string, KeyEntry> keys_by_hash;  // SHA-256 hex of the key
  std::map<std::string, std::string> key_hash_by_id;
  std::map<std::string, ConnectionEntry> connections;      // by id
  std::map<std::string, std::pair<boost::json::object, Origin>> nodes;  // by id
  std::map<std::string, boost::json::object> models;       // "<provider>/<model id>"
  boost::json::object security;                             // the "security" setting
  std::map<std::string, v1::QuotaReport> quota;             // as stored, by connection id
  std::shared_ptr<const ProviderRegistry> registry;
  v1::Catalog catalog;
};

class LocalAccounts final : public Accounts {
 public:
  LocalAccounts(ConfigPtr config, AccountsOptions options);
  ~LocalAccounts() override;

  // Loads the store and starts the threads.
  absl::Status Start();

  // Interface
  void ResolveClientKey(const std::string& key, Callback<v1::ClientKey> done) override;
  void GetCredential(const v1::GetCredentialRequest& request,
                     Callback<v1::Credential> done) override;
  void GetCatalog(int64_t known_version, Callback<v1::Catalog> done) override;
  void Admin(const v1::AdminRequest& request, Callback<v1::AdminResponse> done) override;
  void ReportQuota(const v1::QuotaReport& report) override;

  // Swaps the config file's client keys, connections and nodes for those of `config` and
  // rebuilds the snapshot (the catalog gets a newer version). On error nothing changes.
  absl::Status ReloadConfig(ConfigPtr config);

 private:
  struct OAuthState {
    OAuthTokens tokens;
    std::string token_sha256;
  };

  // The quota of a connection as reported to this replica, and what the store holds.
  struct QuotaTrack {
    v1::QuotaReport latest;
    v1::QuotaReport stored;
    bool has_stored = false;
    bool writing = false;  // a store write is queued (it writes `latest` as it is then)
  };

  // ---- local_accounts.cc ----
  std::shared_ptr<const Snapshot> snapshot() const;
  // Re-reads the store when its version moved (or always with `force`) and swaps in a new
  // snapshot. Worker threads only.
  absl::Status Reload(bool force);
  absl::StatusOr<std::shared_ptr<Snapshot>> Build(int64_t version);
  void Post(absl::AnyInvocable<void()> job);
  void WorkerLoop();
  void SyncLoop();
  int64_t Now() const { return options_.clock(); }

  // OAuth credentials: answered from memory, refreshed on a worker (single flight per
  // connection in this process, NamedLock across processes).
  absl::StatusOr<v1::Credential> OAuthCredential(const std::string& connection_id,
                                                 const OAuthState& state) const;
  void RefreshInBackground(const std::string& connection_id, std::string failed_sha,
                           Callback<v1::Credential> done);
  absl::StatusOr<v1::Credential> RefreshNow(const std::string& connection_id,
                                            const std::string& failed_sha);
  // Stores tokens for a connection (new or refreshed) and updates its status.
  absl::Status SaveOAuthConnection(boost::json::object doc, const OAuthTokens& tokens);
  // Stores the latest quota of a connection (a worker job).
  void StoreQuota(const std::string& connection_id);
  // The newest quota known of a connection (this replica's reports or the store's).
  std::optional<v1::QuotaReport> LatestQuota(const Snapshot& snap,
                                             const std::string& connection_id);

  friend std::string AccountsMetricsText(const Accounts& accounts);

  // ---- accounts_admin.cc ----
  v1::AdminResponse AdminNow(const v1::AdminRequest& request);

  const ConfigPtr config_;
  AccountsOptions options_;
  std::unique_ptr<OAuthClient> oauth_;

  mutable std::mutex snap_mu_;
  std::shared_ptr<const Snapshot> snap_;
  std::mutex reload_mu_;  // serialises store access and reloads
  // The file's keys, connections and nodes that Build() reads (config_ keeps the start-up
  // settings and secrets), and when it was loaded (ms; part of the catalog version so that a
  // reload or a restart with a changed file is seen). Guarded by reload_mu_.
  ConfigPtr file_config_;
  int64_t file_epoch_ms_ = 0;
  // Machine id of keys generated here.
  std::string machine_id_;

  std::mutex oauth_mu_;
  std::map<std::string, OAuthState> oauth_tokens_;  // by connection id
  std::map<std::string, std::vector<Callback<v1::Credential>>> refreshing_;

  std::mutex quota_mu_;
  std::map<std::string, QuotaTrack> quota_;  // by connection id

  std::mutex login_mu_;
  std::map<std::string, std::deque<int64_t>> login_failures_;  // by client IP

  // Counters of /metrics: OAuth refreshes by provider and result, logins by result.
  mutable std::mutex counters_mu_;
  std::map<std::pair<std::string, std::string>, int64_t> refresh_counts_;
  std::map<std::string, int64_t> login_counts_;
  void Count(std::map<std::string, int64_t>& counts, const std::string& key) {
    std::lock_guard<std::mutex> lock(counters_mu_);
    ++counts[key];
  }
  // The sync thread's proactive refreshes: when a connection may be tried again after a
  // failed one (ms since the epoch).
  std::map<std::string, int64_t> proactive_next_;
  void RefreshExpiring();

  std::mutex jobs_mu_;
  std::condition_variable jobs_cv_;
  std::condition_variable sync_cv_;  // the sync thread's own, so jobs never wake it
  std::deque<absl::AnyInvocable<void()>> jobs_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
  std::thread sync_;
};

}  // namespace omniroute::accounts
