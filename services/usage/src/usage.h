#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "common/callback.h"
#include "omniroute/usage/v1/usage.pb.h"

namespace omniroute::usage {

// Records usage, prices it, enforces budgets and answers queries. Every callback may run
// before the call returns (in-process) or later on another thread (gRPC).
class Usage {
 public:
  virtual ~Usage() = default;

  // Queues a record for durable storage; returns at once. Idempotent by request_id. The
  // usage service computes cost_usd from its pricing table.
  virtual void Record(v1::UsageRecord record) = 0;

  // Stores a batch and answers once it is durable (in the store or the on-disk spool).
  // The default queues each record and answers at once.
  virtual void RecordBatch(v1::RecordBatch batch, Callback<v1::Ack> done) {
    const int n = batch.records_size();
    for (v1::UsageRecord& r : *batch.mutable_records()) {
      Record(std::move(r));
    }
    v1::Ack ack;
    ack.set_accepted(n);
    done(std::move(ack));
  }

  // Holds the request's estimated cost against its key's and team's budgets. Answers
  // allowed=false (with the limit, spend and reset in `message`) when a limit has no room.
  virtual void Reserve(const v1::ReserveRequest& request, Callback<v1::Reservation> done) = 0;

  // Settles a reservation after the answer (or cancels it).
  virtual void Settle(const v1::SettleRequest& request, Callback<v1::SettleResponse> done) = 0;

  // The request log, newest first, with totals.
  virtual void Query(const v1::QueryRequest& request, Callback<v1::QueryResponse> done) = 0;

  // Totals and time series.
  virtual void Stats(const v1::StatsRequest& request, Callback<v1::StatsResponse> done) = 0;

  // The pricing table (every entry with its source).
  virtual void ListPricing(Callback<v1::PricingList> done) = 0;
  // Adds or replaces the runtime entry of (provider, model); persisted.
  virtual void UpsertPricing(const v1::PricingEntry& entry, Callback<v1::PricingEntry> done) = 0;
  // Removes a runtime entry (NOT_FOUND when there is none; FAILED_PRECONDITION for an
  // entry of the config file).
  virtual void DeletePricing(const v1::DeletePricingRequest& request, Callback<v1::Ack> done) = 0;

  // Budgets with their spend; one key's or team's when the request names it.
  virtual void ListBudgets(const v1::ListBudgetsRequest& request,
                           Callback<v1::BudgetList> done) = 0;
  // Sets (replaces) the budget of a key or team; persisted.
  virtual void SetBudget(const v1::Budget& budget, Callback<v1::BudgetStatus> done) = 0;
  virtual void DeleteBudget(const v1::DeleteBudgetRequest& request, Callback<v1::Ack> done) = 0;

  // Prometheus text of the usage metrics (and of this client's own spool, for a client).
  virtual void Metrics(Callback<v1::MetricsResponse> done) = 0;

  // A backup of the database: kind "sqlite" (the file) or "all" (tar.gz with the database
  // and JSON exports of pricing and budgets). One chunk with the whole content.
  virtual void ExportDatabase(const std::string& kind, Callback<v1::DataChunk> done) = 0;

  // Replaces the database with `data` (an SQLite file) after checking its integrity and
  // tables, and after a backup of the current one.
  virtual void ImportDatabase(std::string data, Callback<v1::ImportResult> done) = 0;

  // Waits until queued records are stored (or handed to the usage service), at most
  // `timeout`. Returns how many records are still pending (for a client with a spool,
  // those are kept on disk and sent after the next start).
  virtual size_t Flush(std::chrono::milliseconds timeout) = 0;
};

using UsagePtr = std::shared_ptr<Usage>;

}  // namespace omniroute::usage
