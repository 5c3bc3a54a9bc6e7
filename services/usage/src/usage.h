#pragma once

#include <chrono>
#include <memory>

#include "common/callback.h"
#include "omniroute/usage/v1/usage.pb.h"

namespace omniroute::usage {

// Records usage and answers budget checks.
class Usage {
 public:
  virtual ~Usage() = default;

  // Queues a record for durable storage; returns at once. Idempotent by request_id.
  virtual void Record(v1::UsageRecord record) = 0;

  // Whether the key may spend the estimate now.
  virtual void CheckBudget(const v1::CheckBudgetRequest& request,
                           Callback<v1::BudgetDecision> done) = 0;

  // Records and totals, newest first.
  virtual void Query(const v1::QueryRequest& request, Callback<v1::QueryResponse> done) = 0;

  // Waits until queued records are stored (or handed to the usage service), at most
  // `timeout`. Returns how many records are still pending.
  virtual size_t Flush(std::chrono::milliseconds timeout) = 0;
};

using UsagePtr = std::shared_ptr<Usage>;

}  // namespace omniroute::usage
