#include "local_usage.h"

#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "archive.h"
#include "budget.h"
#include "common/log.h"
#include "common/strings.h"
#include "pricing.h"
#include "spool.h"
#include "usage_metrics.h"

namespace omniroute::usage {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

constexpr size_t kBatch = 500;
// How long a record may wait in memory for more to share its transaction (see Run).
constexpr auto kLinger = std::chrono::milliseconds(25);
constexpr size_t kMaxQueued = 1'000'000;
constexpr int64_t kMaxImportBytes = 100 << 20;
constexpr int kBlockingWorkers = 4;

int64_t SystemNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// A few threads for calls that block on Redis (budget reservations in the distributed
// mode), so that gRPC threads never wait on I/O.
class WorkerPool {
 public:
  explicit WorkerPool(int n) {
    for (int i = 0; i < n; ++i) {
      threads_.emplace_back([this] { Run(); });
    }
  }
  ~WorkerPool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : threads_) {
      t.join();
    }
  }
  void Post(absl::AnyInvocable<void()> task) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      tasks_.push_back(std::move(task));
    }
    cv_.notify_one();
  }

 private:
  void Run() {
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      cv_.wait(lock, [&] { return stop_ || !tasks_.empty(); });
      if (tasks_.empty()) {
        return;
      }
      auto task = std::move(tasks_.front());
      tasks_.pop_front();
      lock.unlock();
      task();
      lock.lock();
    }
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<absl::AnyInvocable<void()>> tasks_;
  bool stop_ = false;
  std::vector<std::thread> threads_;
};

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Timestamp(int64_t ms) {
  std::string s = FormatUtc(ms);  // 2026-01-02T10:00:00Z → 20260102-100000
  s = absl::StrReplaceAll(s, {{"-", ""}, {":", ""}, {"Z", ""}});
  std::replace(s.begin(), s.end(), 'T', '-');
  return s;
}

json::value PricingJson(const std::vector<v1::PricingEntry>& entries) {
  json::array out;
  for (const v1::PricingEntry& e : entries) {
    json::object o{{"provider", e.provider()},
                   {"model", e.model()},
                   {"input", e.input()},
                   {"output", e.output()},
                   {"source", e.source()}};
    if (e.has_cached_input()) o["cached_input"] = e.cached_input();
    if (e.has_cache_creation()) o["cache_creation"] = e.cache_creation();
    if (e.has_reasoning()) o["reasoning"] = e.reasoning();
    out.push_back(std::move(o));
  }
  return out;
}

json::value BudgetsJson(const std::vector<v1::BudgetStatus>& budgets) {
  json::array out;
  for (const v1::BudgetStatus& s : budgets) {
    const v1::Budget& b = s.budget();
    out.push_back(json::object{{"client_key_id", b.client_key_id()},
                               {"team", b.team()},
                               {"daily_usd", b.daily_usd()},
                               {"weekly_usd", b.weekly_usd()},
                               {"monthly_usd", b.monthly_usd()},
                               {"warn_at", b.warn_at()},
                               {"source", b.source()}});
  }
  return out;
}

class LocalUsage final : public Usage {
 public:
  LocalUsage(UsageStorePtr store, LocalUsageOptions options, std::unique_ptr<Spool> spool,
             std::unique_ptr<PricingTable> pricing, std::unique_ptr<Budgets> budgets)
      : store_(std::move(store)),
        options_(std::move(options)),
        spool_(std::move(spool)),
        pricing_(std::move(pricing)),
        budgets_(std::move(budgets)),
        metrics_(options_.settings.metrics_top_keys) {
    if (budgets_->blocking()) {
      pool_ = std::make_unique<WorkerPool>(kBlockingWorkers);
    }
  }

  void Start() {
    thread_ = std::thread([this] { Run(); });
  }

  // Replaces the config file's pricing entries and budgets (runtime ones stay).
  void ReloadConfig(std::vector<v1::PricingEntry> pricing, const std::vector<v1::Budget>& budgets) {
    pricing_->SetConfig(std::move(pricing));
    budgets_->SetConfigBudgets(budgets);
  }

  ~LocalUsage() override {
    Flush(std::chrono::seconds(5));
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
    pool_.reset();
    if (!queue_.empty()) {
      LogError("usage records not stored at exit", {{"count", std::to_string(queue_.size())}});
    }
  }

