#include "grpc_usage.h"

#include <algorithm>
#include <condition_variable>
#include <deque>
#include <iterator>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/grpc_adapter.h"
#include "common/log.h"
#include "omniroute/usage/v1/usage.grpc.pb.h"

namespace omniroute::usage {
namespace grpc_usage_impl {
namespace {

using grpc_adapter::CallUnary;
using grpc_adapter::ServeNow;
using grpc_adapter::ServeUnary;
using namespace std::chrono_literals;

constexpr auto kCheckBudgetTimeout = 5s;
constexpr auto kQueryTimeout = 15s;

class UsageGrpcService final : public v1::Usage::CallbackService {
 public:
  explicit UsageGrpcService(UsagePtr impl) : impl_(std::move(impl)) {}

  grpc::ServerUnaryReactor* Record(grpc::CallbackServerContext* context,
                                   const v1::RecordBatch* request, v1::Ack* response) override {
    return ServeNow(context, [&] {
      for (const v1::UsageRecord& record : request->records()) {
        impl_->Record(record);
      }
      response->set_accepted(request->records_size());
    });
  }

  grpc::ServerUnaryReactor* CheckBudget(grpc::CallbackServerContext* context,
                                        const v1::CheckBudgetRequest* request,
                                        v1::BudgetDecision* response) override {
    return ServeUnary<v1::BudgetDecision>(
        context, response,
        [&](Callback<v1::BudgetDecision> done) { impl_->CheckBudget(*request, std::move(done)); });
  }

  grpc::ServerUnaryReactor* Query(grpc::CallbackServerContext* context,
                                  const v1::QueryRequest* request,
                                  v1::QueryResponse* response) override {
    return ServeUnary<v1::QueryResponse>(context, response, [&](Callback<v1::QueryResponse> done) {
      impl_->Query(*request, std::move(done));
    });
  }

 private:
  UsagePtr impl_;
};

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
    sender_ = std::thread([this] { Run(); });
  }

  ~UsageGrpcClient() override {
    Flush(options_.flush_on_destroy);
    calls_->Drain(grpc_adapter::kClientDrainGrace);
    size_t lost = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
      if (call_context_ != nullptr) {
        call_context_->TryCancel();
      }
    }
    wake_.notify_all();
    sender_.join();
    lost = queue_.size();
    if (lost > 0) {
      const std::string count = std::to_string(lost);
      LogWarn("usage records not delivered", {{"count", count}});
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
      const std::string count = std::to_string(dropped);
      LogWarn("usage queue full; dropped the oldest records", {{"dropped_total", count}});
    }
  }

  void CheckBudget(const v1::CheckBudgetRequest& request,
                   Callback<v1::BudgetDecision> done) override {
    CallUnary<v1::BudgetDecision>(
        calls_, [this](auto... a) { stub_->async()->CheckBudget(a...); }, request, std::move(done),
        kCheckBudgetTimeout);
  }

  void Query(const v1::QueryRequest& request, Callback<v1::QueryResponse> done) override {
    CallUnary<v1::QueryResponse>(
        calls_, [this](auto... a) { stub_->async()->Query(a...); }, request, std::move(done),
        kQueryTimeout);
  }

  size_t Flush(std::chrono::milliseconds timeout) override {
    std::unique_lock<std::mutex> lock(mu_);
    ++flushing_;
    wake_.notify_all();
    idle_.wait_for(lock, timeout, [&] { return queue_.empty() && in_flight_ == 0; });
    --flushing_;
    return queue_.size() + in_flight_;
  }

 private:
  // The sender thread: takes batches off the front of the queue and sends them in order.
  void Run() {
    std::vector<v1::UsageRecord> batch;
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      wake_.wait(lock, [&] { return stop_ || !queue_.empty(); });
      if (stop_) {
        break;
      }
      if (queue_.size() < options_.batch_size && flushing_ == 0) {
        wake_.wait_for(lock, options_.batch_delay, [&] {
          return stop_ || flushing_ > 0 || queue_.size() >= options_.batch_size;
        });
        if (stop_) {
          break;
        }
      }
      const size_t n = std::min(options_.batch_size, queue_.size());
      batch.assign(std::make_move_iterator(queue_.begin()),
                   std::make_move_iterator(queue_.begin() + static_cast<ptrdiff_t>(n)));
      queue_.erase(queue_.begin(), queue_.begin() + static_cast<ptrdiff_t>(n));
      in_flight_ = n;
      lock.unlock();
      const SendResult result = Send(batch);
      lock.lock();
      in_flight_ = 0;
      if (result == SendResult::kStopped) {
        // Back to the front so that the count of undelivered records includes them.
        queue_.insert(queue_.begin(), std::make_move_iterator(batch.begin()),
                      std::make_move_iterator(batch.end()));
        break;
      }
      batch.clear();
      idle_.notify_all();
    }
  }

  enum class SendResult { kAcknowledged, kRejected, kStopped };

  // Sends one batch, retrying with backoff until it is acknowledged, it fails for good, or
  // the client stops.
  SendResult Send(const std::vector<v1::UsageRecord>& records) {
    v1::RecordBatch batch;
    batch.mutable_records()->Reserve(static_cast<int>(records.size()));
    for (const v1::UsageRecord& r : records) {
      *batch.add_records() = r;
    }
    std::chrono::milliseconds backoff = options_.retry_min;
    while (true) {
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
        const std::string count = std::to_string(records.size());
        LogError("usage batch rejected; dropped",
                 {{"count", count}, {"error", status.error_message()}});
        return SendResult::kRejected;
      }
      if (!unreachable_) {
        unreachable_ = true;
        LogWarn("usage service unreachable; retrying", {{"error", status.error_message()}});
      }
      std::unique_lock<std::mutex> lock(mu_);
      if (wake_.wait_for(lock, backoff, [&] { return stop_; })) {
        return SendResult::kStopped;
      }
      backoff = std::min(backoff * 2, options_.retry_max);
    }
  }

  std::unique_ptr<v1::Usage::Stub> stub_;
  UsageClientOptions options_;
  std::shared_ptr<grpc_adapter::InFlightCalls> calls_ =  // CheckBudget and Query
      std::make_shared<grpc_adapter::InFlightCalls>();

  std::mutex mu_;
  std::condition_variable wake_;  // the sender: records queued, flush requested, stop
  std::condition_variable idle_;  // flushers: a batch was acknowledged
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
