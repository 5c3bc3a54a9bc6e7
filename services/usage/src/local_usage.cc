#include "local_usage.h"

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>

#include "absl/strings/str_cat.h"
#include "common/log.h"
#include "common/strings.h"

namespace omniroute::usage {
namespace {

constexpr size_t kBatch = 500;
constexpr size_t kMaxQueued = 1'000'000;

class LocalUsage final : public Usage {
 public:
  explicit LocalUsage(UsageStorePtr store) : store_(std::move(store)) {
    thread_ = std::thread([this] { Run(); });
  }

  ~LocalUsage() override {
    Flush(std::chrono::seconds(5));
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }

  // Interface
  void Record(v1::UsageRecord record) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (queue_.size() >= kMaxQueued) {
        queue_.pop_front();
        ++dropped_;
      }
      queue_.push_back(std::move(record));
    }
    cv_.notify_one();
  }

  void CheckBudget(const v1::CheckBudgetRequest& request,
                   Callback<v1::BudgetDecision> done) override {
    v1::BudgetDecision decision;
    decision.set_allowed(true);  // no budget configured
    done(std::move(decision));
  }

  void Query(const v1::QueryRequest& request, Callback<v1::QueryResponse> done) override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      tasks_.push_back([this, request, done = std::move(done)]() mutable {
        done(store_->Query(request));
      });
    }
    cv_.notify_one();
  }

  size_t Flush(std::chrono::milliseconds timeout) override {
    std::unique_lock<std::mutex> lock(mu_);
    cv_.notify_one();
    drained_.wait_for(lock, timeout, [this] { return queue_.empty() && writing_ == 0; });
    return queue_.size() + writing_;
  }

 private:
  void Run() {
    std::vector<v1::UsageRecord> batch;
    std::chrono::milliseconds backoff(100);
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      cv_.wait(lock, [this] { return stop_ || !queue_.empty() || !tasks_.empty(); });
      while (!tasks_.empty()) {
        auto task = std::move(tasks_.front());
        tasks_.pop_front();
        lock.unlock();
        task();
        lock.lock();
      }
      if (queue_.empty()) {
        drained_.notify_all();
        if (stop_) return;
        continue;
      }
      const size_t n = std::min(kBatch, queue_.size());
      batch.assign(std::make_move_iterator(queue_.begin()),
                   std::make_move_iterator(queue_.begin() + n));
      queue_.erase(queue_.begin(), queue_.begin() + n);
      writing_ = n;
      lock.unlock();
      absl::Status s = store_->Write(batch);
      lock.lock();
      writing_ = 0;
      if (!s.ok()) {
        // Put the batch back in front, in order, and retry after a pause.
        queue_.insert(queue_.begin(), std::make_move_iterator(batch.begin()),
                      std::make_move_iterator(batch.end()));
        LogWarn("usage write failed; will retry", {{"error", SV(s.message())}});
        if (stop_) return;
        cv_.wait_for(lock, backoff, [this] { return stop_; });
        backoff = std::min(backoff * 2, std::chrono::milliseconds(5000));
        continue;
      }
      backoff = std::chrono::milliseconds(100);
      if (queue_.empty()) drained_.notify_all();
    }
  }

  UsageStorePtr store_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::condition_variable drained_;
  std::deque<v1::UsageRecord> queue_;
  std::deque<absl::AnyInvocable<void()>> tasks_;
  size_t writing_ = 0;
  size_t dropped_ = 0;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace

UsagePtr MakeLocalUsage(UsageStorePtr store) {
  return std::make_shared<LocalUsage>(std::move(store));
}

}  // namespace omniroute::usage
