// LocalRouter over the catalog of the accounts service (a fake catalog source): nodes and
// connections added, disabled or blocked reach the next plan after a Tick.
#include "catalog.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <mutex>
#include <thread>

#include "local_router.h"
#include "memory_state_store.h"

namespace omniroute::router {
namespace {

using accounts::v1::Catalog;

constexpr char kCatalogFileConfig[] = R"(
nodes:
  - { id: filenode, format: openai, base_url: "http://127.0.0.1:9/v1", models: [f1] }
connections:
  - { provider: filenode, name: a, api_key: ka }
  - { provider: openai, name: o1, api_key: k1 }
combos:
  - { name: duo, models: [anthropic/claude-x, openai/gpt-4o] }
fallback_chains:
  - { name: prod, models: [anthropic/claude-y, openai/gpt-4o] }
)";

// A catalog source answering with `catalog` (not_modified when the caller holds its version),
// or with `failure`.
class FakeCatalogSource {
 public:
  void Set(Catalog catalog) {
    std::lock_guard<std::mutex> lock(mu_);
    catalog_ = std::move(catalog);
  }
  void Fail(absl::Status failure) {
    std::lock_guard<std::mutex> lock(mu_);
    failure_ = std::move(failure);
  }
  int calls() {
    std::lock_guard<std::mutex> lock(mu_);
    return calls_;
  }
  int64_t last_known_version() {
    std::lock_guard<std::mutex> lock(mu_);
    return last_known_;
  }

  void Ask(int64_t known_version, Callback<Catalog> done) {
    absl::StatusOr<Catalog> answer;
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++calls_;
      last_known_ = known_version;
      if (!failure_.ok()) {
        answer = failure_;
      } else if (known_version == catalog_.version()) {
        Catalog unchanged;
        unchanged.set_version(catalog_.version());
        unchanged.set_not_modified(true);
        answer = std::move(unchanged);
      } else {
        answer = catalog_;
      }
    }
    done(std::move(answer));
  }

 private:
  std::mutex mu_;
  Catalog catalog_;
  absl::Status failure_;
  int calls_ = 0;
  int64_t last_known_ = -1;
};

accounts::v1::Connection* AddConnection(Catalog& c, const std::string& provider,
                                        const std::string& name, int priority = 1) {
  accounts::v1::Connection* conn = c.add_connections();
  conn->set_id(provider + ":" + name);
  conn->set_provider(provider);
  conn->set_name(name);
  conn->set_priority(priority);
  conn->set_enabled(true);
  conn->set_status("active");
  return conn;
}

// What the accounts service lists for the file above, at `version`.
Catalog FileCatalog(int64_t version) {
  Catalog c;
  c.set_version(version);
  accounts::v1::Node* node = c.add_nodes();
  node->set_id("filenode");
  node->set_base_url("http://127.0.0.1:9/v1");
  node->set_format(common::v1::FORMAT_OPENAI_CHAT);
  node->add_models("f1");
  AddConnection(c, "filenode", "a");
  AddConnection(c, "openai", "o1");
  return c;
}

class CatalogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = ParseConfig(kCatalogFileConfig);
    ASSERT_TRUE(c.ok()) << c.status();
    config_ = std::make_shared<const Config>(*c);
    auto reg = BuildRegistry(*config_);
    ASSERT_TRUE(reg.ok()) << reg.status();
    registry_ = *reg;
    router_ = MakeRouter(
        [this](int64_t known, Callback<Catalog> done) { source_.Ask(known, std::move(done)); });
  }

  std::shared_ptr<LocalRouter> MakeRouter(
      std::function<void(int64_t, Callback<Catalog>)> catalog_source) {
    RouterOptions options;
    options.clock = [this] { return now_; };
    options.background = false;
    options.persist = false;
    options.catalog_source = std::move(catalog_source);
    return std::make_shared<LocalRouter>(config_, registry_, MakeMemoryStateStore(), options);
  }

  absl::StatusOr<v1::RoutePlan> Plan(const std::string& model) {
    v1::PlanRequest req;
    req.set_model(model);
    absl::StatusOr<v1::RoutePlan> out = absl::UnknownError("not called");
    router_->Plan(req, [&](absl::StatusOr<v1::RoutePlan> p) { out = std::move(p); });
    return out;
  }

  // The connection ids of a plan, in order; empty when it fails.
  std::vector<std::string> Ids(const std::string& model) {
    std::vector<std::string> out;
    auto p = Plan(model);
    if (!p.ok()) return out;
    for (const auto& c : p->candidates()) out.push_back(c.connection_id());
    return out;
  }

  std::vector<std::string> Models() {
    std::vector<std::string> ids;
    router_->ListModels([&](absl::StatusOr<v1::ListModelsResponse> r) {
      ASSERT_TRUE(r.ok());
      for (const auto& m : r->models()) ids.push_back(m.id());
    });
    return ids;
  }

  static bool Has(const std::vector<std::string>& list, const std::string& item) {
    return std::find(list.begin(), list.end(), item) != list.end();
  }

  v1::AdminResponse Admin(const std::string& method, const std::string& path,
                          const std::string& body = {}) {
    v1::AdminRequest req;
    req.set_method(method);
    req.set_path(path);
    req.set_body(body);
    v1::AdminResponse out;
    router_->Admin(req, [&](absl::StatusOr<v1::AdminResponse> r) { out = *r; });
    return out;
  }

  ConfigPtr config_;
  std::shared_ptr<const ProviderRegistry> registry_;
  FakeCatalogSource source_;
  std::shared_ptr<LocalRouter> router_;
  int64_t now_ = 1000000;
};

TEST_F(CatalogTest, WithoutACatalogTheFileServes) {
  EXPECT_EQ(Ids("filenode/f1"), std::vector<std::string>{"filenode:a"});
  EXPECT_TRUE(Plan("anthropic/claude-x").status().code() == absl::StatusCode::kNotFound);
  // Version 0 means the accounts service has nothing yet: the file stays.
  router_->Tick();
  EXPECT_EQ(source_.last_known_version(), 0);
  EXPECT_EQ(Ids("filenode/f1"), std::vector<std::string>{"filenode:a"});
}

TEST_F(CatalogTest, ConnectionAddedServesTheNextPlanAfterATick) {
  Catalog c = FileCatalog(1);
  AddConnection(c, "openai", "o2", /*priority=*/0);
  accounts::v1::Connection* oauth = AddConnection(c, "anthropic", "sub");
  oauth->set_oauth(true);
  source_.Set(c);
  EXPECT_EQ(Ids("openai/gpt-4o"), std::vector<std::string>{"openai:o1"});
  router_->Tick();
  EXPECT_EQ(Ids("openai/gpt-4o"), (std::vector<std::string>{"openai:o2", "openai:o1"}));
  auto p = Plan("anthropic/claude-x");
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->candidates_size(), 1);
  EXPECT_EQ(p->candidates(0).connection_id(), "anthropic:sub");
  EXPECT_TRUE(p->candidates(0).oauth());
  EXPECT_EQ(router_->table()->file().connections.size(), 4u);
  // The next Tick asks with the version in effect.
  router_->Tick();
  EXPECT_EQ(source_.last_known_version(), 1);
}

TEST_F(CatalogTest, TheCatalogReplacesTheFileConnections) {
  Catalog c = FileCatalog(1);
  c.mutable_connections()->RemoveLast();  // openai:o1 deleted through the admin API
  source_.Set(c);
  router_->Tick();
  EXPECT_EQ(Plan("openai/gpt-4o").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Ids("filenode/f1"), std::vector<std::string>{"filenode:a"});
}