  // Start-up: spend of the current windows from the store and the spool; the biggest
  // spenders keep their own metric label.
  absl::Status Init() {
    const int64_t since = budgets_->SeedSinceMs();
    absl::StatusOr<std::vector<SpendRow>> rows =
        store_->SpendByDay(since, budgets_->reset_offset_ms());
    if (!rows.ok()) {
      return rows.status();
    }
    if (spool_ != nullptr && spool_->depth() > 0) {
      // Spooled records are not in the store yet but were counted when they arrived.
      absl::StatusOr<Spool::Batch> b = spool_->Peek(SIZE_MAX);
      if (b.ok()) {
        for (const std::string& bytes : b->records) {
          v1::UsageRecord r;
          if (r.ParseFromString(bytes) && r.timestamp_ms() >= since) {
            rows->push_back({r.client_key_id(), r.team(),
                             DayIndex(r.timestamp_ms(), budgets_->reset_offset_ms()),
                             r.cost_usd()});
          }
        }
      }
    }
    if (absl::Status s = budgets_->Seed(*rows); !s.ok()) {
      LogError("budget spend not seeded", {{"error", SV(s.message())}});
    }
    if (options_.settings.metrics_top_keys > 0) {
      v1::StatsRequest q;
      q.set_since_ms(Now() - 30LL * 86400000);
      q.set_group_by("key");
      q.set_limit(options_.settings.metrics_top_keys);
      if (absl::StatusOr<v1::StatsResponse> st = store_->Stats(q); st.ok()) {
        std::vector<std::pair<double, std::string>> top;
        for (const v1::StatsRow& row : st->rows()) {
          top.emplace_back(-row.cost_usd(), row.group());
        }
        std::sort(top.begin(), top.end());
        std::vector<std::string> keys;
        for (auto& [cost, key] : top) {
          keys.push_back(key);
        }
        metrics_.SeedTopKeys(keys);
      }
    }
    return absl::OkStatus();
  }

  // Interface
  void Record(v1::UsageRecord record) override {
    std::vector<v1::UsageRecord> records;
    records.push_back(std::move(record));
    Enqueue(std::move(records), nullptr);
  }

  void RecordBatch(v1::RecordBatch batch, Callback<v1::Ack> done) override {
    std::vector<v1::UsageRecord> records(std::make_move_iterator(batch.mutable_records()->begin()),
                                         std::make_move_iterator(batch.mutable_records()->end()));
    Enqueue(std::move(records), std::move(done));
  }

  void Reserve(const v1::ReserveRequest& request, Callback<v1::Reservation> done) override {
    if (!budgets_->HasBudgets() && request.rpm_limit() <= 0 && request.tpm_limit() <= 0) {
      v1::Reservation r;
      r.set_allowed(true);
      r.set_remaining_usd(-1);
      metrics_.Reservation(true, false, "");
      done(std::move(r));
      return;
    }
    Blocking([this, request, done = std::move(done)]() mutable {
      const double estimate = Estimate(request);
      v1::Reservation r = budgets_->Reserve(request, estimate);
      std::string window;
      if (r.code() == "rate_limit_exceeded") {
        window = "minute";
      } else if (!r.allowed()) {
        window = absl::AsciiStrToLower(r.message().substr(0, r.message().find(' ')));
      }
      metrics_.Reservation(r.allowed(), !r.id().empty(), window);
      done(std::move(r));
    });
  }

  void Settle(const v1::SettleRequest& request, Callback<v1::SettleResponse> done) override {
    if (request.reservation_id().empty()) {
      done(v1::SettleResponse());
      return;
    }
    Blocking(
        [this, request, done = std::move(done)]() mutable { done(budgets_->Settle(request)); });
  }

  void Query(const v1::QueryRequest& request, Callback<v1::QueryResponse> done) override {
    Task([this, request, done = std::move(done)]() mutable {
      absl::StatusOr<v1::QueryResponse> r = store_->Query(request);
      if (r.ok()) {
        r->set_spool_depth(spool_ ? static_cast<int64_t>(spool_->depth()) : 0);
      }
      done(std::move(r));
    });
  }

  void Stats(const v1::StatsRequest& request, Callback<v1::StatsResponse> done) override {
    Task([this, request, done = std::move(done)]() mutable { done(store_->Stats(request)); });
  }

  void ListPricing(Callback<v1::PricingList> done) override {
    v1::PricingList out;
    for (v1::PricingEntry& e : pricing_->List()) {
      *out.add_entries() = std::move(e);
    }
    done(std::move(out));
  }

