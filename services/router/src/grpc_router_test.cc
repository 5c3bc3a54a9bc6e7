#include "grpc_router.h"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <future>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/grpc_util.h"
#include "gtest/gtest.h"
#include "local_router.h"

namespace omniroute::router {
namespace {

using namespace std::chrono_literals;

class FakeRouter final : public Router {
 public:
  static constexpr uint64_t kRouterId = 7;

  void Plan(const v1::PlanRequest& request, Callback<v1::RoutePlan> done) override {
    plans_.fetch_add(1);
    if (absl::StartsWith(request.model(), "cache/")) {
      // "cache/<ms>": a plan the router marks cacheable for that long.
      int64_t ms = 0;
      EXPECT_TRUE(absl::SimpleAtoi(request.model().substr(6), &ms));
      v1::RoutePlan plan;
      plan.set_resolved_model(request.model());
      plan.set_cache_ms(ms);
      *plan.mutable_epoch() = Epoch();
      v1::Candidate* c = plan.add_candidates();
      c->set_provider("openai");
      c->set_connection_id("openai:a");
      c->set_format(request.client_format());
      done(std::move(plan));
      return;
    }
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

  void ReportBatch(const v1::OutcomeBatch& batch, Callback<v1::ReportBatchAck> done) override {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return !hold_reports_; });
      ++batches_;
    }
    for (const v1::Outcome& o : batch.outcomes()) Report(o);
    v1::ReportBatchAck ack;
    *ack.mutable_epoch() = Epoch();
    done(std::move(ack));
  }

  void Admin(const v1::AdminRequest& request, Callback<v1::AdminResponse> done) override {
    v1::AdminResponse r;
    r.set_status(200);
    *r.mutable_epoch() = Epoch();
    done(std::move(r));
  }

  v1::PlanEpoch Epoch() {
    v1::PlanEpoch e;
    e.set_router_id(kRouterId);
    e.set_value(epoch_.load());
    return e;
  }
  void set_epoch(int64_t v) { epoch_.store(v); }
  int plans() const { return plans_.load(); }
  int batches() {
    std::lock_guard<std::mutex> lock(mu_);
    return batches_;
  }
  // While held, ReportBatch waits (its outcomes are not recorded, its answer not sent).
  void HoldReports(bool hold) {
    std::lock_guard<std::mutex> lock(mu_);
    hold_reports_ = hold;
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
  int batches_ = 0;
  bool hold_reports_ = false;
  std::atomic<int> plans_{0};
  std::atomic<int64_t> epoch_{1};
};

class GrpcRouterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fake_ = std::make_shared<FakeRouter>();
    service_ = MakeRouterGrpcService(fake_);
    server_ = StartGrpcServer("127.0.0.1:0", {service_.get()}, &port_);
    ASSERT_NE(server_, nullptr);
    client_ = MakeClient();
  }

  void TearDown() override {
    fake_->HoldReports(false);
    client_.reset();
    fake_->Release();
    server_->Shutdown(std::chrono::system_clock::now() + 1s);
  }

  RouterPtr MakeClient(const RouterClientOptions& options = {}) {
    return MakeRouterGrpcClient(MakeServiceChannel(absl::StrCat("127.0.0.1:", port_)), options);
  }

  absl::StatusOr<v1::RoutePlan> Plan(const std::string& model, const std::string& session = {},
                                     common::v1::Format format = common::v1::FORMAT_ANTHROPIC) {
    v1::PlanRequest req;
    req.set_request_id("req-1");
    req.set_model(model);
    req.set_session_id(session);
    req.set_client_format(format);
    std::promise<absl::StatusOr<v1::RoutePlan>> p;
    client_->Plan(req, [&](absl::StatusOr<v1::RoutePlan> r) { p.set_value(std::move(r)); });
    return p.get_future().get();
  }

  // Plans `model` until an answer is served from the cache (once the reports that changed
  // routing are acknowledged), up to 5 s.
  bool CachedAgain(const std::string& model) {
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < deadline) {
      if (!Plan(model).ok()) return false;
      const int before = fake_->plans();
      if (!Plan(model).ok()) return false;
      if (fake_->plans() == before) return true;
      std::this_thread::sleep_for(2ms);
    }
    return false;
  }

  static v1::Outcome Outcome(const std::string& id, int status) {
    v1::Outcome o;
    o.set_request_id(id);
    o.mutable_candidate()->set_provider("openai");
    o.mutable_candidate()->set_connection_id("openai:a");
    o.set_http_status(status);
    return o;
  }

  // Plans `model` until the router is asked again (a cached plan was dropped), up to 5 s.
  bool PlansUntilTheRouterIsAsked(const std::string& model) {
    const int before = fake_->plans();
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    while (std::chrono::steady_clock::now() < deadline) {
      if (!Plan(model).ok()) return false;
      if (fake_->plans() > before) return true;
      std::this_thread::sleep_for(2ms);
    }
    return false;
  }

  std::shared_ptr<FakeRouter> fake_;
  std::unique_ptr<grpc::Service> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
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