TEST_F(CatalogTest, DisabledOrNotActiveConnectionsAreNoCandidates) {
  Catalog c = FileCatalog(1);
  AddConnection(c, "openai", "off", 0)->set_enabled(false);
  AddConnection(c, "openai", "login", 0)->set_status("needs_login");
  AddConnection(c, "openai", "expired", 0)->set_status("expired");
  source_.Set(c);
  router_->Tick();
  EXPECT_EQ(Ids("openai/gpt-4o"), std::vector<std::string>{"openai:o1"});
  // Disabling the last one through the admin API stops it on the next Tick.
  c.set_version(2);
  c.mutable_connections(1)->set_enabled(false);
  source_.Set(c);
  router_->Tick();
  EXPECT_EQ(Plan("openai/gpt-4o").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(CatalogTest, ConnectionWithDefaultModelsServesOnlyThose) {
  Catalog c = FileCatalog(1);
  accounts::v1::Connection* mini = AddConnection(c, "openai", "mini", 0);
  mini->add_models("gpt-4o-mini");
  mini->add_models("openai/gpt-mini-custom");  // a prefix is allowed
  source_.Set(c);
  router_->Tick();
  EXPECT_EQ(Ids("openai/gpt-4o-mini"), (std::vector<std::string>{"openai:mini", "openai:o1"}));
  EXPECT_EQ(Ids("openai/gpt-4o"), std::vector<std::string>{"openai:o1"});
  EXPECT_EQ(Ids("gpt-mini-custom"), (std::vector<std::string>{"openai:mini", "openai:o1"}));
  EXPECT_TRUE(Has(Models(), "openai/gpt-mini-custom"));
}

TEST_F(CatalogTest, NodeAddedRoutesItsPrefix) {
  Catalog c = FileCatalog(1);
  accounts::v1::Node* node = c.add_nodes();
  node->set_id("lab");
  node->set_name("Lab");
  node->add_prefixes("lb");
  node->set_format(common::v1::FORMAT_ANTHROPIC);
  node->set_base_url("http://127.0.0.1:7/v1/");
  node->add_models("lab-1");
  AddConnection(c, "lab", "k");
  source_.Set(c);
  EXPECT_EQ(Plan("lb/lab-1").status().code(), absl::StatusCode::kNotFound);
  router_->Tick();
  auto p = Plan("lb/lab-1");
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->candidates_size(), 1);
  EXPECT_EQ(p->candidates(0).provider(), "lab");
  EXPECT_EQ(p->candidates(0).connection_id(), "lab:k");
  EXPECT_EQ(p->candidates(0).base_url(), "http://127.0.0.1:7/v1");
  EXPECT_EQ(p->candidates(0).format(), common::v1::FORMAT_ANTHROPIC);
  EXPECT_EQ(p->candidates(0).auth_style(), common::v1::AUTH_STYLE_X_API_KEY);
  EXPECT_EQ(p->resolved_model(), "lab/lab-1");
  EXPECT_EQ(Ids("lab-1"), std::vector<std::string>{"lab:k"});  // a bare name of the node
  EXPECT_TRUE(Has(Models(), "lab/lab-1"));
  // The node removed again: its prefix is unknown.
  source_.Set(FileCatalog(2));
  router_->Tick();
  EXPECT_EQ(Plan("lb/lab-1").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(CatalogTest, CustomModelsAreListedAndResolve) {
  Catalog c = FileCatalog(1);
  accounts::v1::ProviderModel* m = c.add_models();
  m->set_provider("openai");
  m->set_model_id("gpt-house");
  m = c.add_models();
  m->set_provider("filenode");
  m->set_model_id("f2");
  source_.Set(c);
  EXPECT_FALSE(Has(Models(), "openai/gpt-house"));
  router_->Tick();
  const auto models = Models();
  EXPECT_TRUE(Has(models, "openai/gpt-house"));
  EXPECT_TRUE(Has(models, "openai/gpt-4o"));  // the built-in list stays
  EXPECT_TRUE(Has(models, "filenode/f2"));
  EXPECT_TRUE(Has(models, "filenode/f1"));
  EXPECT_EQ(Ids("f2"), std::vector<std::string>{"filenode:a"});
}

TEST_F(CatalogTest, BlockedProviderIsDeniedAndLeftOutOfCombosAndChains) {
  Catalog c = FileCatalog(1);
  AddConnection(c, "anthropic", "c1");
  source_.Set(c);
  router_->Tick();
  ASSERT_EQ(Ids("duo"), (std::vector<std::string>{"anthropic:c1", "openai:o1"}));
  const std::vector<std::string> before = Models();
  ASSERT_TRUE(std::any_of(before.begin(), before.end(),
                          [](const std::string& id) { return id.rfind("anthropic/", 0) == 0; }));

  c.set_version(2);
  c.mutable_access()->add_blocked_providers("anthropic");
  source_.Set(c);
  router_->Tick();
  auto p = Plan("anthropic/claude-x");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(p.status().message(), "provider 'anthropic' is blocked by the administrator");
  EXPECT_EQ(Plan("claude-opus-4").status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(Ids("duo"), std::vector<std::string>{"openai:o1"});
  // A fallback chain goes on to the providers that are not blocked.
  EXPECT_EQ(Ids("anthropic/claude-y"), std::vector<std::string>{"openai:o1"});
  EXPECT_EQ(Ids("prod"), std::vector<std::string>{"openai:o1"});
  for (const auto& id : Models()) EXPECT_NE(id.rfind("anthropic/", 0), 0u) << id;
  EXPECT_TRUE(Has(Models(), "duo"));

  // Unblocked again.
  c.set_version(3);
  c.mutable_access()->clear_blocked_providers();
  source_.Set(c);
  router_->Tick();
  EXPECT_EQ(Ids("anthropic/claude-x"), std::vector<std::string>{"anthropic:c1"});
}

TEST_F(CatalogTest, NotModifiedKeepsTheTable) {
  source_.Set(FileCatalog(5));
  router_->Tick();
  const std::shared_ptr<const RoutingTable> adopted = router_->table();
  router_->Tick();
  router_->Tick();
  EXPECT_EQ(source_.calls(), 3);
  EXPECT_EQ(source_.last_known_version(), 5);
  EXPECT_EQ(router_->table(), adopted);
  // An older catalog arriving late changes nothing either.
  source_.Set(FileCatalog(4));
  router_->Tick();
  EXPECT_EQ(router_->table(), adopted);
}

TEST_F(CatalogTest, FailingSourceKeepsTheLastTable) {
  Catalog c = FileCatalog(1);
  AddConnection(c, "anthropic", "c1");
  source_.Set(c);
  router_->Tick();
  const std::shared_ptr<const RoutingTable> adopted = router_->table();
  source_.Fail(absl::UnavailableError("accounts is down"));
  router_->Tick();
  router_->Tick();
  EXPECT_EQ(router_->table(), adopted);
  EXPECT_EQ(Ids("anthropic/claude-x"), std::vector<std::string>{"anthropic:c1"});
  // Back: the next change is adopted.
  source_.Fail(absl::OkStatus());
  c.set_version(2);
  AddConnection(c, "anthropic", "c2");
  source_.Set(c);
  router_->Tick();
  EXPECT_EQ(Ids("anthropic/claude-x"), (std::vector<std::string>{"anthropic:c1", "anthropic:c2"}));
}

TEST_F(CatalogTest, RuntimeRoutingChangesKeepTheCatalog) {
  Catalog c = FileCatalog(1);
  AddConnection(c, "anthropic", "c1");
  c.mutable_access()->add_blocked_providers("openai");
  source_.Set(c);
  router_->Tick();
  ASSERT_EQ(
      Admin("POST", "/api/combos", R"({"name":"mine","models":["anthropic/claude-x"]})").status(),
      201);
  EXPECT_EQ(Ids("mine"), std::vector<std::string>{"anthropic:c1"});
  EXPECT_EQ(Plan("openai/gpt-4o").status().code(), absl::StatusCode::kPermissionDenied);
  // And a catalog adopted later keeps the runtime combo.
  c.set_version(2);
  AddConnection(c, "anthropic", "c2");
  source_.Set(c);
  router_->Tick();
  EXPECT_EQ(Ids("mine"), (std::vector<std::string>{"anthropic:c1", "anthropic:c2"}));
}

TEST_F(CatalogTest, AnswersOnAnotherThreadAreAdoptedAndNotAskedTwice) {
  std::mutex mu;
  std::vector<Callback<Catalog>> pending;
  std::vector<int64_t> asked;
  router_ = MakeRouter([&](int64_t known, Callback<Catalog> done) {
    std::lock_guard<std::mutex> lock(mu);
    asked.push_back(known);
    pending.push_back(std::move(done));
  });
  router_->Tick();
  router_->Tick();  // the first request is still out
  {
    std::lock_guard<std::mutex> lock(mu);
    ASSERT_EQ(pending.size(), 1u);
  }
  // Plans do not wait for it.
  EXPECT_EQ(Ids("openai/gpt-4o"), std::vector<std::string>{"openai:o1"});
  Catalog c = FileCatalog(3);
  AddConnection(c, "openai", "o0", 0);
  std::thread answer([&] {
    std::lock_guard<std::mutex> lock(mu);
    pending[0](c);
  });
  answer.join();
  EXPECT_EQ(Ids("openai/gpt-4o"), (std::vector<std::string>{"openai:o0", "openai:o1"}));
  router_->Tick();
  std::lock_guard<std::mutex> lock(mu);
  ASSERT_EQ(asked.size(), 2u);
  EXPECT_EQ(asked[1], 3);
  // The router waits for the request still out when it is destroyed; answer it.
  pending[1](absl::UnavailableError("shutting down"));
  router_.reset();
}

TEST(ApplyCatalogTest, LeavesOutObjectsOfUnknownProvidersAndKeepsTheFileSettings) {
  auto file = ParseConfig("routing: { strategy: round-robin }\n");
  ASSERT_TRUE(file.ok());
  Catalog c;
  c.set_version(1);
  AddConnection(c, "nowhere", "x");
  AddConnection(c, "openai", "o1")->set_status("");  // unset status: active
  c.add_nodes()->set_id("no-url");
  accounts::v1::ProviderModel* m = c.add_models();
  m->set_provider("nowhere");
  m->set_model_id("m");
  c.mutable_access()->add_blocked_providers("gemini");
  auto applied = ApplyCatalog(*file, c);
  ASSERT_TRUE(applied.ok()) << applied.status();
  ASSERT_EQ(applied->config->connections.size(), 1u);
  EXPECT_EQ(applied->config->connections[0].id, "openai:o1");
  EXPECT_TRUE(applied->config->connections[0].enabled);
  EXPECT_TRUE(applied->config->connections[0].api_key.empty());
  EXPECT_TRUE(applied->config->nodes.empty());
  EXPECT_EQ(applied->config->routing.strategy, "round-robin");
  EXPECT_EQ(applied->blocked_providers, std::vector<std::string>{"gemini"});
}

// ---- Subscription quota (reported by the providers, stored by accounts) ----

accounts::v1::Connection* SetQuota(accounts::v1::Connection* c, double remaining,
                                   int64_t resets_at_ms) {
  c->set_quota_remaining_percent(remaining);
  c->set_quota_resets_at_ms(resets_at_ms);
  return c;
}

TEST_F(CatalogTest, SpentQuotaIsNoCandidateUntilItsReset) {
  Catalog c = FileCatalog(1);
  SetQuota(c.mutable_connections(1), 0, now_ + 60000);  // openai:o1: spent for a minute
  AddConnection(c, "openai", "o2");
  source_.Set(c);
  router_->Tick();
  EXPECT_EQ(Ids("openai/gpt-4o"), std::vector<std::string>{"openai:o2"});
  // 0.5 % left counts as spent; 1 % does not.
  c.set_version(2);
  SetQuota(c.mutable_connections(1), 0.5, now_ + 60000);
  source_.Set(c);
  router_->Tick();
  EXPECT_EQ(Ids("openai/gpt-4o"), std::vector<std::string>{"openai:o2"});
  c.set_version(3);
  SetQuota(c.mutable_connections(1), 1, now_ + 60000);
  source_.Set(c);
  router_->Tick();
  EXPECT_EQ(Ids("openai/gpt-4o").size(), 2u);
  // Once the window resets, the connection is back (the stored report is stale then).
  c.set_version(4);
  SetQuota(c.mutable_connections(1), 0, now_ + 60000);
  source_.Set(c);
  router_->Tick();
  now_ += 60001;
  EXPECT_EQ(Ids("openai/gpt-4o"), (std::vector<std::string>{"openai:o1", "openai:o2"}));
}

TEST_F(CatalogTest, AllQuotaSpentAnswersLikeACooldownUntilTheEarliestReset) {
  Catalog c = FileCatalog(1);
  SetQuota(c.mutable_connections(1), 0, now_ + 3600000);
  SetQuota(AddConnection(c, "openai", "o2"), 0, now_ + 20000);
  source_.Set(c);
  router_->Tick();
  auto p = Plan("openai/gpt-4o");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->candidates_size(), 0);
  EXPECT_EQ(p->reason(), v1::UNAVAILABLE_COOLDOWN);
  EXPECT_EQ(p->retry_after_ms(), 20000);
  EXPECT_NE(p->message().find("quota"), std::string::npos) << p->message();
  EXPECT_EQ(p->wait_ms(), 20000);  // within wait_for_cooldown's 30 s
  // A reset hours away: no waiting.
  c.set_version(2);
  SetQuota(c.mutable_connections(2), 0, now_ + 7200000);
  source_.Set(c);
  router_->Tick();
  p = Plan("openai/gpt-4o");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->retry_after_ms(), 3600000);
  EXPECT_EQ(p->wait_ms(), 0);
}

TEST_F(CatalogTest, FillFirstPrefersMoreQuotaLeftAmongEqualPriorities) {
  Catalog c = FileCatalog(1);
  SetQuota(c.mutable_connections(1), 20, now_ + 3600000);  // openai:o1
  SetQuota(AddConnection(c, "openai", "o2"), 80, now_ + 3600000);
  AddConnection(c, "openai", "o3");                          // no report: as good as full
  SetQuota(AddConnection(c, "openai", "o4"), 50, now_ - 1);  // reset since: as good as full
  SetQuota(AddConnection(c, "openai", "first", /*priority=*/0), 5, now_ + 3600000);
  SetQuota(AddConnection(c, "openai", "last", /*priority=*/2), 100, now_ + 3600000);
  source_.Set(c);
  router_->Tick();
  EXPECT_EQ(Ids("openai/gpt-4o"),
            (std::vector<std::string>{"openai:first", "openai:o3", "openai:o4", "openai:o2",
                                      "openai:o1", "openai:last"}));
}

TEST(QuotaStrategyTest, OtherStrategiesIgnoreQuota) {
  ConnectionSpec low;
  low.id = "p:low";
  low.quota_remaining_percent = 10;
  low.quota_resets_at_ms = 2000;
  ConnectionSpec high = low;
  high.id = "p:high";
  high.quota_remaining_percent = 90;
  const std::vector<AccountChoice> eligible = {{&low, {}}, {&high, {}}};
  const Random none = [] { return uint64_t{0}; };
  EXPECT_EQ(OrderAccounts("fill-first", eligible, 1, 0, 1000, none),
            (std::vector<size_t>{1, 0}));
  EXPECT_EQ(OrderAccounts("cost-optimized", eligible, 1, 0, 1000, none),
            (std::vector<size_t>{0, 1}));
  EXPECT_EQ(OrderAccounts("round-robin", eligible, 1, 1, 1000, none),
            (std::vector<size_t>{0, 1}));
  EXPECT_EQ(OrderAccounts("least-used", eligible, 1, 0, 1000, none),
            (std::vector<size_t>{0, 1}));
}

}  // namespace
}  // namespace omniroute::router