  void UpsertPricing(const v1::PricingEntry& entry, Callback<v1::PricingEntry> done) override {
    Task([this, entry, done = std::move(done)]() mutable {
      absl::StatusOr<v1::PricingEntry> stored = pricing_->Upsert(entry, Now());
      if (!stored.ok()) {
        done(stored.status());
        return;
      }
      if (absl::Status s = store_->SavePricing(*stored); !s.ok()) {
        ReloadPricing();
        done(s);
        return;
      }
      done(std::move(stored));
    });
  }

  void DeletePricing(const v1::DeletePricingRequest& request, Callback<v1::Ack> done) override {
    Task([this, request, done = std::move(done)]() mutable {
      const std::string provider = pricing_->CanonicalProvider(request.provider());
      if (absl::Status s = pricing_->Remove(provider, request.model()); !s.ok()) {
        done(s);
        return;
      }
      // Entries are stored as upserted (canonical provider, model as given).
      absl::Status s = store_->DeletePricing(provider, request.model());
      absl::StatusOr<std::vector<v1::PricingEntry>> stored = store_->LoadPricing();
      if (s.ok() && stored.ok()) {
        for (const v1::PricingEntry& e : *stored) {
          if (absl::EqualsIgnoreCase(e.provider(), provider) &&
              absl::EqualsIgnoreCase(e.model(), request.model())) {
            s = store_->DeletePricing(e.provider(), e.model());
          }
        }
      }
      if (!s.ok()) {
        ReloadPricing();
        done(s);
        return;
      }
      v1::Ack ack;
      ack.set_accepted(1);
      done(std::move(ack));
    });
  }

  void ListBudgets(const v1::ListBudgetsRequest& request, Callback<v1::BudgetList> done) override {
    Blocking([this, request, done = std::move(done)]() mutable {
      v1::BudgetList out;
      if (!request.client_key_id().empty() || !request.team().empty()) {
        absl::StatusOr<v1::BudgetStatus> st =
            budgets_->Status(request.client_key_id(), request.team());
        if (!st.ok()) {
          done(st.status());
          return;
        }
        *out.add_budgets() = *std::move(st);
      } else {
        for (v1::BudgetStatus& s : budgets_->List()) {
          *out.add_budgets() = std::move(s);
        }
      }
      done(std::move(out));
    });
  }

  void SetBudget(const v1::Budget& budget, Callback<v1::BudgetStatus> done) override {
    Task([this, budget, done = std::move(done)]() mutable {
      absl::StatusOr<v1::Budget> stored = budgets_->Upsert(budget);
      if (!stored.ok()) {
        done(stored.status());
        return;
      }
      if (absl::Status s = store_->SaveBudget(*stored); !s.ok()) {
        ReloadBudgets();
        done(s);
        return;
      }
      Blocking([this, stored = *stored, done = std::move(done)]() mutable {
        done(budgets_->Status(stored.client_key_id(), stored.team()));
      });
    });
  }

  void DeleteBudget(const v1::DeleteBudgetRequest& request, Callback<v1::Ack> done) override {
    Task([this, request, done = std::move(done)]() mutable {
      if (absl::Status s = budgets_->Remove(request.client_key_id(), request.team()); !s.ok()) {
        done(s);
        return;
      }
      if (absl::Status s = store_->DeleteBudget(request.client_key_id(), request.team()); !s.ok()) {
        ReloadBudgets();
        done(s);
        return;
      }
      v1::Ack ack;
      ack.set_accepted(1);
      done(std::move(ack));
    });
  }

  void Metrics(Callback<v1::MetricsResponse> done) override {
    v1::MetricsResponse out;
    if (spool_ != nullptr) {
      metrics_.Spool(spool_->depth(), spool_->bytes(), spool_->dropped());
      out.set_spool_depth(static_cast<int64_t>(spool_->depth()));
    }
    out.set_text(metrics_.Text());
    done(std::move(out));
  }

  void ExportDatabase(const std::string& kind, Callback<v1::DataChunk> done) override {
    if (kind != "sqlite" && kind != "all") {
      done(absl::InvalidArgumentError("export kind must be 'sqlite' or 'all'"));
      return;
    }
    Task([this, kind, done = std::move(done)]() mutable { done(Export(kind)); });
  }

  void ImportDatabase(std::string data, Callback<v1::ImportResult> done) override {
    Task([this, data = std::move(data), done = std::move(done)]() mutable { done(Import(data)); });
  }

