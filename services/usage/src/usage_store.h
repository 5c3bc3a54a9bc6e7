#pragma once

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "omniroute/usage/v1/usage.pb.h"

namespace omniroute::usage {

// Durable storage of usage records. Calls block: the owner runs them on its own thread,
// never on an event loop. Not required to be thread-safe.
class UsageStore {
 public:
  virtual ~UsageStore() = default;

  // Creates or upgrades the schema (versioned migrations).
  virtual absl::Status Migrate() = 0;

  // Inserts a batch in one transaction; a request_id already stored is skipped.
  virtual absl::Status Write(const std::vector<v1::UsageRecord>& records) = 0;

  // Records newest first, with totals over every matching record.
  virtual absl::StatusOr<v1::QueryResponse> Query(const v1::QueryRequest& request) = 0;
};

using UsageStorePtr = std::unique_ptr<UsageStore>;

// Table usage_records in SQLite (the all-in-one store).
absl::StatusOr<UsageStorePtr> MakeSqliteUsageStore(const std::string& path);

// Table usage_records in PostgreSQL; `url` is a libpq connection string or URI.
absl::StatusOr<UsageStorePtr> MakePostgresUsageStore(const std::string& url);

}  // namespace omniroute::usage
