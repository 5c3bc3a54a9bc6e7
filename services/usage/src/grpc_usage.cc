#include "grpc_usage.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <iterator>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "common/grpc_adapter.h"
#include "common/log.h"
#include "omniroute/usage/v1/usage.grpc.pb.h"
#include "spool.h"

namespace omniroute::usage {
namespace grpc_usage_impl {
namespace {

using grpc_adapter::CallUnary;
using grpc_adapter::ServeNow;
using grpc_adapter::ServeUnary;
using namespace std::chrono_literals;

constexpr auto kBudgetTimeout = 5s;
constexpr auto kQueryTimeout = 15s;
constexpr auto kAdminTimeout = 120s;
constexpr size_t kChunkBytes = 1 << 20;  // below gRPC's default 4 MB message limit
constexpr auto kTransferTtl = 10min;

std::string RandomId() {
  thread_local std::mt19937_64 rng(std::random_device{}());
  return absl::StrFormat("%016x%016x", rng(), rng());
}

// ---------------------------------------------------------------------------------------
// Server

class UsageGrpcService final : public v1::Usage::CallbackService {
 public:
  explicit UsageGrpcService(UsagePtr impl) : impl_(std::move(impl)) {}

  grpc::ServerUnaryReactor* Record(grpc::CallbackServerContext* context,
                                   const v1::RecordBatch* request, v1::Ack* response) override {
    return ServeUnary<v1::Ack>(context, response, [&](Callback<v1::Ack> done) {
      impl_->RecordBatch(*request, std::move(done));
    });
  }

  grpc::ServerUnaryReactor* Reserve(grpc::CallbackServerContext* context,
                                    const v1::ReserveRequest* request,
                                    v1::Reservation* response) override {
    return ServeUnary<v1::Reservation>(context, response, [&](Callback<v1::Reservation> done) {
      impl_->Reserve(*request, std::move(done));
    });
  }

  grpc::ServerUnaryReactor* Settle(grpc::CallbackServerContext* context,
                                   const v1::SettleRequest* request,
                                   v1::SettleResponse* response) override {
    return ServeUnary<v1::SettleResponse>(
        context, response,
        [&](Callback<v1::SettleResponse> done) { impl_->Settle(*request, std::move(done)); });
  }

  grpc::ServerUnaryReactor* Query(grpc::CallbackServerContext* context,
                                  const v1::QueryRequest* request,
                                  v1::QueryResponse* response) override {
    return ServeUnary<v1::QueryResponse>(context, response, [&](Callback<v1::QueryResponse> done) {
      impl_->Query(*request, std::move(done));
    });
  }

  grpc::ServerUnaryReactor* Stats(grpc::CallbackServerContext* context,
                                  const v1::StatsRequest* request,
                                  v1::StatsResponse* response) override {
    return ServeUnary<v1::StatsResponse>(context, response, [&](Callback<v1::StatsResponse> done) {
      impl_->Stats(*request, std::move(done));
    });
  }

  grpc::ServerUnaryReactor* ListPricing(grpc::CallbackServerContext* context,
                                        const v1::ListPricingRequest*,
                                        v1::PricingList* response) override {
    return ServeUnary<v1::PricingList>(context, response, [&](Callback<v1::PricingList> done) {
      impl_->ListPricing(std::move(done));
    });
  }

  grpc::ServerUnaryReactor* UpsertPricing(grpc::CallbackServerContext* context,
                                          const v1::PricingEntry* request,
                                          v1::PricingEntry* response) override {
    return ServeUnary<v1::PricingEntry>(context, response, [&](Callback<v1::PricingEntry> done) {
      impl_->UpsertPricing(*request, std::move(done));
    });
  }

  grpc::ServerUnaryReactor* DeletePricing(grpc::CallbackServerContext* context,
                                          const v1::DeletePricingRequest* request,
                                          v1::Ack* response) override {
    return ServeUnary<v1::Ack>(context, response, [&](Callback<v1::Ack> done) {
      impl_->DeletePricing(*request, std::move(done));
    });
  }