  size_t Flush(std::chrono::milliseconds timeout) override {
    std::unique_lock<std::mutex> lock(mu_);
    ++flushing_;
    cv_.notify_all();
    drained_.wait_for(lock, timeout, [this] {
      return queue_.empty() && writing_ == 0 &&
             (spool_ == nullptr || spool_->depth() == 0 || store_down_);
    });
    --flushing_;
    return queue_.size() + writing_;
  }

 private:
  struct Pending {
    uint64_t last_seq;
    Callback<v1::Ack> done;
    int count;
  };

  int64_t Now() const { return options_.clock ? options_.clock() : SystemNowMs(); }

  double Estimate(const v1::ReserveRequest& request) const {
    auto [prefix_provider, model] = pricing_->SplitModel(request.model());
    const std::string provider = request.provider().empty() ? prefix_provider : request.provider();
    std::optional<Price> price = pricing_->Find(provider, model);
    if (!price) {
      price = Price{options_.settings.estimate_input_price, options_.settings.estimate_output_price,
                    0, 0, 0};
    }
    const int64_t output = request.max_output_tokens() > 0
                               ? request.max_output_tokens()
                               : options_.settings.default_max_output_tokens;
    return EstimateCost(*price, request.estimated_input_tokens(), output);
  }

  void Blocking(absl::AnyInvocable<void()> fn) {
    if (pool_ != nullptr) {
      pool_->Post(std::move(fn));
    } else {
      fn();
    }
  }

