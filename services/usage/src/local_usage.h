#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "common/config.h"
#include "usage.h"
#include "usage_store.h"

namespace omniroute::usage {

struct LocalUsageOptions {
  // Durable spool for records the store cannot take (fsync'd, bounded); empty = records
  // wait in memory while the store is down.
  std::string spool_dir;
  int64_t spool_max_bytes = int64_t{1} << 30;
  // Pre-import backups (<data_dir>/db_backups) and temporary export files.
  std::string data_dir;
  // Budget spend and reservations in Redis (shared by replicas); empty = in memory.
  std::string redis_url;
  UsageSettings settings;
  std::vector<PricingSpec> pricing;     // entries of the config file
  std::vector<BudgetSpec> budgets;      // budgets of the config file
  std::vector<ProviderSpec> providers;  // for provider prefixes in pricing; empty = built-ins
  bool auto_backup = true;              // back the database up before an import
  std::function<int64_t()> clock;       // ms since the epoch; empty = the system clock
};

// The options of a config: usage settings, pricing, budgets, spool under DATA_DIR
// (usage.spool_dir or $DATA_DIR/spool), DISABLE_SQLITE_AUTO_BACKUP. `redis_url` is left
// empty (the usage service sets it from redis.url; the all-in-one keeps budgets in memory).
LocalUsageOptions LocalUsageOptionsFromConfig(const Config& config);

// The usage implementation over a store: prices records as they arrive, keeps budget spend
// current, writes records in batches on its own thread (queries and admin writes run
// there too, so callers never block on the database) and spools them durably while the
// store fails, replaying the spool in order when it is back. `store` must be migrated.
absl::StatusOr<UsagePtr> MakeLocalUsage(UsageStorePtr store, LocalUsageOptions options);

// Replaces the config file's pricing entries and budgets of a usage service made by
// MakeLocalUsage (anything else: FAILED_PRECONDITION). Usage settings need a restart.
absl::Status ReloadUsageConfig(Usage& usage, const Config& config);

// With default options: built-in pricing, no budgets, no spool.
UsagePtr MakeLocalUsage(UsageStorePtr store);

}  // namespace omniroute::usage