  grpc::ServerUnaryReactor* ListBudgets(grpc::CallbackServerContext* context,
                                        const v1::ListBudgetsRequest* request,
                                        v1::BudgetList* response) override {
    return ServeUnary<v1::BudgetList>(context, response, [&](Callback<v1::BudgetList> done) {
      impl_->ListBudgets(*request, std::move(done));
    });
  }

  grpc::ServerUnaryReactor* SetBudget(grpc::CallbackServerContext* context,
                                      const v1::Budget* request,
                                      v1::BudgetStatus* response) override {
    return ServeUnary<v1::BudgetStatus>(context, response, [&](Callback<v1::BudgetStatus> done) {
      impl_->SetBudget(*request, std::move(done));
    });
  }

  grpc::ServerUnaryReactor* DeleteBudget(grpc::CallbackServerContext* context,
                                         const v1::DeleteBudgetRequest* request,
                                         v1::Ack* response) override {
    return ServeUnary<v1::Ack>(context, response, [&](Callback<v1::Ack> done) {
      impl_->DeleteBudget(*request, std::move(done));
    });
  }

  grpc::ServerUnaryReactor* Metrics(grpc::CallbackServerContext* context, const v1::MetricsRequest*,
                                    v1::MetricsResponse* response) override {
    return ServeUnary<v1::MetricsResponse>(
        context, response,
        [&](Callback<v1::MetricsResponse> done) { impl_->Metrics(std::move(done)); });
  }

  grpc::ServerUnaryReactor* ExportDatabase(grpc::CallbackServerContext* context,
                                           const v1::ExportRequest* request,
                                           v1::DataChunk* response) override {
    if (!request->export_id().empty()) {
      return ServeNow(context,
                      [&] { *response = NextChunk(request->export_id(), request->offset()); });
    }
    return ServeUnary<v1::DataChunk>(context, response, [&](Callback<v1::DataChunk> done) {
      impl_->ExportDatabase(request->kind(), [this, done = std::move(done)](
                                                 absl::StatusOr<v1::DataChunk> whole) mutable {
        if (!whole.ok()) {
          done(whole.status());
          return;
        }
        const std::string id = RandomId();
        {
          std::lock_guard<std::mutex> lock(mu_);
          Expire();
          exports_[id] = {*std::move(whole), std::chrono::steady_clock::now()};
        }
        done(NextChunk(id, 0));
      });
    });
  }

  grpc::ServerUnaryReactor* ImportDatabase(grpc::CallbackServerContext* context,
                                           const v1::DataChunk* request,
                                           v1::ImportResult* response) override {
    std::string data;
    {
      std::lock_guard<std::mutex> lock(mu_);
      Expire();
      Transfer& t = imports_[request->id()];
      t.at = std::chrono::steady_clock::now();
      if (request->offset() != static_cast<int64_t>(t.chunk.data().size())) {
        imports_.erase(request->id());
        return ServeUnary<v1::ImportResult>(context, response, [](Callback<v1::ImportResult> d) {
          d(absl::InvalidArgumentError("import chunk out of order"));
        });
      }
      t.chunk.mutable_data()->append(request->data());
      if (t.chunk.data().size() > (size_t{100} << 20) + kChunkBytes) {
        imports_.erase(request->id());
        return ServeUnary<v1::ImportResult>(context, response, [](Callback<v1::ImportResult> d) {
          d(absl::InvalidArgumentError("the file is larger than 100 MB"));
        });
      }
      if (request->eof()) {
        data = std::move(*t.chunk.mutable_data());
        imports_.erase(request->id());
      }
    }
    if (!request->eof()) {
      return ServeNow(context, [&] { response->set_ok(true); });
    }
    return ServeUnary<v1::ImportResult>(context, response, [&](Callback<v1::ImportResult> done) {
      impl_->ImportDatabase(std::move(data), std::move(done));
    });
  }

 private:
  struct Transfer {
    v1::DataChunk chunk;
    std::chrono::steady_clock::time_point at;
  };