  void Task(absl::AnyInvocable<void()> fn) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      tasks_.push_back(std::move(fn));
    }
    cv_.notify_all();
  }

  void Enqueue(std::vector<v1::UsageRecord> records, Callback<v1::Ack> done) {
    const int count = static_cast<int>(records.size());
    for (v1::UsageRecord& r : records) {
      std::optional<Price> price = pricing_->Find(
          r.provider(), r.upstream_model().empty() ? r.requested_model() : r.upstream_model());
      r.set_cost_usd(price ? ComputeCost(*price, r) : 0.0);
      metrics_.Recorded(r, price.has_value());
    }
    bool wake = false;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (queue_.empty()) {
        queued_since_ = std::chrono::steady_clock::now();
        wake = true;
      }
      for (v1::UsageRecord& r : records) {
        if (queue_.size() >= kMaxQueued) {
          queue_.pop_front();
          ++dropped_;
        }
        queue_.push_back(std::move(r));
        ++seq_;
      }
      if (done) {
        pending_.push_back({seq_, std::move(done), count});
      }
      // The writer needs a wake-up when the queue stops being empty or fills a batch; in
      // between it is gathering (lingering) and would only go back to sleep: a wake-up for
      // every record costs a context switch for every request.
      wake = wake || queue_.size() >= kBatch;
    }
    if (wake) cv_.notify_all();
  }

  // Answers the batches whose records up to `seq` are durable.
  void CompleteUpTo(uint64_t seq) {
    std::vector<Pending> ready;
    {
      std::lock_guard<std::mutex> lock(mu_);
      while (!pending_.empty() && pending_.front().last_seq <= seq) {
        ready.push_back(std::move(pending_.front()));
        pending_.pop_front();
      }
    }
    for (Pending& p : ready) {
      v1::Ack ack;
      ack.set_accepted(p.count);
      p.done(std::move(ack));
    }
  }

  // Writes to the store; on success removes the spend of records that were duplicates.
  absl::Status WriteToStore(const std::vector<v1::UsageRecord>& batch) {
    std::vector<bool> inserted;
    const auto start = std::chrono::steady_clock::now();
    absl::Status s = store_->Write(batch, &inserted);
    metrics_.StoreWrite(
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count(), s.ok(),
        batch.size());
    if (s.ok()) {
      std::vector<v1::UsageRecord> duplicates;
      for (size_t i = 0; i < batch.size(); ++i) {
        if (!inserted[i]) {
          duplicates.push_back(batch[i]);
        }
      }
      if (!duplicates.empty()) {
        (void)budgets_->AddSpend(duplicates, -1, false);
      }
    }
    return s;
  }

  absl::Status AppendToSpool(const std::vector<v1::UsageRecord>& batch) {
    std::vector<std::string> bytes;
    bytes.reserve(batch.size());
    for (const v1::UsageRecord& r : batch) {
      bytes.push_back(r.SerializeAsString());
    }
    absl::StatusOr<uint64_t> dropped = spool_->Append(bytes);
    return dropped.ok() ? absl::OkStatus() : dropped.status();
  }

  // Replays up to one batch of the spool; returns whether the store took it.
  bool ReplaySpool() {
    absl::StatusOr<Spool::Batch> b = spool_->Peek(kBatch);
    if (!b.ok()) {
      LogError("usage spool unreadable", {{"error", SV(b.status().message())}});
      return false;
    }
    if (b->records.empty()) {
      return true;
    }
    std::vector<v1::UsageRecord> batch;
    batch.reserve(b->records.size());
    for (const std::string& bytes : b->records) {
      v1::UsageRecord r;
      if (r.ParseFromString(bytes)) {
        batch.push_back(std::move(r));
      }
    }
    if (absl::Status s = WriteToStore(batch); !s.ok()) {
      return false;
    }
    if (absl::Status s = spool_->Commit(*b); !s.ok()) {
      LogError("usage spool commit failed", {{"error", SV(s.message())}});
    }
    return true;
  }

  void Run() {
    std::vector<v1::UsageRecord> batch;
    std::chrono::milliseconds backoff(100);
    auto next_retry = std::chrono::steady_clock::now();
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      const bool backlog = spool_ != nullptr && spool_->depth() > 0;
      auto ready = [&] {
        return stop_ || !queue_.empty() || !tasks_.empty() ||
               (backlog && std::chrono::steady_clock::now() >= next_retry);
      };
      if (backlog) {
        cv_.wait_until(lock, next_retry, ready);
      } else {
        cv_.wait(lock, ready);
      }
      while (!tasks_.empty()) {
        auto task = std::move(tasks_.front());
        tasks_.pop_front();
        lock.unlock();
        task();
        lock.lock();
      }
      if (stop_ && queue_.empty()) {
        drained_.notify_all();
        return;
      }
      // A linger gathers a burst into one transaction: a commit costs as much as several
      // inserts, and under load it then carries tens of records instead of one. It counts from
      // when the oldest queued record arrived, so none waits longer than kLinger for its
      // transaction; a flush, a task or a full batch ends it.
      if (!stop_ && !queue_.empty() && queue_.size() < kBatch && tasks_.empty() && !backlog &&
          flushing_ == 0) {
        cv_.wait_until(lock, queued_since_ + kLinger, [&] {
          return stop_ || flushing_ > 0 || queue_.size() >= kBatch || !tasks_.empty();
        });
      }
      if (!queue_.empty()) {
        const size_t n = std::min(kBatch, queue_.size());
        batch.assign(std::make_move_iterator(queue_.begin()),
                     std::make_move_iterator(queue_.begin() + static_cast<ptrdiff_t>(n)));
        queue_.erase(queue_.begin(), queue_.begin() + static_cast<ptrdiff_t>(n));
        writing_ = n;
        const uint64_t last_seq = seq_ - queue_.size();
        lock.unlock();
        // Spend first: a reservation of the same request is released in the same step.
        if (absl::Status s = budgets_->AddSpend(batch, +1, true); !s.ok()) {
          LogError("budget spend not updated", {{"error", SV(s.message())}});
        }
        // Behind a spool backlog, new records join the spool so that order is kept.
        const bool backlog_now = spool_ != nullptr && spool_->depth() > 0;
        absl::Status s = backlog_now ? absl::OkStatus() : WriteToStore(batch);
        const bool stored = !backlog_now && s.ok();
        bool durable = stored;
        if (!stored && spool_ != nullptr) {
          absl::Status spooled = AppendToSpool(batch);
          durable = spooled.ok();
          if (!spooled.ok()) {
            LogError("usage spool append failed", {{"error", SV(spooled.message())}});
            if (s.ok()) {
              s = spooled;
            }
          } else if (!backlog_now) {
            LogWarn("usage store write failed; records spooled",
                    {{"error", SV(s.message())}, {"count", std::to_string(batch.size())}});
          }
        }
        lock.lock();
        writing_ = 0;
        if (!durable) {
          // No spool (or it failed): back to the front, in order, and retry later.
          queue_.insert(queue_.begin(), std::make_move_iterator(batch.begin()),
                        std::make_move_iterator(batch.end()));
          LogWarn("usage write failed; will retry", {{"error", SV(s.message())}});
          store_down_ = true;
          drained_.notify_all();
          if (stop_) {
            return;
          }
          cv_.wait_for(lock, backoff, [this] { return stop_; });
          backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
          continue;
        }
        if (stored) {
          store_down_ = false;
          backoff = std::chrono::milliseconds(100);
        } else if (!backlog_now) {
          store_down_ = true;
          next_retry = std::chrono::steady_clock::now() + backoff;
        }
        lock.unlock();
        CompleteUpTo(last_seq);
        lock.lock();
      }
      // Replay the spool while the store takes it.
      if (spool_ != nullptr && spool_->depth() > 0 &&
          std::chrono::steady_clock::now() >= next_retry) {
        const uint64_t spooled = spool_->depth();
        lock.unlock();
        const bool ok = ReplaySpool();
        lock.lock();
        if (ok) {
          if (store_down_) {
            LogInfo("usage store reachable again; spool replayed",
                    {{"records", std::to_string(spooled)}});
          }
          store_down_ = false;
          backoff = std::chrono::milliseconds(100);
        } else {
          store_down_ = true;
          next_retry = std::chrono::steady_clock::now() + backoff;
          backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
        }
      }
      if (queue_.empty() && writing_ == 0) {
        drained_.notify_all();
      }
    }
  }

  void ReloadPricing() {
    if (absl::StatusOr<std::vector<v1::PricingEntry>> p = store_->LoadPricing(); p.ok()) {
      pricing_->SetRuntime(*std::move(p));
    }
  }

  void ReloadBudgets() {
    if (absl::StatusOr<std::vector<v1::Budget>> b = store_->LoadBudgets(); b.ok()) {
      budgets_->SetRuntimeBudgets(*b);
    }
  }

  std::string TempPath(std::string_view suffix) const {
    const fs::path dir = fs::path(options_.data_dir.empty() ? fs::temp_directory_path().string()
                                                            : options_.data_dir) /
                         "tmp";
    std::error_code ec;
    fs::create_directories(dir, ec);
    return (dir / absl::StrCat("usage-", getpid(), "-", Now(), "-", ++temp_counter_, AV(suffix)))
        .string();
  }

  // Runs on the writer thread.
  absl::StatusOr<v1::DataChunk> Export(const std::string& kind) {
    const std::string tmp = TempPath(".sqlite");
    if (absl::Status s = store_->Backup(tmp); !s.ok()) {
      std::error_code ec;
      fs::remove(tmp, ec);
      return s;
    }
    std::string db = ReadFile(tmp);
    std::error_code ec;
    fs::remove(tmp, ec);
    const std::string stamp = Timestamp(Now());
    v1::DataChunk out;
    if (kind == "sqlite") {
      out.set_data(std::move(db));
      out.set_filename(absl::StrCat("omniroute-", stamp, ".sqlite"));
      out.set_content_type("application/vnd.sqlite3");
    } else {
      const json::object manifest{
          {"format", "omniroute-usage-backup"},
          {"version", 1},
          {"created_at", FormatUtc(Now())},
          {"store", store_->kind()},
          {"files", json::array{"omniroute.sqlite", "pricing.json", "budgets.json"}}};
      absl::StatusOr<std::string> tgz =
          MakeTarGz({{"manifest.json", json::serialize(manifest)},
                     {"omniroute.sqlite", std::move(db)},
                     {"pricing.json", json::serialize(PricingJson(pricing_->List()))},
                     {"budgets.json", json::serialize(BudgetsJson(budgets_->List()))}},
                    Now() / 1000);
      if (!tgz.ok()) {
        return tgz.status();
      }
      out.set_data(*std::move(tgz));
      out.set_filename(absl::StrCat("omniroute-", stamp, ".tar.gz"));
      out.set_content_type("application/gzip");
    }
    out.set_total_size(static_cast<int64_t>(out.data().size()));
    out.set_eof(true);
    return out;
  }

  // Runs on the writer thread.
  absl::StatusOr<v1::ImportResult> Import(const std::string& input) {
    if (store_->kind() != "sqlite") {
      return absl::UnimplementedError(
          "database import is available for the SQLite store; restore PostgreSQL with "
          "pg_restore");
    }
    if (input.empty()) {
      return absl::InvalidArgumentError("empty upload");
    }
    if (static_cast<int64_t>(input.size()) > kMaxImportBytes) {
      return absl::InvalidArgumentError("the file is larger than 100 MB");
    }
    std::string db = input;
    if (input.size() > 2 && static_cast<unsigned char>(input[0]) == 0x1f &&
        static_cast<unsigned char>(input[1]) == 0x8b) {
      absl::StatusOr<std::vector<std::pair<std::string, std::string>>> files = ReadTarGz(input);
      if (!files.ok()) {
        return files.status();
      }
      db.clear();
      for (auto& [name, content] : *files) {
        if (absl::EndsWith(name, ".sqlite") || absl::EndsWith(name, ".db")) {
          db = std::move(content);
          break;
        }
      }
      if (db.empty()) {
        return absl::InvalidArgumentError("the archive holds no .sqlite database");
      }
    }
    const std::string tmp = TempPath(".import.sqlite");
    {
      std::ofstream out(tmp, std::ios::binary);
      out.write(db.data(), static_cast<std::streamsize>(db.size()));
      if (!out) {
        return absl::InternalError(absl::StrCat("cannot write ", tmp));
      }
    }
    struct Remover {
      std::string path;
      ~Remover() {
        std::error_code ec;
        fs::remove(path, ec);
      }
    } remover{tmp};
    absl::StatusOr<int64_t> records = CheckSqliteDatabase(tmp);
    if (!records.ok()) {
      return absl::InvalidArgumentError(
          absl::StrCat("invalid database: ", records.status().message()));
    }
    v1::ImportResult result;
    if (options_.auto_backup) {
      const fs::path dir =
          fs::path(options_.data_dir.empty() ? "." : options_.data_dir) / "db_backups";
      std::error_code ec;
      fs::create_directories(dir, ec);
      std::string backup =
          (dir / absl::StrCat("pre-import-", Timestamp(Now()), ".sqlite")).string();
      for (int i = 2; fs::exists(backup, ec); ++i) {
        backup = (dir / absl::StrCat("pre-import-", Timestamp(Now()), "-", i, ".sqlite")).string();
      }
      if (absl::Status s = store_->Backup(backup); !s.ok()) {
        return absl::InternalError(absl::StrCat("backup before import failed: ", s.message()));
      }
      result.set_backup_path(backup);
    }
    if (absl::Status s = store_->Restore(tmp); !s.ok()) {
      return s;
    }
    ReloadPricing();
    ReloadBudgets();
    if (absl::StatusOr<std::vector<SpendRow>> rows =
            store_->SpendByDay(budgets_->SeedSinceMs(), budgets_->reset_offset_ms());
        rows.ok()) {
      (void)budgets_->Seed(*rows, /*overwrite=*/true);
    }
    result.set_ok(true);
    result.set_records(*records);
    result.set_message(absl::StrCat("imported ", *records, " usage records"));
    LogInfo("usage database imported",
            {{"records", std::to_string(*records)}, {"backup", result.backup_path()}});
    return result;
  }

  UsageStorePtr store_;
  const LocalUsageOptions options_;
  std::unique_ptr<Spool> spool_;
  std::unique_ptr<PricingTable> pricing_;
  std::unique_ptr<Budgets> budgets_;
  UsageMetrics metrics_;
  std::unique_ptr<WorkerPool> pool_;
  mutable int temp_counter_ = 0;

  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable drained_;
  std::deque<v1::UsageRecord> queue_;
  std::chrono::steady_clock::time_point queued_since_;  // when queue_ last became non-empty
  std::deque<Pending> pending_;
  std::deque<absl::AnyInvocable<void()>> tasks_;
  uint64_t seq_ = 0;
  size_t writing_ = 0;
  size_t dropped_ = 0;
  int flushing_ = 0;
  bool store_down_ = false;
  bool stop_ = false;
  std::thread thread_;
};

