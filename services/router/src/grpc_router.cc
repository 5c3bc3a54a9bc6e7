#include "grpc_router.h"

#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "common/grpc_adapter.h"
#include "omniroute/router/v1/router.grpc.pb.h"

namespace omniroute::router {
namespace grpc_router_impl {
namespace {

using grpc_adapter::CallUnary;
using grpc_adapter::ServeUnary;
using namespace std::chrono_literals;

constexpr auto kPlanTimeout = 5s;
constexpr auto kReportTimeout = 5s;
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

class RouterGrpcClient final : public Router {
 public:
  explicit RouterGrpcClient(std::shared_ptr<grpc::Channel> channel)
      : stub_(v1::Router::NewStub(std::move(channel))) {}

  ~RouterGrpcClient() override { in_flight_->Drain(grpc_adapter::kClientDrainGrace); }

  // Interface
  void Plan(const v1::PlanRequest& request, Callback<v1::RoutePlan> done) override {
    CallUnary<v1::RoutePlan>(
        in_flight_, [this](auto... a) { stub_->async()->Plan(a...); }, request, std::move(done),
        kPlanTimeout, request.request_id());
  }

  void Report(const v1::Outcome& outcome) override {
    CallUnary<v1::Ack>(
        in_flight_, [this](auto... a) { stub_->async()->Report(a...); }, outcome,
        Callback<v1::Ack>([](absl::StatusOr<v1::Ack>) {}), kReportTimeout, outcome.request_id());
  }

  void ListModels(Callback<v1::ListModelsResponse> done) override {
    CallUnary<v1::ListModelsResponse>(
        in_flight_, [this](auto... a) { stub_->async()->ListModels(a...); },
        v1::ListModelsRequest(), std::move(done), kListModelsTimeout);
  }

  void Acquire(const v1::AcquireRequest& request, Callback<v1::AcquireResponse> done) override {
    CallUnary<v1::AcquireResponse>(
        in_flight_, [this](auto... a) { stub_->async()->Acquire(a...); }, request, std::move(done),
        kAcquireTimeout, request.request_id());
  }

  void Health(const v1::HealthRequest& request, Callback<v1::HealthResponse> done) override {
    CallUnary<v1::HealthResponse>(
        in_flight_, [this](auto... a) { stub_->async()->Health(a...); }, request, std::move(done),
        kHealthTimeout);
  }

  void Admin(const v1::AdminRequest& request, Callback<v1::AdminResponse> done) override {
    CallUnary<v1::AdminResponse>(
        in_flight_, [this](auto... a) { stub_->async()->Admin(a...); }, request, std::move(done),
        kAdminTimeout);
  }

 private:
  std::unique_ptr<v1::Router::Stub> stub_;
  std::shared_ptr<grpc_adapter::InFlightCalls> in_flight_ =
      std::make_shared<grpc_adapter::InFlightCalls>();
};

}  // namespace
}  // namespace grpc_router_impl

std::unique_ptr<grpc::Service> MakeRouterGrpcService(RouterPtr impl, int threads) {
  return std::make_unique<grpc_router_impl::RouterGrpcService>(std::move(impl), threads);
}

RouterPtr MakeRouterGrpcClient(std::shared_ptr<grpc::Channel> channel) {
  return std::make_shared<grpc_router_impl::RouterGrpcClient>(std::move(channel));
}

}  // namespace omniroute::router
