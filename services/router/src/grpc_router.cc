#include "grpc_router.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <iterator>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_adapter.h"
#include "common/log.h"
#include "omniroute/router/v1/router.grpc.pb.h"

namespace omniroute::router {
namespace grpc_router_impl {
namespace {

using grpc_adapter::CallUnary;
using grpc_adapter::ServeUnary;
using namespace std::chrono_literals;

constexpr auto kPlanTimeout = 5s;
constexpr auto kListModelsTimeout = 5s;
constexpr auto kAcquireTimeout = 5s;
constexpr auto kHealthTimeout = 5s;
constexpr auto kAdminTimeout = 10s;

// Threads that run the implementation's calls, which may block on Redis, off gRPC's own
// threads.
class WorkPool {
 public:
  explicit WorkPool(int threads) {
    for (int i = 0; i < threads; ++i) {
      threads_.emplace_back([this] { Loop(); });
    }
  }
  ~WorkPool() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    cv_.notify_all();
    for (auto& t : threads_) t.join();
  }

  void Post(absl::AnyInvocable<void()> task) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      tasks_.push_back(std::move(task));
    }
    cv_.notify_one();
  }

 private:
  void Loop() {
    while (true) {
      absl::AnyInvocable<void()> task;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [&] { return stopping_ || !tasks_.empty(); });
        if (tasks_.empty()) return;  // stopping, nothing left
        task = std::move(tasks_.front());
        tasks_.pop_front();
      }
      task();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<absl::AnyInvocable<void()>> tasks_;
  bool stopping_ = false;
  std::vector<std::thread> threads_;
};

class RouterGrpcService final : public v1::Router::CallbackService {
 public:
  RouterGrpcService(RouterPtr impl, int threads)
      : impl_(std::move(impl)), pool_(std::make_unique<WorkPool>(std::max(threads, 1))) {}

  grpc::ServerUnaryReactor* Plan(grpc::CallbackServerContext* context,
                                 const v1::PlanRequest* request, v1::RoutePlan* response) override {
    return Offload<v1::RoutePlan>(
        context, response, [this, request](auto done) { impl_->Plan(*request, std::move(done)); });
  }

  grpc::ServerUnaryReactor* Report(grpc::CallbackServerContext* context, const v1::Outcome* request,
                                   v1::Ack* response) override {
    return Offload<v1::Ack>(context, response, [this, request](auto done) {
      impl_->Report(*request);
      done(v1::Ack());
    });
  }

  grpc::ServerUnaryReactor* ReportBatch(grpc::CallbackServerContext* context,
                                        const v1::OutcomeBatch* request,
                                        v1::ReportBatchAck* response) override {
    // One task records the whole batch, in order.
    return Offload<v1::ReportBatchAck>(context, response, [this, request](auto done) {
      impl_->ReportBatch(*request, std::move(done));
    });
  }

  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const v1::ListModelsRequest* request,
                                       v1::ListModelsResponse* response) override {
    return ServeUnary<v1::ListModelsResponse>(
        context, response,
        [&](Callback<v1::ListModelsResponse> done) { impl_->ListModels(std::move(done)); });
  }

  grpc::ServerUnaryReactor* Acquire(grpc::CallbackServerContext* context,
                                    const v1::AcquireRequest* request,
                                    v1::AcquireResponse* response) override {
    return Offload<v1::AcquireResponse>(context, response, [this, request](auto done) {
      impl_->Acquire(*request, std::move(done));
    });
  }

  grpc::ServerUnaryReactor* Health(grpc::CallbackServerContext* context,
                                   const v1::HealthRequest* request,
                                   v1::HealthResponse* response) override {
    return Offload<v1::HealthResponse>(context, response, [this, request](auto done) {
      impl_->Health(*request, std::move(done));
    });
  }

  grpc::ServerUnaryReactor* Admin(grpc::CallbackServerContext* context,
                                  const v1::AdminRequest* request,
                                  v1::AdminResponse* response) override {
    return Offload<v1::AdminResponse>(
        context, response, [this, request](auto done) { impl_->Admin(*request, std::move(done)); });
  }

 private:
  // Serves a unary call on the pool: `run(done)` calls the implementation. The request and
  // response outlive the reactor's Finish, so the task may use them.
  template <typename Response, typename Run>
  grpc::ServerUnaryReactor* Offload(grpc::CallbackServerContext* context, Response* response,
                                    Run run) {
    grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
    auto completion = std::make_shared<grpc_adapter::UnaryCompletion<Response>>(reactor, response);
    pool_->Post([completion, run = std::move(run)]() mutable {
      try {
        run(Callback<Response>([completion](absl::StatusOr<Response> result) {
          completion->Complete(std::move(result));
        }));
      } catch (const std::exception& e) {
        completion->Finish(grpc::Status(grpc::StatusCode::INTERNAL, e.what()));
      } catch (...) {
        completion->Finish(grpc::Status(grpc::StatusCode::INTERNAL, "unknown exception"));
      }
    });
    return reactor;
  }

  RouterPtr impl_;
  std::unique_ptr<WorkPool> pool_;
};

