#include "grpc_router.h"

#include <chrono>
#include <utility>

#include "common/grpc_adapter.h"
#include "omniroute/router/v1/router.grpc.pb.h"

namespace omniroute::router {
namespace grpc_router_impl {
namespace {

using grpc_adapter::CallUnary;
using grpc_adapter::ServeNow;
using grpc_adapter::ServeUnary;
using namespace std::chrono_literals;

constexpr auto kPlanTimeout = 5s;
constexpr auto kReportTimeout = 5s;
constexpr auto kListModelsTimeout = 5s;

class RouterGrpcService final : public v1::Router::CallbackService {
 public:
  explicit RouterGrpcService(RouterPtr impl) : impl_(std::move(impl)) {}

  grpc::ServerUnaryReactor* Plan(grpc::CallbackServerContext* context,
                                 const v1::PlanRequest* request, v1::RoutePlan* response) override {
    return ServeUnary<v1::RoutePlan>(context, response, [&](Callback<v1::RoutePlan> done) {
      impl_->Plan(*request, std::move(done));
    });
  }

  grpc::ServerUnaryReactor* Report(grpc::CallbackServerContext* context, const v1::Outcome* request,
                                   v1::Ack* response) override {
    return ServeNow(context, [&] { impl_->Report(*request); });
  }

  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* context,
                                       const v1::ListModelsRequest* request,
                                       v1::ListModelsResponse* response) override {
    return ServeUnary<v1::ListModelsResponse>(
        context, response,
        [&](Callback<v1::ListModelsResponse> done) { impl_->ListModels(std::move(done)); });
  }

 private:
  RouterPtr impl_;
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

 private:
  std::unique_ptr<v1::Router::Stub> stub_;
  std::shared_ptr<grpc_adapter::InFlightCalls> in_flight_ =
      std::make_shared<grpc_adapter::InFlightCalls>();
};

}  // namespace
}  // namespace grpc_router_impl

std::unique_ptr<grpc::Service> MakeRouterGrpcService(RouterPtr impl) {
  return std::make_unique<grpc_router_impl::RouterGrpcService>(std::move(impl));
}

RouterPtr MakeRouterGrpcClient(std::shared_ptr<grpc::Channel> channel) {
  return std::make_shared<grpc_router_impl::RouterGrpcClient>(std::move(channel));
}

}  // namespace omniroute::router
