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
#include "local_router.h"

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

TEST(GrpcLocalRouterTest, NewCallsCrossTheWire) {
  auto config = ParseConfig(R"(
nodes: [ { id: n, format: openai, base_url: "http://127.0.0.1:9/v1", queue: { max_concurrent: 1 } } ]
connections: [ { provider: n, name: a, api_key: k }, { provider: n, name: b, api_key: k } ]
)");
  ASSERT_TRUE(config.ok()) << config.status();
  auto shared = std::make_shared<const Config>(*config);
  auto registry = BuildRegistry(*shared);
  ASSERT_TRUE(registry.ok());
  RouterOptions options;
  options.background = false;
  options.persist = false;
  auto impl = std::make_shared<LocalRouter>(shared, *registry, MakeMemoryStateStore(), options);
  auto service = MakeRouterGrpcService(impl, 2);
  int port = 0;
  auto server = StartGrpcServer("127.0.0.1:0", {service.get()}, &port);
  ASSERT_NE(server, nullptr);
  RouterPtr client = MakeRouterGrpcClient(MakeServiceChannel(absl::StrCat("127.0.0.1:", port)));

  v1::PlanRequest req;
  req.set_request_id("r1");
  req.set_model("n/m");
  std::promise<absl::StatusOr<v1::RoutePlan>> plan;
  client->Plan(req, [&](absl::StatusOr<v1::RoutePlan> r) { plan.set_value(std::move(r)); });
  absl::StatusOr<v1::RoutePlan> got = plan.get_future().get();
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->candidates_size(), 2);
  EXPECT_FALSE(got->candidates(0).lease_id().empty());
  EXPECT_TRUE(got->candidates(1).paced());

  v1::AcquireRequest acq;
  *acq.mutable_candidate() = got->candidates(1);
  std::promise<absl::StatusOr<v1::AcquireResponse>> slot;
  client->Acquire(acq,
                  [&](absl::StatusOr<v1::AcquireResponse> r) { slot.set_value(std::move(r)); });
  absl::StatusOr<v1::AcquireResponse> granted = slot.get_future().get();
  ASSERT_TRUE(granted.ok()) << granted.status();
  EXPECT_TRUE(granted->granted());

  v1::HealthRequest hreq;
  hreq.set_brief(true);
  std::promise<absl::StatusOr<v1::HealthResponse>> health;
  client->Health(hreq,
                 [&](absl::StatusOr<v1::HealthResponse> r) { health.set_value(std::move(r)); });
  absl::StatusOr<v1::HealthResponse> h = health.get_future().get();
  ASSERT_TRUE(h.ok()) << h.status();
  EXPECT_EQ(h->store(), "memory");
  EXPECT_TRUE(h->store_healthy());

  v1::AdminRequest areq;
  areq.set_method("POST");
  areq.set_path("/api/combos");
  areq.set_body(R"({"name":"c","models":["n/m"]})");
  std::promise<absl::StatusOr<v1::AdminResponse>> admin;
  client->Admin(areq, [&](absl::StatusOr<v1::AdminResponse> r) { admin.set_value(std::move(r)); });
  absl::StatusOr<v1::AdminResponse> a = admin.get_future().get();
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->status(), 201) << a->body();

  client.reset();
  server->Shutdown(std::chrono::system_clock::now() + 1s);
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