// Plans a remote router marked cacheable (RoutePlan.cache_ms), per model, client_format and
// stream (a cacheable plan depends on no other field of the request). An entry goes when its
// cache_ms is over, when this client reports an outcome that changes routing or makes an
// admin change (everything goes), and when the router that made it answers anything with a
// newer epoch (its table changed, or it recorded such an outcome from any client). A change
// recorded by another router replica, or by this one while this client hears nothing from
// it, is bounded by cache_ms alone. Thread-safe.
class PlanCache {
 public:
  using Clock = std::chrono::steady_clock;

  // Taken before a plan is asked for: whether its answer may be kept.
  struct Ticket {
    uint64_t generation = 0;
    bool clean = false;
    Clock::time_point asked;
  };

  explicit PlanCache(size_t max_entries) : max_entries_(std::max<size_t>(max_entries, 1)) {}

  static std::string Key(const v1::PlanRequest& request) {
    return absl::StrCat(request.model(), "\x1f", static_cast<int>(request.client_format()), "\x1f",
                        request.stream() ? 1 : 0);
  }

  // The fresh plan for `key`, if any.
  std::shared_ptr<const v1::RoutePlan> Find(const std::string& key) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = entries_.find(key);
    if (it == entries_.end()) return nullptr;
    if (!Fresh(it->second, Clock::now())) {
      entries_.erase(it);
      return nullptr;
    }
    return it->second.plan;
  }

  Ticket Begin() {
    std::lock_guard<std::mutex> lock(mu_);
    // A plan asked for while a change this client reported is on its way may predate it.
    return Ticket{generation_, unacknowledged_ == 0, Clock::now()};
  }

  // Keeps `plan` for its cache_ms from when it was asked for, unless something changed
  // since `ticket` was taken.
  void Store(const std::string& key, const Ticket& ticket, const v1::RoutePlan& plan) {
    if (plan.cache_ms() <= 0 || plan.candidates_size() == 0) return;
    auto copy = std::make_shared<const v1::RoutePlan>(plan);
    std::lock_guard<std::mutex> lock(mu_);
    if (!ticket.clean || ticket.generation != generation_) return;
    Entry entry{std::move(copy), ticket.asked + std::chrono::milliseconds(plan.cache_ms()),
                plan.epoch().router_id(), plan.epoch().value()};
    const auto now = Clock::now();
    if (!Fresh(entry, now)) return;
    if (entries_.size() >= max_entries_ && !entries_.count(key)) {
      std::erase_if(entries_, [&](const auto& e) { return !Fresh(e.second, now); });
      if (entries_.size() >= max_entries_) entries_.clear();
    }
    entries_[key] = std::move(entry);
  }

  // What a router answered with: plans it made at an older epoch are stale.
  void NoteEpoch(const v1::PlanEpoch& epoch) {
    if (epoch.router_id() == 0) return;
    std::lock_guard<std::mutex> lock(mu_);
    auto [it, added] = epochs_.emplace(epoch.router_id(), epoch.value());
    if (!added) {
      if (epoch.value() <= it->second) return;
      it->second = epoch.value();
    }
    if (added && epochs_.size() > kMaxRouters) {
      // Routers come and go (restarts): start over rather than grow.
      epochs_.clear();
      epochs_.emplace(epoch.router_id(), epoch.value());
      entries_.clear();
    }
  }

  // Forgets every plan, and every answer still on its way. `reported`: the change is in
  // an outcome report the router has not acknowledged yet (Acknowledged follows).
  void Invalidate(bool reported) {
    std::lock_guard<std::mutex> lock(mu_);
    entries_.clear();
    ++generation_;
    if (reported) ++unacknowledged_;
  }

  // `n` reports counted by Invalidate reached the router, or never will.
  void Acknowledged(int64_t n) {
    if (n == 0) return;
    std::lock_guard<std::mutex> lock(mu_);
    unacknowledged_ -= n;
  }

 private:
  static constexpr size_t kMaxRouters = 64;

  struct Entry {
    std::shared_ptr<const v1::RoutePlan> plan;
    Clock::time_point expires;
    uint64_t router_id = 0;
    int64_t epoch = 0;
  };

  // Not expired, and made at the newest epoch known of its router. Called with mu_ held.
  bool Fresh(const Entry& e, Clock::time_point now) const {
    if (now >= e.expires) return false;
    auto it = epochs_.find(e.router_id);
    return it == epochs_.end() || it->second <= e.epoch;
  }

  const size_t max_entries_;
  std::mutex mu_;
  std::unordered_map<std::string, Entry> entries_;
  std::unordered_map<uint64_t, int64_t> epochs_;  // the newest known per router
  uint64_t generation_ = 0;                       // moves on with every Invalidate
  int64_t unacknowledged_ = 0;
};

