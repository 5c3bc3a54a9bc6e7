#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace omniroute::accounts {

// One object of the accounts service: its JSON document (never a secret) and its secret
// part, sealed with the storage keyring ("enc:v1:..."), empty when it has none.
struct StoredObject {
  std::string kind;  // "key", "connection", "node", "model", "setting", "oauth_flow"
  std::string id;
  std::string doc;     // JSON object
  std::string secret;  // sealed; empty = none
  int64_t updated_ms = 0;
};

// Durable storage of the accounts service (table accounts_objects and a change counter).
// Calls block: callers run them on worker threads, never on an event loop. Not thread-safe.
class AccountsStore {
 public:
  virtual ~AccountsStore() = default;

  // Creates or upgrades the schema (versioned migrations, table accounts_schema_migrations).
  virtual absl::Status Migrate() = 0;

  virtual absl::StatusOr<std::vector<StoredObject>> List(const std::string& kind) = 0;
  virtual absl::StatusOr<std::optional<StoredObject>> Get(const std::string& kind,
                                                          const std::string& id) = 0;
  // Inserts or replaces; bumps the change counter.
  virtual absl::Status Put(const StoredObject& object) = 0;
  // Whether it existed; bumps the change counter when it did.
  virtual absl::StatusOr<bool> Delete(const std::string& kind, const std::string& id) = 0;

  // The change counter: every Put/Delete of any replica raises it.
  virtual absl::StatusOr<int64_t> Version() = 0;

  virtual std::string kind() const = 0;  // "sqlite" or "postgres"
};

using AccountsStorePtr = std::unique_ptr<AccountsStore>;

// The accounts tables in an SQLite file (the all-in-one shares the usage database).
absl::StatusOr<AccountsStorePtr> MakeSqliteAccountsStore(const std::string& path);
// The same tables in PostgreSQL (libpq connection string or URI).
absl::StatusOr<AccountsStorePtr> MakePostgresAccountsStore(const std::string& url);

// Runs `fn` while holding the named lock, across every process sharing the database
// (PostgreSQL: an advisory lock on a connection of its own; SQLite: this process only, as
// one process owns the file).
class NamedLock {
 public:
  virtual ~NamedLock() = default;
  virtual absl::Status With(const std::string& name, const std::function<absl::Status()>& fn) = 0;
};

std::unique_ptr<NamedLock> MakeProcessLock();
std::unique_ptr<NamedLock> MakePostgresLock(const std::string& url);

}  // namespace omniroute::accounts