  v1::DataChunk NextChunk(const std::string& id, int64_t offset) {
    std::lock_guard<std::mutex> lock(mu_);
    v1::DataChunk out;
    auto it = exports_.find(id);
    if (it == exports_.end()) {
      out.set_id(id);
      out.set_eof(true);
      out.set_total_size(-1);  // unknown or expired export
      return out;
    }
    const std::string& data = it->second.chunk.data();
    const size_t from = std::min(static_cast<size_t>(std::max<int64_t>(0, offset)), data.size());
    const size_t n = std::min(kChunkBytes, data.size() - from);
    out.set_id(id);
    out.set_offset(static_cast<int64_t>(from));
    out.set_data(data.substr(from, n));
    out.set_total_size(static_cast<int64_t>(data.size()));
    out.set_filename(it->second.chunk.filename());
    out.set_content_type(it->second.chunk.content_type());
    out.set_eof(from + n >= data.size());
    if (out.eof()) {
      exports_.erase(it);
    }
    return out;
  }

  void Expire() {
    const auto now = std::chrono::steady_clock::now();
    for (auto* m : {&exports_, &imports_}) {
      for (auto it = m->begin(); it != m->end();) {
        it = now - it->second.at > kTransferTtl ? m->erase(it) : std::next(it);
      }
    }
  }

  UsagePtr impl_;
  std::mutex mu_;
  std::map<std::string, Transfer> exports_;
  std::map<std::string, Transfer> imports_;
};

// ---------------------------------------------------------------------------------------
// Client

// Errors that retrying the same batch cannot fix.
bool IsPermanent(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::UNIMPLEMENTED:
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::UNAUTHENTICATED:
      return true;
    default:
      return false;
  }
}

class UsageGrpcClient final : public Usage {
 public:
  UsageGrpcClient(std::shared_ptr<grpc::Channel> channel, const UsageClientOptions& options)
      : stub_(v1::Usage::NewStub(std::move(channel))), options_(options) {
    options_.batch_size = std::max<size_t>(options_.batch_size, 1);
    options_.max_queued = std::max<size_t>(options_.max_queued, 1);
    if (!options_.spool_dir.empty()) {
      Spool::Options so;
      so.max_bytes = options_.spool_max_bytes;
      so.segment_bytes =
          std::min<int64_t>(so.segment_bytes, std::max<int64_t>(so.max_bytes / 4, 4096));
      absl::StatusOr<std::unique_ptr<Spool>> spool = Spool::Open(options_.spool_dir, so);
      if (spool.ok()) {
        spool_ = *std::move(spool);
      } else {
        LogError("usage client spool unavailable; records wait in memory only",
                 {{"error", std::string_view(spool.status().message().data(),
                                             spool.status().message().size())}});
      }
    }
    sender_ = std::thread([this] { Run(); });
  }

  ~UsageGrpcClient() override {
    Flush(options_.flush_on_destroy);
    calls_->Drain(grpc_adapter::kClientDrainGrace);
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      if (call_context_ != nullptr) {
        call_context_->TryCancel();
      }
    }
    wake_.notify_all();
    sender_.join();
    SpillQueue();
    const size_t lost = queue_.size();
    if (lost > 0) {
      LogWarn("usage records not delivered", {{"count", std::to_string(lost)}});
    }
    if (spool_ != nullptr && spool_->depth() > 0) {
      LogWarn("usage records kept in the spool for the next start",
              {{"count", std::to_string(spool_->depth())}, {"dir", spool_->dir()}});
    }
  }

  // Interface
  void Record(v1::UsageRecord record) override {
    bool wake = false;
    uint64_t dropped = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (queue_.size() >= options_.max_queued) {
        queue_.pop_front();
        dropped = ++dropped_;
      }
      queue_.push_back(std::move(record));
      wake = queue_.size() == 1 || queue_.size() == options_.batch_size;
    }
    if (wake) {
      wake_.notify_one();
    }
    // Logs the 1st, 2nd, 4th, 8th... drop.
    if (dropped != 0 && (dropped & (dropped - 1)) == 0) {
      LogWarn("usage queue full; dropped the oldest records",
              {{"dropped_total", std::to_string(dropped)}});
    }
  }