class RouterGrpcClient final : public Router {
 public:
  RouterGrpcClient(std::shared_ptr<grpc::Channel> channel, const RouterClientOptions& options)
      : stub_(v1::Router::NewStub(std::move(channel))),
        options_(options),
        cache_(std::make_shared<PlanCache>(options.max_cached_plans)) {
    options_.report_batch_size = std::max<size_t>(options_.report_batch_size, 1);
    options_.max_queued_reports = std::max<size_t>(options_.max_queued_reports, 1);
    sender_ = std::thread([this] { Run(); });
  }

  ~RouterGrpcClient() override {
    {
      // What is queued goes out first, within flush_on_destroy.
      std::unique_lock<std::mutex> lock(mu_);
      stopping_ = true;
      wake_.notify_all();
      idle_.wait_for(lock, options_.flush_on_destroy,
                     [&] { return queue_.empty() && in_flight_ == 0; });
      abandon_ = true;
      if (call_context_ != nullptr) call_context_->TryCancel();
    }
    wake_.notify_all();
    sender_.join();
    if (!queue_.empty()) {
      LogWarn("outcome reports not delivered to the router",
              {{"count", std::to_string(queue_.size())}});
    }
    in_flight_calls_->Drain(grpc_adapter::kClientDrainGrace);
  }

  // Interface
  void Plan(const v1::PlanRequest& request, Callback<v1::RoutePlan> done) override {
    const bool cacheable = options_.plan_cache && request.session_id().empty();
    std::string key;
    PlanCache::Ticket ticket;
    if (cacheable) {
      key = PlanCache::Key(request);
      if (std::shared_ptr<const v1::RoutePlan> hit = cache_->Find(key)) {
        // A cached plan has no per-request field (no lease, no session): a copy serves.
        done(v1::RoutePlan(*hit));
        return;
      }
      ticket = cache_->Begin();
    }
    CallUnary<v1::RoutePlan>(
        in_flight_calls_, [this](auto... a) { stub_->async()->Plan(a...); }, request,
        Callback<v1::RoutePlan>([cache = cache_, cacheable, key = std::move(key), ticket,
                                 done = std::move(done)](
                                    absl::StatusOr<v1::RoutePlan> plan) mutable {
          if (plan.ok()) {
            cache->NoteEpoch(plan->epoch());
            if (cacheable) cache->Store(key, ticket, *plan);
          }
          done(std::move(plan));
        }),
        kPlanTimeout, request.request_id());
  }