TEST_F(GrpcRouterTest, ACacheablePlanIsServedFromTheCacheWithoutACall) {
  absl::StatusOr<v1::RoutePlan> first = Plan("cache/60000");
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_EQ(fake_->plans(), 1);
  for (int i = 0; i < 5; ++i) {
    absl::StatusOr<v1::RoutePlan> again = Plan("cache/60000");
    ASSERT_TRUE(again.ok()) << again.status();
    EXPECT_EQ(again->SerializeAsString(), first->SerializeAsString());
  }
  EXPECT_EQ(fake_->plans(), 1);
  // The key is the model, the client format and stream; a session is never cached.
  ASSERT_TRUE(Plan("cache/60000", {}, common::v1::FORMAT_OPENAI_CHAT).ok());
  EXPECT_EQ(fake_->plans(), 2);
  ASSERT_TRUE(Plan("cache/60000", "sess-1").ok());
  ASSERT_TRUE(Plan("cache/60000", "sess-1").ok());
  EXPECT_EQ(fake_->plans(), 4);
  ASSERT_TRUE(Plan("cache/60000", {}, common::v1::FORMAT_OPENAI_CHAT).ok());
  EXPECT_EQ(fake_->plans(), 4);
  // Plans the router did not mark cacheable always cross the wire.
  ASSERT_TRUE(Plan("openai/gpt-4o").ok());
  ASSERT_TRUE(Plan("openai/gpt-4o").ok());
  EXPECT_EQ(fake_->plans(), 6);
}

TEST_F(GrpcRouterTest, AFailureReportClearsTheCacheAPlainSuccessDoesNot) {
  ASSERT_TRUE(Plan("cache/60000").ok());
  client_->Report(Outcome("ok-1", 200));
  ASSERT_TRUE(fake_->WaitForReports(1));
  ASSERT_TRUE(Plan("cache/60000").ok());
  EXPECT_EQ(fake_->plans(), 1);
  v1::Outcome spent = Outcome("spent", 200);  // a success saying the request budget is spent
  spent.mutable_rate_limit()->set_remaining_requests(0);
  spent.mutable_rate_limit()->set_reset_requests_ms(2000);
  v1::Outcome network = Outcome("network", 0);
  network.set_network_error(true);
  for (const v1::Outcome& outcome :
       {Outcome("429", 429), Outcome("503", 503), Outcome("400", 400), network, spent}) {
    ASSERT_TRUE(CachedAgain("cache/60000")) << outcome.request_id();
    const int before = fake_->plans();
    client_->Report(outcome);
    ASSERT_TRUE(Plan("cache/60000").ok());
    EXPECT_EQ(fake_->plans(), before + 1) << outcome.request_id();
  }
  ASSERT_TRUE(fake_->WaitForReports(6));
}

TEST_F(GrpcRouterTest, AnAnswerAskedForWhileAFailureReportIsOnItsWayIsNotCached) {
  fake_->HoldReports(true);
  client_->Report(Outcome("fail", 503));
  ASSERT_TRUE(Plan("cache/60000").ok());
  ASSERT_TRUE(Plan("cache/60000").ok());
  EXPECT_EQ(fake_->plans(), 2);
  fake_->HoldReports(false);
  ASSERT_TRUE(fake_->WaitForReports(1));
  // Once the router has it, answers are cached again.
  EXPECT_TRUE(CachedAgain("cache/60000"));
}

