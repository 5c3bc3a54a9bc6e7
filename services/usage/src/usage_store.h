#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "omniroute/usage/v1/usage.pb.h"

namespace omniroute::usage {

// Spend of the records table per key, team and day (day = floor((ts - offset) / 1 day)).
struct SpendRow {
  std::string client_key_id;
  std::string team;
  int64_t day = 0;
  double cost_usd = 0;
};

// Durable storage of usage records, pricing entries and budgets. Calls block: the owner
// runs them on its own thread, never on an event loop. Not required to be thread-safe.
class UsageStore {
 public:
  virtual ~UsageStore() = default;

  // Creates or upgrades the schema (versioned migrations).
  virtual absl::Status Migrate() = 0;

  // Inserts a batch in one transaction; a request_id already stored is skipped. When
  // `inserted` is set it receives, per record, whether it was new.
  virtual absl::Status Write(const std::vector<v1::UsageRecord>& records,
                             std::vector<bool>* inserted = nullptr) = 0;

  // Records newest first (filters, offset, limit), with totals over every matching record.
  virtual absl::StatusOr<v1::QueryResponse> Query(const v1::QueryRequest& request) = 0;

  // Totals and series grouped by a dimension.
  virtual absl::StatusOr<v1::StatsResponse> Stats(const v1::StatsRequest& request) = 0;

  // Spend per key, team and day since `since_ms`.
  virtual absl::StatusOr<std::vector<SpendRow>> SpendByDay(int64_t since_ms,
                                                           int64_t day_offset_ms) = 0;

  // Runtime pricing entries and budgets (those set through the admin API).
  virtual absl::StatusOr<std::vector<v1::PricingEntry>> LoadPricing() = 0;
  virtual absl::Status SavePricing(const v1::PricingEntry& entry) = 0;
  virtual absl::Status DeletePricing(const std::string& provider, const std::string& model) = 0;
  virtual absl::StatusOr<std::vector<v1::Budget>> LoadBudgets() = 0;
  virtual absl::Status SaveBudget(const v1::Budget& budget) = 0;
  virtual absl::Status DeleteBudget(const std::string& client_key_id, const std::string& team) = 0;

  virtual std::string kind() const = 0;  // "sqlite" or "postgres"

  // SQLite: writes a consistent copy of the database to `path`.
  virtual absl::Status Backup(const std::string& path) {
    return absl::UnimplementedError(
        "database export is available for the SQLite store; back PostgreSQL up with pg_dump");
  }
  // SQLite: replaces the whole content with the database file at `path` (checked by the
  // caller with CheckSqliteDatabase), then migrates it.
  virtual absl::Status Restore(const std::string& path) {
    return absl::UnimplementedError(
        "database import is available for the SQLite store; restore PostgreSQL with "
        "pg_restore");
  }
};

using UsageStorePtr = std::unique_ptr<UsageStore>;

// Table usage_records (+ pricing, budgets) in SQLite (the all-in-one store).
absl::StatusOr<UsageStorePtr> MakeSqliteUsageStore(const std::string& path);

// The same tables in PostgreSQL; `url` is a libpq connection string or URI.
absl::StatusOr<UsageStorePtr> MakePostgresUsageStore(const std::string& url);

// Checks that `path` is an SQLite database usable as a usage store: PRAGMA integrity_check
// passes and the required tables exist. Returns how many usage records it holds.
absl::StatusOr<int64_t> CheckSqliteDatabase(const std::string& path);

}  // namespace omniroute::usage