  void Report(const v1::Outcome& outcome) override {
    const bool changes = ChangesRouting(outcome);
    if (changes) cache_->Invalidate(/*reported=*/true);
    // Whatever the next plan may depend on goes at once: changes, a session to pin, a
    // pacing slot to free.
    const bool urgent = changes || !outcome.candidate().session_id().empty() ||
                        !outcome.candidate().lease_id().empty();
    uint64_t dropped = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (queue_.size() >= options_.max_queued_reports) {
        dropped = ++dropped_;
      } else {
        queue_.push_back(Queued{outcome, changes, urgent});
        if (urgent) ++urgent_;
        if (urgent || queue_.size() == 1 || queue_.size() >= options_.report_batch_size) {
          wake_.notify_one();
        }
      }
    }
    if (dropped != 0) {
      if (changes) cache_->Acknowledged(1);
      // Logs the 1st, 2nd, 4th, 8th... drop.
      if ((dropped & (dropped - 1)) == 0) {
        LogWarn("router report queue full; dropped outcome reports",
                {{"dropped_total", std::to_string(dropped)}});
      }
    }
  }

  void ListModels(Callback<v1::ListModelsResponse> done) override {
    CallUnary<v1::ListModelsResponse>(
        in_flight_calls_, [this](auto... a) { stub_->async()->ListModels(a...); },
        v1::ListModelsRequest(), std::move(done), kListModelsTimeout);
  }

  void Acquire(const v1::AcquireRequest& request, Callback<v1::AcquireResponse> done) override {
    CallUnary<v1::AcquireResponse>(
        in_flight_calls_, [this](auto... a) { stub_->async()->Acquire(a...); }, request,
        std::move(done), kAcquireTimeout, request.request_id());
  }

  void Health(const v1::HealthRequest& request, Callback<v1::HealthResponse> done) override {
    CallUnary<v1::HealthResponse>(
        in_flight_calls_, [this](auto... a) { stub_->async()->Health(a...); }, request,
        std::move(done), kHealthTimeout);
  }

  void Admin(const v1::AdminRequest& request, Callback<v1::AdminResponse> done) override {
    const bool change = !absl::EqualsIgnoreCase(request.method(), "GET");
    CallUnary<v1::AdminResponse>(
        in_flight_calls_, [this](auto... a) { stub_->async()->Admin(a...); }, request,
        Callback<v1::AdminResponse>([cache = cache_, change, done = std::move(done)](
                                        absl::StatusOr<v1::AdminResponse> r) mutable {
          // A change (or a reset) through this client applies to its next plan.
          if (change) cache->Invalidate(/*reported=*/false);
          if (r.ok()) cache->NoteEpoch(r->epoch());
          done(std::move(r));
        }),
        kAdminTimeout);
  }

 private:
  struct Queued {
    v1::Outcome outcome;
    bool changes = false;  // ChangesRouting
    bool urgent = false;
  };

  // The sender thread: the queue in order, one batch at a time.
  void Run() {
    std::vector<Queued> batch;
    auto backoff = kRetryMin;
    std::unique_lock<std::mutex> lock(mu_);
    while (true) {
      wake_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
      if (abandon_ || (stopping_ && queue_.empty())) break;
      if (!stopping_ && urgent_ == 0 && queue_.size() < options_.report_batch_size) {
        wake_.wait_for(lock, options_.report_delay, [&] {
          return stopping_ || urgent_ > 0 || queue_.size() >= options_.report_batch_size;
        });
        if (abandon_) break;
      }
      const size_t n = std::min(options_.report_batch_size, queue_.size());
      batch.assign(std::make_move_iterator(queue_.begin()),
                   std::make_move_iterator(queue_.begin() + static_cast<ptrdiff_t>(n)));
      queue_.erase(queue_.begin(), queue_.begin() + static_cast<ptrdiff_t>(n));
      int64_t changes = 0;
      for (const Queued& q : batch) {
        if (q.urgent) --urgent_;
        if (q.changes) ++changes;
      }
      in_flight_ = n;
      lock.unlock();
      const bool sent = Send(batch);
      // Delivered or lost: either way no longer on its way.
      cache_->Acknowledged(changes);
      batch.clear();
      lock.lock();
      in_flight_ = 0;
      idle_.notify_all();
      if (sent) {
        backoff = kRetryMin;
      } else if (!stopping_) {
        // The router is unreachable: what queues meanwhile goes in one batch.
        wake_.wait_for(lock, backoff, [&] { return stopping_; });
        backoff = std::min(backoff * 2, kRetryMax);
      }
    }
    idle_.notify_all();
  }

  // One ReportBatch call (or Report calls, to a router that predates ReportBatch); the
  // batch is dropped when it fails.
  bool Send(const std::vector<Queued>& items) {
    if (!batch_unimplemented_) {
      v1::OutcomeBatch batch;
      batch.mutable_outcomes()->Reserve(static_cast<int>(items.size()));
      for (const Queued& q : items) *batch.add_outcomes() = q.outcome;
      v1::ReportBatchAck ack;
      const grpc::Status status = Call(
          [&](grpc::ClientContext* c) { return stub_->ReportBatch(c, batch, &ack); });
      if (status.ok()) {
        cache_->NoteEpoch(ack.epoch());
        return Delivered();
      }
      if (status.error_code() != grpc::StatusCode::UNIMPLEMENTED) {
        return Failed(items.size(), status);
      }
      batch_unimplemented_ = true;
      LogInfo("the router does not take batched reports; reporting one by one");
    }
    for (size_t i = 0; i < items.size(); ++i) {
      v1::Ack ack;
      const grpc::Status status = Call(
          [&](grpc::ClientContext* c) { return stub_->Report(c, items[i].outcome, &ack); });
      if (!status.ok()) return Failed(items.size() - i, status);
    }
    return Delivered();
  }

  template <typename Rpc>
  grpc::Status Call(Rpc&& rpc) {
    grpc::ClientContext context;
    context.set_deadline(std::chrono::system_clock::now() + options_.report_timeout);
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (abandon_) return grpc::Status(grpc::StatusCode::CANCELLED, "client stopping");
      call_context_ = &context;
    }
    grpc::Status status = rpc(&context);
    std::lock_guard<std::mutex> lock(mu_);
    call_context_ = nullptr;
    return status;
  }

  bool Delivered() {
    if (unreachable_) {
      unreachable_ = false;
      LogInfo("router reachable again; outcome reports delivered");
    }
    return true;
  }

  bool Failed(size_t lost, const grpc::Status& status) {
    uint64_t total = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      total = dropped_ += lost;
    }
    if (!unreachable_) {
      unreachable_ = true;
      LogWarn("cannot deliver outcome reports to the router; dropped",
              {{"count", std::to_string(lost)},
               {"dropped_total", std::to_string(total)},
               {"error", status.error_message()}});
    }
    return false;
  }

  static constexpr std::chrono::milliseconds kRetryMin{100};
  static constexpr std::chrono::milliseconds kRetryMax{2000};

  std::unique_ptr<v1::Router::Stub> stub_;
  RouterClientOptions options_;
  const std::shared_ptr<PlanCache> cache_;  // shared with the completions of calls in flight
  std::shared_ptr<grpc_adapter::InFlightCalls> in_flight_calls_ =  // everything but reports
      std::make_shared<grpc_adapter::InFlightCalls>();

  std::mutex mu_;
  std::condition_variable wake_;  // the sender: reports queued, stopping
  std::condition_variable idle_;  // the destructor: a batch went out
  std::deque<Queued> queue_;
  size_t urgent_ = 0;     // queued reports that must not wait
  size_t in_flight_ = 0;  // reports of the batch being sent
  uint64_t dropped_ = 0;
  bool stopping_ = false;  // send what is queued without waiting, then stop
  bool abandon_ = false;   // stop now
  grpc::ClientContext* call_context_ = nullptr;
  bool unreachable_ = false;          // sender thread only
  bool batch_unimplemented_ = false;  // sender thread only
  std::thread sender_;
};

}  // namespace
}  // namespace grpc_router_impl

std::unique_ptr<grpc::Service> MakeRouterGrpcService(RouterPtr impl, int threads) {
  return std::make_unique<grpc_router_impl::RouterGrpcService>(std::move(impl), threads);
}

RouterPtr MakeRouterGrpcClient(std::shared_ptr<grpc::Channel> channel,
                               const RouterClientOptions& options) {
  return std::make_shared<grpc_router_impl::RouterGrpcClient>(std::move(channel), options);
}

}  // namespace omniroute::router
