#include "local_router.h"

#include <gtest/gtest.h>

namespace omniroute::router {
namespace {

class LocalRouterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = ParseConfig(R"(
resilience: { cooldown: { base_ms: 1000, max_ms: 8000, max_backoff_steps: 5 } }
nodes:
  - { id: local, format: openai, base_url: "http://127.0.0.1:9/v1", models: [m1, shared] }
  - { id: other, format: anthropic, base_url: "http://127.0.0.1:9/v1", models: [shared] }
connections:
  - { provider: local, name: b, api_key: kb, priority: 2 }
  - { provider: local, name: a, api_key: ka, priority: 1 }
  - { provider: local, name: off, api_key: ko, priority: 0, enabled: false }
  - { provider: other, name: x, api_key: kx }
  - { provider: openai, name: o, api_key: ko }
)");
    ASSERT_TRUE(c.ok()) << c.status();
    config_ = std::make_shared<const Config>(*c);
    auto reg = BuildRegistry(*config_);
    ASSERT_TRUE(reg.ok());
    router_ = MakeLocalRouter(config_, *reg, MakeMemoryStateStore(), [this] { return now_; });
  }

  absl::StatusOr<v1::RoutePlan> Plan(const std::string& model) {
    v1::PlanRequest req;
    req.set_model(model);
    absl::StatusOr<v1::RoutePlan> out = absl::UnknownError("not called");
    router_->Plan(req, [&](absl::StatusOr<v1::RoutePlan> p) { out = std::move(p); });
    return out;
  }

  void Fail(const std::string& conn, int status, int64_t hint = 0) {
    v1::Outcome o;
    o.mutable_candidate()->set_provider("local");
    o.mutable_candidate()->set_connection_id(conn);
    o.set_http_status(status);
    o.set_retry_after_ms(hint);
    router_->Report(o);
  }

  int64_t now_ = 1'000'000;
  ConfigPtr config_;
  RouterPtr router_;
};

TEST_F(LocalRouterTest, PrefixSelectsProviderAndOrdersByPriority) {
  auto p = Plan("local/gpt-4o-mini");
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->candidates_size(), 2);  // the disabled connection is skipped
  EXPECT_EQ(p->candidates(0).connection_id(), "local:a");
  EXPECT_EQ(p->candidates(1).connection_id(), "local:b");
  EXPECT_EQ(p->candidates(0).upstream_model(), "gpt-4o-mini");
  EXPECT_EQ(p->candidates(0).base_url(), "http://127.0.0.1:9/v1");
  EXPECT_EQ(p->candidates(0).format(), common::v1::FORMAT_OPENAI_CHAT);
}

TEST_F(LocalRouterTest, BareNames) {
  auto p = Plan("gpt-4o");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->candidates(0).provider(), "openai");
  p = Plan("m1");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->candidates(0).provider(), "local");
  p = Plan("shared");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("ambiguous_model"), std::string::npos);
  EXPECT_EQ(Plan("unknown-model").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(LocalRouterTest, Errors) {
  EXPECT_EQ(Plan("nope/x").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Plan("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Plan("local/../etc").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Plan("local/a\nb").status().code(), absl::StatusCode::kInvalidArgument);
  // A known provider without a connection.
  EXPECT_EQ(Plan("anthropic/claude-x").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(LocalRouterTest, CooldownSkipsThenExpiresWithBackoff) {
  Fail("local:a", 429);
  auto p = Plan("local/m");
  ASSERT_EQ(p->candidates_size(), 1);
  EXPECT_EQ(p->candidates(0).connection_id(), "local:b");
  now_ += 999;
  EXPECT_EQ(Plan("local/m")->candidates_size(), 1);
  now_ += 1;
  EXPECT_EQ(Plan("local/m")->candidates_size(), 2);
  // Second failure: twice as long.
  Fail("local:a", 503);
  now_ += 1999;
  EXPECT_EQ(Plan("local/m")->candidates_size(), 1);
  now_ += 1;
  EXPECT_EQ(Plan("local/m")->candidates_size(), 2);
  // A success resets the backoff.
  v1::Outcome ok;
  ok.mutable_candidate()->set_connection_id("local:a");
  ok.set_http_status(200);
  router_->Report(ok);
  Fail("local:a", 429);
  now_ += 1000;
  EXPECT_EQ(Plan("local/m")->candidates_size(), 2);
}

TEST_F(LocalRouterTest, RetryHintAndAllCooling) {
  Fail("local:a", 429, 5000);
  Fail("local:b", 500);
  auto p = Plan("local/m");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->candidates_size(), 0);
  EXPECT_EQ(p->retry_after_ms(), 1000);  // b comes back first
  now_ += 1000;
  EXPECT_EQ(Plan("local/m")->candidates(0).connection_id(), "local:b");
  now_ += 4000;
  EXPECT_EQ(Plan("local/m")->candidates(0).connection_id(), "local:a");
}

TEST_F(LocalRouterTest, ClientErrorsDoNotCool) {
  Fail("local:a", 400);
  Fail("local:a", 404);
  EXPECT_EQ(Plan("local/m")->candidates_size(), 2);
}

TEST_F(LocalRouterTest, ListModelsOnlyForConnectedProviders) {
  v1::ListModelsResponse out;
  router_->ListModels([&](absl::StatusOr<v1::ListModelsResponse> r) { out = *r; });
  std::vector<std::string> ids;
  for (const auto& m : out.models()) ids.push_back(m.id());
  EXPECT_NE(std::find(ids.begin(), ids.end(), "local/m1"), ids.end());
  EXPECT_NE(std::find(ids.begin(), ids.end(), "openai/gpt-4o"), ids.end());
  for (const auto& id : ids) EXPECT_NE(id.rfind("anthropic/", 0), 0u) << id;
}

}  // namespace
}  // namespace omniroute::router