v1::Budget ToBudget(const BudgetSpec& spec) {
  v1::Budget b;
  b.set_client_key_id(spec.key_id);
  b.set_team(spec.team);
  b.set_daily_usd(spec.daily_usd);
  b.set_weekly_usd(spec.weekly_usd);
  b.set_monthly_usd(spec.monthly_usd);
  b.set_warn_at(spec.warn_at);
  b.set_source("config");
  return b;
}

}  // namespace

LocalUsageOptions LocalUsageOptionsFromConfig(const Config& config) {
  LocalUsageOptions o;
  o.settings = config.usage;
  o.spool_dir = config.usage.spool_dir.empty()
                    ? (config.data_dir.empty() ? std::string() : config.data_dir + "/spool/usage")
                    : config.usage.spool_dir;
  o.spool_max_bytes = config.usage.spool_max_bytes;
  o.data_dir = config.data_dir;
  o.pricing = config.pricing;
  o.budgets = config.budgets;
  if (absl::StatusOr<std::vector<ProviderSpec>> all = ProviderRegistry::BuiltIns(); all.ok()) {
    o.providers = *std::move(all);
  }
  for (const ProviderSpec& node : config.nodes) {
    o.providers.push_back(node);
  }
  if (const char* v = std::getenv("DISABLE_SQLITE_AUTO_BACKUP"); v != nullptr) {
    const std::string s = absl::AsciiStrToLower(v);
    o.auto_backup = !(s == "1" || s == "true" || s == "yes");
  }
  return o;
}

