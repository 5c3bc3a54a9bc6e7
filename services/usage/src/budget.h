#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/statusor.h"
#include "budget_ledger.h"
#include "omniroute/usage/v1/usage.pb.h"
#include "usage_store.h"

namespace omniroute::usage {

enum class WindowKind { kDaily, kWeekly, kMonthly };

// A budget window: days are counted from the reset time of day (UTC), weeks start on
// Monday and months on the 1st, both at the reset time.
struct WindowSpan {
  WindowKind kind = WindowKind::kDaily;
  int64_t start_day = 0;  // index of the window's first day
  int64_t start_ms = 0;
  int64_t end_ms = 0;  // exclusive; when the window resets
};

// Day index of `ts_ms` with days starting at `offset_ms` after midnight UTC.
int64_t DayIndex(int64_t ts_ms, int64_t offset_ms);
WindowSpan SpanOf(WindowKind kind, int64_t ts_ms, int64_t offset_ms);
const char* WindowName(WindowKind kind);  // "daily", "weekly", "monthly"
std::string FormatUtc(int64_t ms);        // 2026-01-02T10:00:00Z

struct BudgetOptions {
  int64_t reset_offset_ms = 0;
  double warn_at = 0.8;
  int64_t reservation_ttl_ms = 900000;
  int64_t settle_ttl_ms = 600000;
  bool fail_open = true;
};

// Budgets per key and per team, their spend per window and the reservations against
// them. Thread-safe; calls into the ledger may block when it is remote.
class Budgets {
 public:
  using Clock = std::function<int64_t()>;  // ms since the epoch

  Budgets(std::unique_ptr<BudgetLedger> ledger, BudgetOptions options, Clock clock);

  // Budgets of the config file (read-only through the API) and of the database.
  void SetConfigBudgets(const std::vector<v1::Budget>& budgets);
  void SetRuntimeBudgets(const std::vector<v1::Budget>& budgets);
  // Adds or replaces a runtime budget; FAILED_PRECONDITION for a config-managed one.
  absl::StatusOr<v1::Budget> Upsert(v1::Budget budget);
  absl::Status Remove(const std::string& client_key_id, const std::string& team);
  bool HasBudgets() const;

  // Holds `estimate_usd` against the budgets of the request's key and team, and counts the
  // request against the key's rate limits (rpm_limit, tpm_limit) of the current minute.
  // Refused: code "rate_limit_exceeded" (retry at the next minute) or "budget_exceeded".
  v1::Reservation Reserve(const v1::ReserveRequest& request, double estimate_usd);
  v1::SettleResponse Settle(const v1::SettleRequest& request);

  // Adds (or with sign -1 removes) records' costs to their windows and releases the
  // reservations of their requests (only when `arrived`).
  absl::Status AddSpend(const std::vector<v1::UsageRecord>& records, int sign, bool arrived);

  // Seeds the current windows from spend rows (day indices with this reset offset); with
  // `overwrite`, replaces what the ledger has (after a database import).
  absl::Status Seed(const std::vector<SpendRow>& rows, bool overwrite = false);
  // The earliest start of a current window (what Seed needs from the records).
  int64_t SeedSinceMs() const;

  // A key's or team's status (its budget, or an empty one with its spend).
  absl::StatusOr<v1::BudgetStatus> Status(const std::string& client_key_id,
                                          const std::string& team);
  // Every budget with its status.
  std::vector<v1::BudgetStatus> List();

  int64_t reset_offset_ms() const { return options_.reset_offset_ms; }
  bool blocking() const { return ledger_->blocking(); }
  uint64_t rejections() const;

 private:
  using Subject = std::pair<std::string, std::string>;  // (key id, team), one empty
  static std::string SubjectKey(const Subject& s);
  WindowRef Ref(const Subject& s, const WindowSpan& span) const;
  const v1::Budget* Find(const Subject& s) const;  // mu_ held
  absl::StatusOr<v1::BudgetStatus> StatusOf(const Subject& s, const v1::Budget* budget,
                                            int64_t now);

  std::unique_ptr<BudgetLedger> ledger_;
  const BudgetOptions options_;
  const Clock clock_;
  mutable std::mutex mu_;
  std::map<Subject, v1::Budget> config_;
  std::map<Subject, v1::Budget> runtime_;
  uint64_t rejections_ = 0;
};

}  // namespace omniroute::usage