TEST_F(GrpcRouterTest, ANewerEpochOrAnAdminChangeDropsCachedPlans) {
  ASSERT_TRUE(Plan("cache/60000").ok());
  // The router moved on (a change through another edge): the next acknowledgement says so.
  fake_->set_epoch(2);
  client_->Report(Outcome("ok-1", 200));
  EXPECT_TRUE(PlansUntilTheRouterIsAsked("cache/60000"));
  // A read through the admin API keeps the cache; a change drops it.
  int before = fake_->plans();
  v1::AdminRequest get;
  get.set_method("GET");
  get.set_path("/api/routing");
  std::promise<absl::StatusOr<v1::AdminResponse>> a1;
  client_->Admin(get, [&](absl::StatusOr<v1::AdminResponse> r) { a1.set_value(std::move(r)); });
  ASSERT_TRUE(a1.get_future().get().ok());
  ASSERT_TRUE(Plan("cache/60000").ok());
  EXPECT_EQ(fake_->plans(), before);
  v1::AdminRequest put = get;
  put.set_method("PUT");
  std::promise<absl::StatusOr<v1::AdminResponse>> a2;
  client_->Admin(put, [&](absl::StatusOr<v1::AdminResponse> r) { a2.set_value(std::move(r)); });
  ASSERT_TRUE(a2.get_future().get().ok());
  ASSERT_TRUE(Plan("cache/60000").ok());
  EXPECT_EQ(fake_->plans(), before + 1);
  // An admin answer with a newer epoch drops plans too.
  before = fake_->plans();
  fake_->set_epoch(3);
  std::promise<absl::StatusOr<v1::AdminResponse>> a3;
  client_->Admin(get, [&](absl::StatusOr<v1::AdminResponse> r) { a3.set_value(std::move(r)); });
  ASSERT_TRUE(a3.get_future().get().ok());
  ASSERT_TRUE(Plan("cache/60000").ok());
  EXPECT_EQ(fake_->plans(), before + 1);
}

TEST_F(GrpcRouterTest, CachedPlansExpire) {
  ASSERT_TRUE(Plan("cache/50").ok());
  ASSERT_TRUE(Plan("cache/50").ok());
  EXPECT_EQ(fake_->plans(), 1);
  std::this_thread::sleep_for(80ms);
  ASSERT_TRUE(Plan("cache/50").ok());
  EXPECT_EQ(fake_->plans(), 2);
}

TEST_F(GrpcRouterTest, BatchedReportsArriveInOrder) {
  constexpr int kReports = 2000;
  std::vector<std::string> sent;
  for (int i = 0; i < kReports; ++i) {
    sent.push_back(absl::StrCat("r", i));
    // Mostly plain successes, which wait for company; now and then a failure, which goes
    // at once with what is queued before it.
    client_->Report(Outcome(sent.back(), i % 97 == 0 ? 503 : 200));
  }
  ASSERT_TRUE(fake_->WaitForReports(kReports));
  EXPECT_EQ(fake_->reports(), sent);
  EXPECT_LT(fake_->batches(), kReports / 4);
}

TEST_F(GrpcRouterTest, DestroyingTheClientFlushesQueuedReports) {
  RouterClientOptions options;
  options.report_delay = 1h;  // nothing goes out before the flush
  RouterPtr client = MakeClient(options);
  std::vector<std::string> sent;
  for (int i = 0; i < 10; ++i) {
    sent.push_back(absl::StrCat("q", i));
    client->Report(Outcome(sent.back(), 200));
  }
  std::this_thread::sleep_for(20ms);
  EXPECT_TRUE(fake_->reports().empty());
  client.reset();
  EXPECT_EQ(fake_->reports(), sent);
  EXPECT_EQ(fake_->batches(), 1);
}

