#include "grpc_router.h"

#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <stdexcept>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "common/grpc_util.h"
#include "gtest/gtest.h"

namespace omniroute::router {
namespace {

using namespace std::chrono_literals;

class FakeRouter final : public Router {
 public:
  void Plan(const v1::PlanRequest& request, Callback<v1::RoutePlan> done) override {
    if (request.model() == "unknown/x") {
      done(absl::NotFoundError("unknown model"));
      return;
    }
    if (request.model() == "throw") {
      throw std::runtime_error("router bug");
    }
    if (request.model() == "drop") {
      return;  // the callback is destroyed unanswered
    }
    if (request.model() == "hold") {
      std::lock_guard<std::mutex> lock(mu_);
      held_.push_back(std::move(done));
      return;
    }
    v1::RoutePlan plan;
    plan.set_resolved_model(request.model());
    v1::Candidate* c = plan.add_candidates();
    c->set_provider("openai");
    c->set_connection_id(absl::StrCat("openai:", request.request_id()));
    c->set_format(request.client_format());
    done(std::move(plan));
  }

  void Report(const v1::Outcome& outcome) override {
    std::lock_guard<std::mutex> lock(mu_);
    reports_.push_back(outcome.request_id());
    cv_.notify_all();
  }

  void ListModels(Callback<v1::ListModelsResponse> done) override {
    v1::ListModelsResponse r;
    r.add_models()->set_id("openai/gpt-4o");
    done(std::move(r));
  }

  bool WaitForReports(size_t n) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, 5s, [&] { return reports_.size() >= n; });
  }

  std::vector<std::string> reports() {
    std::lock_guard<std::mutex> lock(mu_);
    return reports_;
  }

  // Answers the held plans.
  void Release() {
    std::vector<Callback<v1::RoutePlan>> held;
    {
      std::lock_guard<std::mutex> lock(mu_);
      held.swap(held_);
    }
    for (auto& done : held) {
      done(absl::UnavailableError("released"));
    }
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> reports_;
  std::vector<Callback<v1::RoutePlan>> held_;
};

class GrpcRouterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fake_ = std::make_shared<FakeRouter>();
    service_ = MakeRouterGrpcService(fake_);
    int port = 0;
    server_ = StartGrpcServer("127.0.0.1:0", {service_.get()}, &port);
    ASSERT_NE(server_, nullptr);
    client_ = MakeRouterGrpcClient(MakeServiceChannel(absl::StrCat("127.0.0.1:", port)));
  }

  void TearDown() override {
    client_.reset();
    fake_->Release();
    server_->Shutdown(std::chrono::system_clock::now() + 1s);
  }

  absl::StatusOr<v1::RoutePlan> Plan(const std::string& model) {
    v1::PlanRequest req;
    req.set_request_id("req-1");
    req.set_model(model);
    req.set_client_format(common::v1::FORMAT_ANTHROPIC);
    std::promise<absl::StatusOr<v1::RoutePlan>> p;
    client_->Plan(req, [&](absl::StatusOr<v1::RoutePlan> r) { p.set_value(std::move(r)); });
    return p.get_future().get();
  }

  std::shared_ptr<FakeRouter> fake_;
  std::unique_ptr<grpc::Service> service_;
  std::unique_ptr<grpc::Server> server_;
  RouterPtr client_;
};

TEST_F(GrpcRouterTest, PlansOverTheWire) {
  absl::StatusOr<v1::RoutePlan> plan = Plan("openai/gpt-4o");
  ASSERT_TRUE(plan.ok()) << plan.status();
  EXPECT_EQ(plan->resolved_model(), "openai/gpt-4o");
  ASSERT_EQ(plan->candidates_size(), 1);
  EXPECT_EQ(plan->candidates(0).connection_id(), "openai:req-1");
  EXPECT_EQ(plan->candidates(0).format(), common::v1::FORMAT_ANTHROPIC);
}

TEST_F(GrpcRouterTest, CarriesStatusCodes) {
  absl::StatusOr<v1::RoutePlan> plan = Plan("unknown/x");
  EXPECT_EQ(plan.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(plan.status().message(), "unknown model");
}

TEST_F(GrpcRouterTest, AnswersWhenTheImplementationThrowsOrDropsTheCall) {
  EXPECT_EQ(Plan("throw").status().code(), absl::StatusCode::kInternal);
  EXPECT_EQ(Plan("drop").status().code(), absl::StatusCode::kInternal);
}

TEST_F(GrpcRouterTest, ReportsAreFireAndForget) {
  for (int i = 0; i < 20; ++i) {
    v1::Outcome o;
    o.set_request_id(absl::StrCat("r", i));
    o.set_http_status(429);
    client_->Report(o);
  }
  ASSERT_TRUE(fake_->WaitForReports(20));
  EXPECT_EQ(fake_->reports().size(), 20u);
}

TEST_F(GrpcRouterTest, ListsModels) {
  std::promise<absl::StatusOr<v1::ListModelsResponse>> p;
  client_->ListModels([&](absl::StatusOr<v1::ListModelsResponse> r) { p.set_value(std::move(r)); });
  absl::StatusOr<v1::ListModelsResponse> r = p.get_future().get();
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->models_size(), 1);
  EXPECT_EQ(r->models(0).id(), "openai/gpt-4o");
}

TEST_F(GrpcRouterTest, DestroyingTheClientCancelsCallsThatOutlastTheGrace) {
  v1::PlanRequest req;
  req.set_model("hold");
  std::promise<absl::StatusOr<v1::RoutePlan>> p;
  client_->Plan(req, [&](absl::StatusOr<v1::RoutePlan> r) { p.set_value(std::move(r)); });
  const auto start = std::chrono::steady_clock::now();
  client_.reset();  // waits for the held call, then cancels it
  const auto waited = std::chrono::steady_clock::now() - start;
  auto f = p.get_future();
  ASSERT_EQ(f.wait_for(0s), std::future_status::ready);
  EXPECT_EQ(f.get().status().code(), absl::StatusCode::kCancelled);
  EXPECT_GE(waited, 1500ms);
  EXPECT_LT(waited, 5s);
}

TEST(GrpcRouterClientTest, UnreachableServiceIsUnavailable) {
  RouterPtr client = MakeRouterGrpcClient(MakeServiceChannel("127.0.0.1:1"));
  v1::PlanRequest req;
  req.set_model("a/b");
  std::promise<absl::StatusOr<v1::RoutePlan>> p;
  client->Plan(req, [&](absl::StatusOr<v1::RoutePlan> r) { p.set_value(std::move(r)); });
  EXPECT_EQ(p.get_future().get().status().code(), absl::StatusCode::kUnavailable);
  client->Report(v1::Outcome());  // must not block or crash
}

}  // namespace
}  // namespace omniroute::router