absl::StatusOr<UsagePtr> MakeLocalUsage(UsageStorePtr store, LocalUsageOptions options) {
  if (options.providers.empty()) {
    if (absl::StatusOr<std::vector<ProviderSpec>> all = ProviderRegistry::BuiltIns(); all.ok()) {
      options.providers = *std::move(all);
    }
  }
  auto pricing = std::make_unique<PricingTable>(options.providers);
  absl::StatusOr<std::vector<v1::PricingEntry>> defaults = DefaultPricing();
  if (!defaults.ok()) {
    return defaults.status();
  }
  pricing->SetDefaults(*std::move(defaults));
  std::vector<v1::PricingEntry> config_entries;
  for (const PricingSpec& spec : options.pricing) {
    config_entries.push_back(ToEntry(spec, "config"));
  }
  pricing->SetConfig(std::move(config_entries));
  absl::StatusOr<std::vector<v1::PricingEntry>> runtime = store->LoadPricing();
  if (!runtime.ok()) {
    return runtime.status();
  }
  pricing->SetRuntime(*std::move(runtime));

  std::unique_ptr<BudgetLedger> ledger;
  if (!options.redis_url.empty()) {
    absl::StatusOr<std::unique_ptr<BudgetLedger>> redis = MakeRedisLedger(options.redis_url);
    if (!redis.ok()) {
      return redis.status();
    }
    ledger = *std::move(redis);
  } else {
    ledger = MakeMemoryLedger();
  }
  BudgetOptions bo;
  bo.reset_offset_ms = options.settings.budget_reset_offset_ms;
  bo.warn_at = options.settings.budget_warn_at;
  bo.reservation_ttl_ms = options.settings.reservation_ttl_ms;
  bo.settle_ttl_ms = options.settings.settle_ttl_ms;
  bo.fail_open = options.settings.budget_fail_open;
  std::function<int64_t()> clock = options.clock ? options.clock : SystemNowMs;
  auto budgets = std::make_unique<Budgets>(std::move(ledger), bo, clock);
  std::vector<v1::Budget> config_budgets;
  for (const BudgetSpec& spec : options.budgets) {
    config_budgets.push_back(ToBudget(spec));
  }
  budgets->SetConfigBudgets(config_budgets);
  absl::StatusOr<std::vector<v1::Budget>> stored = store->LoadBudgets();
  if (!stored.ok()) {
    return stored.status();
  }
  budgets->SetRuntimeBudgets(*stored);

  std::unique_ptr<Spool> spool;
  if (!options.spool_dir.empty()) {
    Spool::Options so;
    so.max_bytes = options.spool_max_bytes;
    absl::StatusOr<std::unique_ptr<Spool>> opened = Spool::Open(options.spool_dir, so);
    if (!opened.ok()) {
      return opened.status();
    }
    spool = *std::move(opened);
  }
  auto usage = std::make_shared<LocalUsage>(std::move(store), std::move(options), std::move(spool),
                                            std::move(pricing), std::move(budgets));
  if (absl::Status s = usage->Init(); !s.ok()) {
    LogWarn("usage start-up state incomplete", {{"error", SV(s.message())}});
  }
  usage->Start();
  return usage;
}

absl::Status ReloadUsageConfig(Usage& usage, const Config& config) {
  auto* local = dynamic_cast<LocalUsage*>(&usage);
  if (local == nullptr) return absl::FailedPreconditionError("not a local usage service");
  std::vector<v1::PricingEntry> pricing;
  for (const PricingSpec& spec : config.pricing) {
    pricing.push_back(ToEntry(spec, "config"));
  }
  std::vector<v1::Budget> budgets;
  for (const BudgetSpec& spec : config.budgets) {
    budgets.push_back(ToBudget(spec));
  }
  local->ReloadConfig(std::move(pricing), budgets);
  return absl::OkStatus();
}

UsagePtr MakeLocalUsage(UsageStorePtr store) {
  absl::StatusOr<UsagePtr> usage = MakeLocalUsage(std::move(store), LocalUsageOptions());
  if (!usage.ok()) {
    LogError("usage start failed", {{"error", SV(usage.status().message())}});
    return nullptr;
  }
  return *std::move(usage);
}

}  // namespace omniroute::usage