  void Reserve(const v1::ReserveRequest& request, Callback<v1::Reservation> done) override {
    CallUnary<v1::Reservation>(
        calls_, [this](auto... a) { stub_->async()->Reserve(a...); }, request, std::move(done),
        kBudgetTimeout, request.request_id());
  }

  void Settle(const v1::SettleRequest& request, Callback<v1::SettleResponse> done) override {
    CallUnary<v1::SettleResponse>(
        calls_, [this](auto... a) { stub_->async()->Settle(a...); }, request, std::move(done),
        kBudgetTimeout, request.request_id());
  }

  void Query(const v1::QueryRequest& request, Callback<v1::QueryResponse> done) override {
    CallUnary<v1::QueryResponse>(
        calls_, [this](auto... a) { stub_->async()->Query(a...); }, request, std::move(done),
        kQueryTimeout);
  }

  void Stats(const v1::StatsRequest& request, Callback<v1::StatsResponse> done) override {
    CallUnary<v1::StatsResponse>(
        calls_, [this](auto... a) { stub_->async()->Stats(a...); }, request, std::move(done),
        kQueryTimeout);
  }

  void ListPricing(Callback<v1::PricingList> done) override {
    CallUnary<v1::PricingList>(
        calls_, [this](auto... a) { stub_->async()->ListPricing(a...); }, v1::ListPricingRequest(),
        std::move(done), kQueryTimeout);
  }

  void UpsertPricing(const v1::PricingEntry& entry, Callback<v1::PricingEntry> done) override {
    CallUnary<v1::PricingEntry>(
        calls_, [this](auto... a) { stub_->async()->UpsertPricing(a...); }, entry, std::move(done),
        kQueryTimeout);
  }

  void DeletePricing(const v1::DeletePricingRequest& request, Callback<v1::Ack> done) override {
    CallUnary<v1::Ack>(
        calls_, [this](auto... a) { stub_->async()->DeletePricing(a...); }, request,
        std::move(done), kQueryTimeout);
  }

  void ListBudgets(const v1::ListBudgetsRequest& request, Callback<v1::BudgetList> done) override {
    CallUnary<v1::BudgetList>(
        calls_, [this](auto... a) { stub_->async()->ListBudgets(a...); }, request, std::move(done),
        kQueryTimeout);
  }

  void SetBudget(const v1::Budget& budget, Callback<v1::BudgetStatus> done) override {
    CallUnary<v1::BudgetStatus>(
        calls_, [this](auto... a) { stub_->async()->SetBudget(a...); }, budget, std::move(done),
        kQueryTimeout);
  }

  void DeleteBudget(const v1::DeleteBudgetRequest& request, Callback<v1::Ack> done) override {
    CallUnary<v1::Ack>(
        calls_, [this](auto... a) { stub_->async()->DeleteBudget(a...); }, request, std::move(done),
        kQueryTimeout);
  }

  // The service's metrics followed by this client's own (queue and spool); only the
  // client's when the service does not answer.
  void Metrics(Callback<v1::MetricsResponse> done) override {
    CallUnary<v1::MetricsResponse>(
        calls_, [this](auto... a) { stub_->async()->Metrics(a...); }, v1::MetricsRequest(),
        [this, done = std::move(done)](absl::StatusOr<v1::MetricsResponse> r) mutable {
          v1::MetricsResponse out = r.ok() ? *std::move(r) : v1::MetricsResponse();
          out.mutable_text()->append(ClientMetricsText(r.ok()));
          done(std::move(out));
        },
        kBudgetTimeout);
  }

  void ExportDatabase(const std::string& kind, Callback<v1::DataChunk> done) override {
    auto state = std::make_shared<ExportState>();
    state->done = std::move(done);
    v1::ExportRequest first;
    first.set_kind(kind);
    NextExport(state, first);
  }