TEST_F(GrpcRouterTest, AFullReportQueueDropsNewReports) {
  RouterClientOptions options;
  options.report_delay = 1h;
  options.max_queued_reports = 5;
  RouterPtr client = MakeClient(options);
  for (int i = 0; i < 20; ++i) client->Report(Outcome(absl::StrCat("q", i), 200));
  client.reset();
  EXPECT_EQ(fake_->reports(), (std::vector<std::string>{"q0", "q1", "q2", "q3", "q4"}));
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

// Counts the plans that reach the router behind it.
class CountingRouter final : public Router {
 public:
  explicit CountingRouter(RouterPtr impl) : impl_(std::move(impl)) {}
  void Plan(const v1::PlanRequest& request, Callback<v1::RoutePlan> done) override {
    plans_.fetch_add(1);
    impl_->Plan(request, std::move(done));
  }
  void Report(const v1::Outcome& outcome) override { impl_->Report(outcome); }
  void ReportBatch(const v1::OutcomeBatch& batch, Callback<v1::ReportBatchAck> done) override {
    impl_->ReportBatch(batch, std::move(done));
  }
  void ListModels(Callback<v1::ListModelsResponse> done) override {
    impl_->ListModels(std::move(done));
  }
  int plans() const { return plans_.load(); }

 private:
  RouterPtr impl_;
  std::atomic<int> plans_{0};
};

TEST(GrpcLocalRouterTest, OnlyDeterministicPlansAreCachedAndAFailureReportEndsThat) {
  auto config = ParseConfig(R"(
routing: { strategy: fill-first }
nodes:
  - { id: ff, format: openai, base_url: "http://127.0.0.1:9/v1" }
  - { id: rr, format: openai, base_url: "http://127.0.0.1:8/v1", routing: { strategy: round-robin, sticky_limit: 1 } }
  - { id: rnd, format: openai, base_url: "http://127.0.0.1:7/v1", routing: { strategy: random } }
connections:
  - { provider: ff, name: a, api_key: k, priority: 1 }
  - { provider: ff, name: b, api_key: k, priority: 2 }
  - { provider: rr, name: r1, api_key: k }
  - { provider: rr, name: r2, api_key: k }
  - { provider: rnd, name: x1, api_key: k }
  - { provider: rnd, name: x2, api_key: k }
combos:
  - { name: spin, strategy: round-robin, models: [ff/m, rr/m] }
)");
  ASSERT_TRUE(config.ok()) << config.status();
  for (auto& conn : config->connections) conn.id = conn.provider + ":" + conn.name;
  auto shared = std::make_shared<const Config>(*config);
  auto registry = BuildRegistry(*shared);
  ASSERT_TRUE(registry.ok());
  RouterOptions options;
  options.background = false;
  options.persist = false;
  options.plan_cache_ms = 60000;  // long enough that only a report or a change ends it
  auto impl = std::make_shared<LocalRouter>(shared, *registry, MakeMemoryStateStore(), options);
  auto counting = std::make_shared<CountingRouter>(impl);
  auto service = MakeRouterGrpcService(counting, 2);
  int port = 0;
  auto server = StartGrpcServer("127.0.0.1:0", {service.get()}, &port);
  ASSERT_NE(server, nullptr);
  RouterPtr client = MakeRouterGrpcClient(MakeServiceChannel(absl::StrCat("127.0.0.1:", port)));
  auto first = [&](const std::string& model) {
    v1::PlanRequest req;
    req.set_request_id("r");
    req.set_model(model);
    std::promise<absl::StatusOr<v1::RoutePlan>> p;
    client->Plan(req, [&](absl::StatusOr<v1::RoutePlan> r) { p.set_value(std::move(r)); });
    absl::StatusOr<v1::RoutePlan> plan = p.get_future().get();
    EXPECT_TRUE(plan.ok()) << plan.status();
    return plan.ok() && plan->candidates_size() > 0 ? plan->candidates(0).connection_id()
                                                    : std::string();
  };

  // fill-first: asked once, then answered from the cache.
  for (int i = 0; i < 5; ++i) EXPECT_EQ(first("ff/m"), "ff:a");
  EXPECT_EQ(counting->plans(), 1);
  // round-robin, random and a round-robin combo: asked every time (and still rotating).
  std::vector<std::string> rr;
  for (int i = 0; i < 4; ++i) rr.push_back(first("rr/m"));
  EXPECT_EQ(rr, (std::vector<std::string>{"rr:r1", "rr:r2", "rr:r1", "rr:r2"}));
  for (int i = 0; i < 4; ++i) first("rnd/m");
  for (int i = 0; i < 4; ++i) first("spin");
  EXPECT_EQ(counting->plans(), 13);

  // A failure of ff:a: the next plans come from the router, which soon leaves it out.
  v1::Outcome failed;
  failed.mutable_candidate()->set_provider("ff");
  failed.mutable_candidate()->set_connection_id("ff:a");
  failed.set_http_status(429);
  client->Report(failed);
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  std::string now_first = first("ff/m");
  while (now_first != "ff:b" && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(2ms);
    now_first = first("ff/m");
  }
  EXPECT_EQ(now_first, "ff:b");
  EXPECT_GT(counting->plans(), 13);

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