  void ImportDatabase(std::string data, Callback<v1::ImportResult> done) override {
    auto state = std::make_shared<ImportState>();
    state->data = std::move(data);
    state->id = RandomId();
    state->done = std::move(done);
    NextImport(state);
  }

  size_t Flush(std::chrono::milliseconds timeout) override {
    {
      std::unique_lock<std::mutex> lock(mu_);
      ++flushing_;
      wake_.notify_all();
      idle_.wait_for(lock, timeout, [&] {
        return queue_.empty() && in_flight_ == 0 && (spool_ == nullptr || spool_->depth() == 0);
      });
      --flushing_;
    }
    // What could not be delivered in time is kept on disk.
    SpillQueue();
    std::lock_guard<std::mutex> lock(mu_);
    return queue_.size() + in_flight_ + (spool_ != nullptr ? spool_->depth() : 0);
  }

 private:
  struct ExportState {
    v1::DataChunk whole;
    Callback<v1::DataChunk> done;
  };
  struct ImportState {
    std::string data;
    std::string id;
    size_t offset = 0;
    Callback<v1::ImportResult> done;
  };

  void NextExport(std::shared_ptr<ExportState> state, const v1::ExportRequest& request) {
    CallUnary<v1::DataChunk>(
        calls_, [this](auto... a) { stub_->async()->ExportDatabase(a...); }, request,
        [this, state](absl::StatusOr<v1::DataChunk> chunk) mutable {
          if (!chunk.ok()) {
            state->done(chunk.status());
            return;
          }
          if (chunk->total_size() < 0) {
            state->done(absl::UnavailableError("the export expired on the usage service"));
            return;
          }
          state->whole.mutable_data()->append(chunk->data());
          state->whole.set_filename(chunk->filename());
          state->whole.set_content_type(chunk->content_type());
          state->whole.set_total_size(chunk->total_size());
          if (chunk->eof()) {
            state->whole.set_eof(true);
            state->done(std::move(state->whole));
            return;
          }
          v1::ExportRequest next;
          next.set_export_id(chunk->id());
          next.set_offset(static_cast<int64_t>(state->whole.data().size()));
          NextExport(state, next);
        },
        kAdminTimeout);
  }

  void NextImport(std::shared_ptr<ImportState> state) {
    v1::DataChunk chunk;
    chunk.set_id(state->id);
    chunk.set_offset(static_cast<int64_t>(state->offset));
    const size_t n = std::min(kChunkBytes, state->data.size() - state->offset);
    chunk.set_data(state->data.substr(state->offset, n));
    state->offset += n;
    chunk.set_eof(state->offset >= state->data.size());
    const bool last = chunk.eof();
    CallUnary<v1::ImportResult>(
        calls_, [this](auto... a) { stub_->async()->ImportDatabase(a...); }, std::move(chunk),
        [this, state, last](absl::StatusOr<v1::ImportResult> r) mutable {
          if (!r.ok() || last) {
            state->done(std::move(r));
            return;
          }
          NextImport(state);
        },
        kAdminTimeout);
  }

  std::string ClientMetricsText(bool service_up) {
    size_t queued = 0;
    uint64_t dropped = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      queued = queue_.size() + in_flight_;
      dropped = dropped_;
    }
    std::string out;
    absl::StrAppend(&out,
                    "# HELP omniroute_usage_client_queue_depth Usage records queued in memory "
                    "for the usage service\n# TYPE omniroute_usage_client_queue_depth gauge\n"
                    "omniroute_usage_client_queue_depth ",
                    queued, "\n");
    absl::StrAppend(&out,
                    "# HELP omniroute_usage_client_spool_depth Usage records spooled on disk "
                    "while the usage service was unreachable\n"
                    "# TYPE omniroute_usage_client_spool_depth gauge\n"
                    "omniroute_usage_client_spool_depth ",
                    spool_ != nullptr ? spool_->depth() : 0, "\n");
    absl::StrAppend(&out,
                    "# HELP omniroute_usage_client_dropped_total Usage records dropped (memory "
                    "queue or spool full)\n# TYPE omniroute_usage_client_dropped_total counter\n"
                    "omniroute_usage_client_dropped_total ",
                    dropped + (spool_ != nullptr ? spool_->dropped() : 0), "\n");
    absl::StrAppend(&out,
                    "# HELP omniroute_usage_service_up Whether the usage service answered the "
                    "last metrics call\n# TYPE omniroute_usage_service_up gauge\n"
                    "omniroute_usage_service_up ",
                    service_up ? 1 : 0, "\n");
    return out;
  }

  // Moves the memory queue to the spool tail (durable), keeping the order.
  void SpillQueue() {
    if (spool_ == nullptr) {
      return;
    }
    std::lock_guard<std::mutex> order(spill_mu_);
    std::vector<std::string> bytes;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (queue_.empty()) {
        return;
      }
      bytes.reserve(queue_.size());
      for (const v1::UsageRecord& r : queue_) {
        bytes.push_back(r.SerializeAsString());
      }
      queue_.clear();
    }
    if (absl::StatusOr<uint64_t> s = spool_->Append(bytes); !s.ok()) {
      LogError(
          "usage client spool append failed; records lost",
          {{"count", std::to_string(bytes.size())},
           {"error", std::string_view(s.status().message().data(), s.status().message().size())}});
    }
  }

  // Appends a batch taken from the queue to the spool tail.
  bool SpillBatch(const std::vector<v1::UsageRecord>& batch) {
    std::lock_guard<std::mutex> order(spill_mu_);
    std::vector<std::string> bytes;
    bytes.reserve(batch.size());
    for (const v1::UsageRecord& r : batch) {
      bytes.push_back(r.SerializeAsString());
    }
    return spool_->Append(bytes).ok();
  }

  // The sender thread: the spool first (older records), then the queue, in order.
  void Run() {
    std::vector<v1::UsageRecord> batch;
    std::chrono::milliseconds backoff = options_.retry_min;
    auto next_retry = std::chrono::steady_clock::now();
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      const bool backlog = spool_ != nullptr && spool_->depth() > 0;
      if (backlog) {
        wake_.wait_until(lock, next_retry, [&] { return stop_; });
      } else {
        wake_.wait(lock, [&] {
          return stop_ || !queue_.empty() || (spool_ != nullptr && spool_->depth() > 0);
        });
      }
      if (stop_) {
        break;
      }
      if (spool_ != nullptr && spool_->depth() > 0) {
        // Newer records go behind the spooled ones.
        lock.unlock();
        SpillQueue();
        absl::StatusOr<Spool::Batch> b = spool_->Peek(options_.batch_size);
        SendResult result = SendResult::kFailed;
        if (b.ok() && !b->records.empty()) {
          batch.clear();
          for (const std::string& bytes : b->records) {
            v1::UsageRecord r;
            if (r.ParseFromString(bytes)) {
              batch.push_back(std::move(r));
            }
          }
          result = SendOnce(batch);
          if (result == SendResult::kAcknowledged || result == SendResult::kRejected) {
            (void)spool_->Commit(*b);
          }
        }
        lock.lock();
        if (result == SendResult::kFailed) {
          next_retry = std::chrono::steady_clock::now() + backoff;
          backoff = std::min(backoff * 2, options_.retry_max);
        } else {
          backoff = options_.retry_min;
          next_retry = std::chrono::steady_clock::now();
        }
        idle_.notify_all();
        continue;
      }
      if (queue_.size() < options_.batch_size && flushing_ == 0) {
        wake_.wait_for(lock, options_.batch_delay, [&] {
          return stop_ || flushing_ > 0 || queue_.size() >= options_.batch_size;
        });
        if (stop_) {
          break;
        }
      }
      if (queue_.empty()) {
        continue;
      }
      const size_t n = std::min(options_.batch_size, queue_.size());
      batch.assign(std::make_move_iterator(queue_.begin()),
                   std::make_move_iterator(queue_.begin() + static_cast<ptrdiff_t>(n)));
      queue_.erase(queue_.begin(), queue_.begin() + static_cast<ptrdiff_t>(n));
      in_flight_ = n;
      lock.unlock();
      SendResult result = SendOnce(batch);
      if (result == SendResult::kFailed && spool_ != nullptr) {
        // Durable at once; replayed from the spool when the service answers again.
        if (SpillBatch(batch)) {
          result = SendResult::kSpooled;
        }
      }
      lock.lock();
      in_flight_ = 0;
      if (result == SendResult::kFailed || result == SendResult::kStopped) {
        // Back to the front, in order; retried after a pause.
        queue_.insert(queue_.begin(), std::make_move_iterator(batch.begin()),
                      std::make_move_iterator(batch.end()));
        if (result == SendResult::kStopped || stop_) {
          break;
        }
        idle_.notify_all();
        wake_.wait_for(lock, backoff, [&] { return stop_; });
        backoff = std::min(backoff * 2, options_.retry_max);
        continue;
      }
      if (result == SendResult::kSpooled) {
        next_retry = std::chrono::steady_clock::now() + backoff;
        backoff = std::min(backoff * 2, options_.retry_max);
      } else {
        backoff = options_.retry_min;
      }
      batch.clear();
      idle_.notify_all();
    }
    idle_.notify_all();
  }

  enum class SendResult { kAcknowledged, kRejected, kFailed, kSpooled, kStopped };

  // One attempt to deliver a batch.
  SendResult SendOnce(const std::vector<v1::UsageRecord>& records) {
    v1::RecordBatch batch;
    batch.mutable_records()->Reserve(static_cast<int>(records.size()));
    for (const v1::UsageRecord& r : records) {
      *batch.add_records() = r;
    }
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + options_.call_timeout);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stop_) {
        return SendResult::kStopped;
      }
      call_context_ = &context;
    }
    v1::Ack ack;
    const grpc::Status status = stub_->Record(&context, batch, &ack);
    {
      std::lock_guard<std::mutex> lock(mu_);
      call_context_ = nullptr;
    }
    if (status.ok()) {
      if (unreachable_) {
        unreachable_ = false;
        LogInfo("usage service reachable again");
      }
      return SendResult::kAcknowledged;
    }
    if (IsPermanent(status.error_code())) {
      LogError("usage batch rejected; dropped",
               {{"count", std::to_string(records.size())}, {"error", status.error_message()}});
      return SendResult::kRejected;
    }
    if (!unreachable_) {
      unreachable_ = true;
      LogWarn(spool_ != nullptr ? "usage service unreachable; spooling records"
                                : "usage service unreachable; retrying",
              {{"error", status.error_message()}});
    }
    return SendResult::kFailed;
  }

  std::unique_ptr<v1::Usage::Stub> stub_;
  UsageClientOptions options_;
  std::unique_ptr<Spool> spool_;
  std::shared_ptr<grpc_adapter::InFlightCalls> calls_ =  // everything but Record
      std::make_shared<grpc_adapter::InFlightCalls>();

  std::mutex spill_mu_;  // orders appends to the spool; taken before mu_
  std::mutex mu_;
  std::condition_variable wake_;  // the sender: records queued, flush requested, stop
  std::condition_variable idle_;  // flushers: a batch was delivered or spooled
  std::deque<v1::UsageRecord> queue_;
  size_t in_flight_ = 0;  // records of the batch being sent
  uint64_t dropped_ = 0;
  int flushing_ = 0;
  bool stop_ = false;
  grpc::ClientContext* call_context_ = nullptr;
  bool unreachable_ = false;  // sender thread only
  std::thread sender_;
};

}  // namespace
}  // namespace grpc_usage_impl

std::unique_ptr<grpc::Service> MakeUsageGrpcService(UsagePtr impl) {
  return std::make_unique<grpc_usage_impl::UsageGrpcService>(std::move(impl));
}

UsagePtr MakeUsageGrpcClient(std::shared_ptr<grpc::Channel> channel,
                             const UsageClientOptions& options) {
  return std::make_shared<grpc_usage_impl::UsageGrpcClient>(std::move(channel), options);
}

}  // namespace omniroute::usage
