// LocalRouter over the in-memory store and over Redis, with an injected clock and random
// source: model resolution, combo and account strategies, sticky sessions, cooldowns,
// lockouts, the circuit breaker, pacing, health and the routing admin API.
#include "local_router.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <map>
#include <random>
#include <set>

#include "absl/strings/str_cat.h"
#include "redis_state_store.h"
#include "redis_test_server.h"

namespace omniroute::router {
namespace {

using namespace std::chrono_literals;
namespace json = boost::json;

constexpr char kConfig[] = R"(
routing: { strategy: fill-first, sticky_limit: 2, session_ttl_s: 60 }
resilience:
  cooldown: { base_ms: { api_key: 1000, oauth: 2000 }, max_ms: 8000, max_backoff_steps: { api_key: 5, oauth: 1 } }
  lockout: { base_ms: 10000, max_ms: 30000 }
  breaker: { failure_threshold: { api_key: 3, oauth: 2 }, reset_timeout_ms: { api_key: 5000, oauth: 7000 }, max_reset_multiplier: 4 }
  wait_for_cooldown: { enabled: true, max_wait_ms: 3000, max_retries: 3 }
nodes:
  - { id: local, format: openai, base_url: "http://127.0.0.1:9/v1", models: [m1, shared] }
  - { id: other, format: anthropic, base_url: "http://127.0.0.1:8/v1", models: [shared] }
  - { id: rr, format: openai, base_url: "http://127.0.0.1:7/v1", routing: { strategy: round-robin, sticky_limit: 1 } }
  - { id: paced, format: openai, base_url: "http://127.0.0.1:6/v1", queue: { max_concurrent: 1 } }
providers:
  - { id: openai, routing: { strategy: least-used } }
connections:
  - { provider: local, name: b, api_key: kb, priority: 2 }
  - { provider: local, name: a, api_key: ka, priority: 1 }
  - { provider: local, name: c, api_key: kc, priority: 3 }
  - { provider: local, name: off, api_key: ko, priority: 0, enabled: false }
  - { provider: other, name: x, api_key: kx }
  - { provider: openai, name: o1, api_key: k1, priority: 1 }
  - { provider: openai, name: o2, api_key: k2, priority: 2 }
  - { provider: rr, name: r1, api_key: k }
  - { provider: rr, name: r2, api_key: k }
  - { provider: rr, name: r3, api_key: k }
  - { provider: paced, name: p1, api_key: k, priority: 1 }
  - { provider: paced, name: p2, api_key: k, priority: 2 }
  - { provider: cc, name: sub, api_key: t }
combos:
  - { name: duo, models: [other/shared, local/m1] }
  - { name: rotate, strategy: round-robin, sticky_limit: 2, models: [local/m1, other/shared] }
  - { name: spread, strategy: weighted, models: [ { model: local/m1, weight: 3 }, { model: other/shared, weight: 1 }, { model: rr/z, weight: 0 } ] }
  - { name: cheap, strategy: cost-optimized, models: [ { model: local/m1, cost: 2 }, rr/z, { model: other/shared, cost: 1 } ] }
  - { name: unpriced, strategy: cost-optimized, models: [rr/z, local/m1] }
  - { name: fair, strategy: least-used, models: [local/m1, other/shared] }
  - { name: dice, strategy: random, models: [local/m1, other/shared, rr/z] }
  - { name: outer, models: [duo, rr/z] }
  - { name: l2, models: [outer] }
  - { name: l3, models: [l2] }
  - { name: acct-rr, routing: { strategy: round-robin, sticky_limit: 1 }, models: [local/m1] }
aliases:
  - { pattern: "fast", target: local/m1 }
  - { pattern: "claude-*", target: other/shared }
  - { pattern: "claude-sonnet-*", target: local/sonnet }
  - { pattern: "gpt-?o", target: rr/z }
  - { pattern: "team-*", target: duo }
fallback_chains:
  - { name: prod, models: [local/big, other/shared, rr/z] }
)";

int64_t RealNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class LocalRouterTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "redis") {
      if (!testing::RedisServerAvailable()) GTEST_SKIP() << "redis-server is not on PATH";
      server_ = std::make_unique<testing::RedisServer>();
      ASSERT_TRUE(server_->Start());
    }
    auto c = ParseConfig(kConfig);
    ASSERT_TRUE(c.ok()) << c.status();
    // As LoadConfig does: connections name their provider by its canonical id.
    auto pre = BuildRegistry(*c);
    ASSERT_TRUE(pre.ok()) << pre.status();
    for (auto& conn : c->connections) {
      conn.provider = (*pre)->Find(conn.provider)->id;
      conn.id = conn.provider + ":" + conn.name;
    }
    config_ = std::make_shared<const Config>(*c);
    auto reg = BuildRegistry(*config_);
    ASSERT_TRUE(reg.ok()) << reg.status();
    registry_ = *reg;
    // Redis keys expire in real time: start the injected clock at the real one.
    now_ = RealNowMs();
    router_ = MakeRouter();
  }

  StateStorePtr MakeStore() {
    if (GetParam() == "memory") return MakeMemoryStateStore();
    RedisStateStoreOptions options;
    options.reconnect_interval = 50ms;
    auto s = MakeRedisStateStore(server_->url(), options);
    EXPECT_TRUE(s.ok()) << s.status();
    return *s;
  }

  std::shared_ptr<LocalRouter> MakeRouter(std::string runtime_path = {}) {
    RouterOptions options;
    options.clock = [this] { return now_; };
    options.random = [this] { return rng_(); };
    options.background = false;
    options.persist = !runtime_path.empty();
    options.runtime_path = std::move(runtime_path);
    return std::make_shared<LocalRouter>(config_, registry_, MakeStore(), options);
  }

  absl::StatusOr<v1::RoutePlan> Plan(const std::string& model, const std::string& session = {},
                                     LocalRouter* router = nullptr) {
    v1::PlanRequest req;
    req.set_model(model);
    req.set_request_id(absl::StrCat("req-", ++request_seq_));
    req.set_session_id(session);
    absl::StatusOr<v1::RoutePlan> out = absl::UnknownError("not called");
    (router ? router : router_.get())->Plan(req, [&](absl::StatusOr<v1::RoutePlan> p) {
      out = std::move(p);
    });
    return out;
  }

  // The connection ids of a plan, in order ("local:a", ...).
  std::vector<std::string> Ids(const std::string& model, const std::string& session = {}) {
    auto p = Plan(model, session);
    EXPECT_TRUE(p.ok()) << model << ": " << p.status();
    std::vector<std::string> out;
    if (!p.ok()) return out;
    for (const auto& c : p->candidates()) out.push_back(c.connection_id());
    return out;
  }

  // provider/model of each candidate.
  std::vector<std::string> Targets(const v1::RoutePlan& p) {
    std::vector<std::string> out;
    for (const auto& c : p.candidates()) out.push_back(c.provider() + "/" + c.upstream_model());
    return out;
  }

  std::string First(const std::string& model, const std::string& session = {}) {
    auto ids = Ids(model, session);
    return ids.empty() ? "" : ids[0];
  }

  static v1::Candidate Cand(const std::string& connection, const std::string& model = "m") {
    v1::Candidate c;
    c.set_provider(connection.substr(0, connection.find(':')));
    c.set_connection_id(connection);
    c.set_upstream_model(model);
    return c;
  }

  void Report(const v1::Candidate& cand, int status, int64_t hint = 0, bool model_scoped = false,
              int64_t latency = 0) {
    v1::Outcome o;
    *o.mutable_candidate() = cand;
    o.set_http_status(status);
    o.set_network_error(status == 0);
    o.set_retry_after_ms(hint);
    o.set_model_scoped(model_scoped);
    o.set_latency_ms(latency);
    router_->Report(o);
  }
  void Fail(const std::string& connection, int status, int64_t hint = 0) {
    Report(Cand(connection), status, hint);
  }

  v1::AdminResponse Admin(const std::string& method, const std::string& path,
                          const std::string& body = {}, LocalRouter* router = nullptr) {
    v1::AdminRequest req;
    req.set_method(method);
    req.set_path(path);
    req.set_body(body);
    v1::AdminResponse out;
    (router ? router : router_.get())->Admin(req, [&](absl::StatusOr<v1::AdminResponse> r) {
      ASSERT_TRUE(r.ok());
      out = *r;
    });
    return out;
  }

  v1::HealthResponse Health() {
    v1::HealthResponse out;
    router_->Health(v1::HealthRequest(), [&](absl::StatusOr<v1::HealthResponse> r) { out = *r; });
    return out;
  }

  std::unique_ptr<testing::RedisServer> server_;
  ConfigPtr config_;
  std::shared_ptr<const ProviderRegistry> registry_;
  std::shared_ptr<LocalRouter> router_;
  int64_t now_ = 0;
  std::mt19937_64 rng_{42};
  int request_seq_ = 0;
};

// ---- model resolution ------------------------------------------------------------------

TEST_P(LocalRouterTest, PrefixSelectsProviderAndOrdersByPriority) {
  auto p = Plan("local/gpt-4o-mini");
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->candidates_size(), 3);  // the disabled connection is skipped
  EXPECT_EQ(p->candidates(0).connection_id(), "local:a");
  EXPECT_EQ(p->candidates(1).connection_id(), "local:b");
  EXPECT_EQ(p->candidates(2).connection_id(), "local:c");
  EXPECT_EQ(p->candidates(0).upstream_model(), "gpt-4o-mini");
  EXPECT_EQ(p->candidates(0).base_url(), "http://127.0.0.1:9/v1");
  EXPECT_EQ(p->candidates(0).format(), common::v1::FORMAT_OPENAI_CHAT);
  EXPECT_EQ(p->resolved_model(), "local/gpt-4o-mini");
}

TEST_P(LocalRouterTest, BareNames) {
  EXPECT_EQ(Plan("gpt-4.1")->candidates(0).provider(), "openai");  // listed by openai only
  EXPECT_EQ(Plan("o3-mini")->candidates(0).provider(), "openai");  // inferred by family
  EXPECT_EQ(Plan("o4-mini")->candidates(0).provider(), "openai");
  EXPECT_EQ(Plan("m1")->candidates(0).provider(), "local");  // a custom model
  auto p = Plan("shared");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(p.status().message().find("ambiguous_model"), std::string::npos);
  EXPECT_NE(p.status().message().find("local/shared"), std::string::npos);
  EXPECT_NE(p.status().message().find("other/shared"), std::string::npos);
  p = Plan("unknown-model");
  EXPECT_EQ(p.status().code(), absl::StatusCode::kNotFound);
  EXPECT_NE(p.status().message().find("/v1/models"), std::string::npos);
  // claude-* would infer anthropic, but an alias comes first.
  EXPECT_EQ(Plan("claude-opus")->candidates(0).provider(), "other");
}

TEST_P(LocalRouterTest, Errors) {
  EXPECT_EQ(Plan("nope/x").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Plan("").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Plan("local/../etc").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Plan("local/a\nb").status().code(), absl::StatusCode::kInvalidArgument);
  // A known provider without a connection.
  EXPECT_EQ(Plan("anthropic/claude-x").status().code(), absl::StatusCode::kNotFound);
}

TEST_P(LocalRouterTest, AliasesExactThenMostSpecificWildcard) {
  auto p = Plan("fast");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(Targets(*p)[0], "local/m1");
  EXPECT_EQ(Targets(*Plan("claude-sonnet-4"))[0], "local/sonnet");  // more literal characters
  EXPECT_EQ(Targets(*Plan("CLAUDE-Opus"))[0], "other/shared");      // case-insensitive
  EXPECT_EQ(Targets(*Plan("gpt-4o"))[0], "rr/z");                   // ? is one character
  EXPECT_EQ(Targets(*Plan("gpt-40o"))[0], "openai/gpt-40o");        // no match: inference
  // An alias may name a combo.
  EXPECT_EQ(Targets(*Plan("team-red")),
            (std::vector<std::string>{"other/shared", "local/m1", "local/m1", "local/m1"}));
}

TEST_P(LocalRouterTest, GlobMatching) {
  EXPECT_TRUE(GlobMatch("a*b?c", "AxxxbYc"));
  EXPECT_TRUE(GlobMatch("*", ""));
  EXPECT_FALSE(GlobMatch("a?", "a"));
  EXPECT_TRUE(GlobMatch("*-*-*", "a-b-c-d"));
  EXPECT_FALSE(GlobMatch("abc", "abcd"));
}

// ---- combos ----------------------------------------------------------------------------

TEST_P(LocalRouterTest, ComboIsOneFlatListModelsInOrderAccountsInTheirs) {
  auto p = Plan("duo");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(p->resolved_model(), "duo");
  std::vector<std::string> ids;
  for (const auto& c : p->candidates()) ids.push_back(c.connection_id());
  EXPECT_EQ(ids, (std::vector<std::string>{"other:x", "local:a", "local:b", "local:c"}));
  EXPECT_EQ(p->candidates(0).format(), common::v1::FORMAT_ANTHROPIC);
  EXPECT_EQ(p->candidates(1).upstream_model(), "m1");
}

TEST_P(LocalRouterTest, NestedCombosAreBoundedAtThreeLevels) {
  auto p = Plan("l2");  // l2 → outer → duo: three levels
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(Targets(*p)[0], "other/shared");
  EXPECT_EQ(Targets(*p).back(), "rr/z");
  p = Plan("l3");  // l3 → l2 → outer → duo: duo is one level too deep and left out
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(Targets(*p), (std::vector<std::string>{"rr/z", "rr/z", "rr/z"}));
  // Through the admin API such a combo is refused.
  v1::AdminResponse r = Admin("POST", "/api/combos", R"({"name":"deep","models":["l2"]})");
  EXPECT_EQ(r.status(), 400) << r.body();
  r = Admin("POST", "/api/combos", R"({"name":"ok3","models":["outer"]})");
  EXPECT_EQ(r.status(), 201) << r.body();
}

TEST_P(LocalRouterTest, ComboRoundRobinRotatesAfterItsStickyLimit) {
  std::vector<std::string> firsts;
  for (int i = 0; i < 6; ++i) firsts.push_back(Targets(*Plan("rotate"))[0]);
  EXPECT_EQ(firsts, (std::vector<std::string>{"local/m1", "local/m1", "other/shared",
                                              "other/shared", "local/m1", "local/m1"}));
}

TEST_P(LocalRouterTest, ComboWeightedDrawsByWeightZeroWeightLast) {
  std::map<std::string, int> first;
  for (int i = 0; i < 2000; ++i) {
    auto p = Plan("spread");
    ASSERT_TRUE(p.ok());
    const auto t = Targets(*p);
    ++first[t[0]];
    ASSERT_EQ(t.back(), "rr/z");
  }
  EXPECT_EQ(first["rr/z"], 0);
  EXPECT_NEAR(first["local/m1"] / 2000.0, 0.75, 0.05);
  EXPECT_NEAR(first["other/shared"] / 2000.0, 0.25, 0.05);
}

TEST_P(LocalRouterTest, ComboRandomShufflesEveryModelToTheFront) {
  std::map<std::string, int> first;
  for (int i = 0; i < 300; ++i) {
    auto t = Targets(*Plan("dice"));
    std::set<std::string> distinct(t.begin(), t.end());
    ASSERT_EQ(distinct.size(), 3u);
    ++first[t[0]];
  }
  EXPECT_EQ(first.size(), 3u);
  for (const auto& [k, n] : first) EXPECT_GT(n, 50) << k;
}

TEST_P(LocalRouterTest, ComboLeastUsedPrefersTheModelWithFewerRecentRequests) {
  EXPECT_EQ(Targets(*Plan("fair"))[0], "local/m1");  // tie: configured order
  EXPECT_EQ(Targets(*Plan("fair"))[0], "other/shared");
  EXPECT_EQ(Targets(*Plan("fair"))[0], "local/m1");
  EXPECT_EQ(Targets(*Plan("fair"))[0], "other/shared");
  // Requests that start with m1 elsewhere count too.
  ASSERT_TRUE(Plan("fair").ok());  // m1 (2 vs 2 → m1)
  EXPECT_EQ(Targets(*Plan("fair"))[0], "other/shared");
}

TEST_P(LocalRouterTest, ComboCostOptimizedCheapestFirstUnpricedLast) {
  auto t = Targets(*Plan("cheap"));
  EXPECT_EQ(t[0], "other/shared");
  EXPECT_EQ(t[1], "local/m1");
  EXPECT_EQ(t.back(), "rr/z");
  // No cost at all: priority order.
  EXPECT_EQ(Targets(*Plan("unpriced"))[0], "rr/z");
}

// ---- account strategies ----------------------------------------------------------------

TEST_P(LocalRouterTest, FillFirstAndCostOptimizedFollowPriority) {
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(Ids("local/m"), (std::vector<std::string>{"local:a", "local:b", "local:c"}));
  }
  ASSERT_EQ(Admin("PUT", "/api/settings/routing", R"({"strategy":"cost-optimized"})").status(),
            200);
  EXPECT_EQ(Ids("local/m"), (std::vector<std::string>{"local:a", "local:b", "local:c"}));
}

TEST_P(LocalRouterTest, RoundRobinStaysForTheStickyLimitThenMovesOn) {
  ASSERT_EQ(Admin("PUT", "/api/settings/routing", R"({"strategy":"round-robin"})").status(), 200);
  std::vector<std::string> firsts;
  for (int i = 0; i < 7; ++i) firsts.push_back(First("local/m"));
  EXPECT_EQ(firsts, (std::vector<std::string>{"local:a", "local:a", "local:b", "local:b", "local:c",
                                              "local:c", "local:a"}));
  // The rest of the plan follows the rotation.
  EXPECT_EQ(Ids("local/m"), (std::vector<std::string>{"local:a", "local:b", "local:c"}));
}

TEST_P(LocalRouterTest, ProviderOverrideRoundRobinSpreadsEvenly) {
  std::map<std::string, int> count;
  for (int i = 0; i < 30; ++i) ++count[First("rr/z")];
  EXPECT_EQ(count, (std::map<std::string, int>{{"rr:r1", 10}, {"rr:r2", 10}, {"rr:r3", 10}}));
}

TEST_P(LocalRouterTest, ComboOverridesTheAccountStrategy) {
  std::vector<std::string> firsts;
  for (int i = 0; i < 4; ++i) firsts.push_back(First("acct-rr"));
  EXPECT_EQ(firsts, (std::vector<std::string>{"local:a", "local:b", "local:c", "local:a"}));
  EXPECT_EQ(First("local/m1"), "local:a");  // outside the combo: fill-first
}

TEST_P(LocalRouterTest, LeastUsedTakesTheOldestLastUse) {
  // openai's override is least-used.
  EXPECT_EQ(First("openai/gpt-4o"), "openai:o1");  // neither used: priority
  now_ += 10;
  EXPECT_EQ(First("openai/gpt-4o"), "openai:o2");
  now_ += 10;
  EXPECT_EQ(First("openai/gpt-4o"), "openai:o1");
  now_ += 10;
  EXPECT_EQ(First("openai/gpt-4o"), "openai:o2");
}

TEST_P(LocalRouterTest, PowerOfTwoChoicesKeepsTheHealthierOfTwo) {
  ASSERT_EQ(
      Admin("PUT", "/api/providers/local/routing", R"({"routing":{"strategy":"p2c"}})").status(),
      200);
  // local:a failed recently: its backoff level outlives its cooldown.
  Fail("local:a", 503);
  now_ += 1000;
  std::map<std::string, int> first;
  for (int i = 0; i < 200; ++i) {
    auto ids = Ids("local/m");
    ASSERT_EQ(ids.size(), 3u);
    ++first[ids[0]];
    now_ += 100;
  }
  // a is first only when the two drawn are... never: any pair with a puts the other first.
  EXPECT_EQ(first["local:a"], 0);
  EXPECT_GT(first["local:b"], 40);
  EXPECT_GT(first["local:c"], 40);
}

TEST_P(LocalRouterTest, RandomShufflesAccounts) {
  ASSERT_EQ(Admin("PUT", "/api/settings/routing", R"({"strategy":"random"})").status(), 200);
  std::map<std::string, int> first;
  for (int i = 0; i < 300; ++i) {
    auto ids = Ids("local/m");
    ASSERT_EQ(ids.size(), 3u);
    ++first[ids[0]];
  }
  for (const char* id : {"local:a", "local:b", "local:c"}) EXPECT_GT(first[id], 50) << id;
}

// ---- sticky sessions -------------------------------------------------------------------

TEST_P(LocalRouterTest, StickySessionPinsTheAccountThatServed) {
  auto p = Plan("local/m", "sess-1");
  ASSERT_EQ(p->candidates(0).connection_id(), "local:a");
  EXPECT_EQ(p->candidates(1).session_id(), "sess-1");
  // a failed, b served: the session is pinned to b.
  Report(p->candidates(0), 429);
  Report(p->candidates(1), 200);
  now_ += 1000;  // a is back
  EXPECT_EQ(First("local/m"), "local:a");
  EXPECT_EQ(First("local/m", "sess-1"), "local:b");
  EXPECT_EQ(First("local/m", "sess-2"), "local:a");
  // A pinned account that is cooling down is skipped.
  Fail("local:b", 503);
  EXPECT_EQ(First("local/m", "sess-1"), "local:a");
  now_ += 2000;
  EXPECT_EQ(First("local/m", "sess-1"), "local:b");
  // The pin expires after session_ttl_s (60 s).
  now_ += 60000;
  EXPECT_EQ(First("local/m", "sess-1"), "local:a");
}

// ---- cooldowns and lockouts ------------------------------------------------------------

TEST_P(LocalRouterTest, CooldownSkipsThenExpiresWithBackoff) {
  Fail("local:a", 429);
  EXPECT_EQ(Ids("local/m"), (std::vector<std::string>{"local:b", "local:c"}));
  now_ += 999;
  EXPECT_EQ(Ids("local/m").size(), 2u);
  now_ += 1;
  EXPECT_EQ(Ids("local/m").size(), 3u);
  // Second failure: twice as long.
  Fail("local:a", 503);
  now_ += 1999;
  EXPECT_EQ(Ids("local/m").size(), 2u);
  now_ += 1;
  EXPECT_EQ(Ids("local/m").size(), 3u);
  // A success resets the backoff.
  Report(Cand("local:a"), 200);
  Fail("local:a", 408);
  now_ += 1000;
  EXPECT_EQ(Ids("local/m").size(), 3u);
}

TEST_P(LocalRouterTest, RetryHintAndAllCoolingAsksToWait) {
  Fail("local:a", 429, 2500);
  Fail("local:b", 500);
  Fail("local:c", 0);
  auto p = Plan("local/m");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->candidates_size(), 0);
  EXPECT_EQ(p->reason(), v1::UNAVAILABLE_COOLDOWN);
  EXPECT_EQ(p->retry_after_ms(), 1000);  // b and c come back first
  EXPECT_EQ(p->wait_ms(), 1000);
  EXPECT_EQ(p->max_wait_retries(), 3);
  EXPECT_NE(p->message().find("cooling down"), std::string::npos);
  now_ += 1000;
  EXPECT_EQ(First("local/m"), "local:b");
  now_ += 1500;
  EXPECT_EQ(First("local/m"), "local:a");
  // Longer than max_wait_ms (3 s): no wait, an answer.
  Fail("local:a", 429, 7000);
  Fail("local:b", 429, 7000);
  Fail("local:c", 429, 7000);
  p = Plan("local/m");
  EXPECT_EQ(p->retry_after_ms(), 7000);
  EXPECT_EQ(p->wait_ms(), 0);
}

TEST_P(LocalRouterTest, UpstreamHintsCanBeIgnored) {
  ASSERT_EQ(
      Admin("PUT", "/api/settings/resilience", R"({"cooldown":{"use_upstream_retry_hints":false}})")
          .status(),
      200);
  Fail("local:a", 429, 5000);
  now_ += 1000;
  EXPECT_EQ(First("local/m"), "local:a");
}

TEST_P(LocalRouterTest, CooldownBaseAndStepsPerAuthType) {
  // cc is an OAuth provider: base 2000, at most one backoff step.
  for (int64_t want : {2000, 4000, 4000}) {
    Fail("claude-code:sub", 429);
    auto p = Plan("cc/claude-opus-4-7");
    ASSERT_TRUE(p.ok());
    EXPECT_EQ(p->retry_after_ms(), want);
    now_ += want;
    Report(Cand("claude-code:sub"), 400);  // neither success nor failure: level kept
  }
}

TEST_P(LocalRouterTest, WhichStatusesCoolAConnection) {
  Fail("local:a", 400);  // the client's fault
  EXPECT_EQ(Ids("local/m").size(), 3u);
  Fail("local:a", 401);  // API key: cools
  EXPECT_EQ(Ids("local/m").size(), 2u);
  now_ += 1000;
  Fail("local:b", 402);
  Fail("local:c", 403);
  EXPECT_EQ(Ids("local/m"), (std::vector<std::string>{"local:a"}));
  // OAuth 401: a token refresh, not a cooldown.
  Fail("claude-code:sub", 401);
  EXPECT_EQ(Plan("cc/claude-opus-4-7")->candidates_size(), 1);
}

TEST_P(LocalRouterTest, ModelLockoutsAfterA404OrAModelSpecific429) {
  Report(Cand("local:a", "huge"), 404);
  EXPECT_EQ(Ids("local/huge"), (std::vector<std::string>{"local:b", "local:c"}));
  EXPECT_EQ(Ids("local/small").size(), 3u);  // the connection itself is fine
  Report(Cand("local:b", "huge"), 429, 0, /*model_scoped=*/true);
  EXPECT_EQ(Ids("local/huge"), (std::vector<std::string>{"local:c"}));
  Report(Cand("local:c", "huge"), 429);  // a connection's own 429: cooldown
  auto p = Plan("local/huge");
  EXPECT_EQ(p->candidates_size(), 0);
  EXPECT_EQ(p->reason(), v1::UNAVAILABLE_COOLDOWN);
  now_ += 1000;
  p = Plan("local/huge");
  ASSERT_EQ(p->candidates_size(), 1);
  EXPECT_EQ(p->candidates(0).connection_id(), "local:c");
  Report(Cand("local:c", "huge"), 404);
  p = Plan("local/huge");
  EXPECT_EQ(p->reason(), v1::UNAVAILABLE_LOCKOUT);
  EXPECT_EQ(p->wait_ms(), 0);  // 10 s is beyond max_wait_ms
  now_ += 9000;                // a's and b's lockouts (10 s) end
  EXPECT_EQ(Ids("local/huge"), (std::vector<std::string>{"local:a", "local:b"}));
  // Again: doubled, then capped at 30 s.
  Report(Cand("local:a", "huge"), 404);
  now_ += 19999;
  EXPECT_EQ(First("local/huge"), "local:b");
  Report(Cand("local:a", "huge"), 404);
  auto h = Health();
  bool found = false;
  for (const auto& l : h.lockouts()) {
    if (l.key() == "local:local:a:huge") {
      found = true;
      EXPECT_EQ(l.remaining_ms(), 30000);
      EXPECT_EQ(l.connection_id(), "local:a");
      EXPECT_EQ(l.model(), "huge");
    }
  }
  EXPECT_TRUE(found);
}

TEST_P(LocalRouterTest, RateLimitHeadersHoldAConnectionUntilTheReset) {
  v1::Outcome o;
  *o.mutable_candidate() = Cand("local:a");
  o.set_http_status(200);
  o.mutable_rate_limit()->set_remaining_requests(0);
  o.mutable_rate_limit()->set_limit_requests(100);
  o.mutable_rate_limit()->set_reset_requests_ms(3000);
  o.mutable_rate_limit()->set_remaining_tokens(-1);
  o.mutable_rate_limit()->set_reset_tokens_ms(-1);
  router_->Report(o);
  EXPECT_EQ(First("local/m"), "local:b");
  now_ += 3000;
  EXPECT_EQ(First("local/m"), "local:a");
  // Not a failure: the next failure starts from the base cooldown.
  Fail("local:a", 429);
  EXPECT_EQ(Plan("local/m")->candidates(0).connection_id(), "local:b");
  now_ += 1000;
  EXPECT_EQ(First("local/m"), "local:a");
}

// ---- circuit breaker -------------------------------------------------------------------

TEST_P(LocalRouterTest, BreakerOpensHalfOpensWithOneProbeAndCloses) {
  // Connection 429s do not count.
  for (int i = 0; i < 10; ++i) Fail("local:a", 429);
  now_ += 10000;
  EXPECT_EQ(Ids("local/m").size(), 3u);
  // Three provider failures (threshold for API keys) open it.
  Fail("local:a", 503);
  Fail("local:b", 0);
  Fail("local:c", 504);
  now_ += 1000;  // the connections' own cooldowns are over; the breaker is not
  auto p = Plan("local/m");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->candidates_size(), 0);
  EXPECT_EQ(p->reason(), v1::UNAVAILABLE_BREAKER_OPEN);
  EXPECT_EQ(p->retry_after_ms(), 4000);
  EXPECT_EQ(p->wait_ms(), 0);
  ASSERT_EQ(p->open_breakers_size(), 1);
  EXPECT_EQ(p->open_breakers(0), "local");
  EXPECT_NE(p->message().find("circuit breaker"), std::string::npos);
  // A combo skips the provider and keeps the others.
  EXPECT_EQ(Ids("duo"), (std::vector<std::string>{"other:x"}));

  // After the reset timeout: exactly one probe.
  now_ += 4000;
  // Not first in a plan: no probe is spent on it.
  EXPECT_EQ(Ids("duo"), (std::vector<std::string>{"other:x"}));
  p = Plan("local/m");
  ASSERT_EQ(p->candidates_size(), 1);
  EXPECT_TRUE(p->candidates(0).probe());
  const v1::Candidate probe = p->candidates(0);
  p = Plan("local/m");  // a second request while the probe is out
  EXPECT_EQ(p->candidates_size(), 0);
  EXPECT_EQ(p->reason(), v1::UNAVAILABLE_BREAKER_OPEN);
  // The probe fails: open again for twice as long.
  Report(probe, 502);
  now_ += 9999;
  EXPECT_EQ(Plan("local/m")->candidates_size(), 0);
  now_ += 1;
  p = Plan("local/m");
  ASSERT_EQ(p->candidates_size(), 1);
  ASSERT_TRUE(p->candidates(0).probe());
  // The probe succeeds: closed.
  Report(p->candidates(0), 200, 0, false, 120);
  EXPECT_EQ(Ids("local/m").size(), 3u);
  const auto h = Health();
  for (const auto& ph : h.providers()) {
    if (ph.provider() == "local") {
      EXPECT_EQ(ph.state(), "closed");
      EXPECT_EQ(ph.samples(), 1);
      EXPECT_EQ(ph.p50_ms(), 120);
    }
  }
  EXPECT_GE(h.counters().at("breaker_opened"), 2);
  EXPECT_EQ(h.counters().at("breaker_closed"), 1);
}

TEST_P(LocalRouterTest, BreakerThresholdPerAuthTypeAndReset) {
  Fail("claude-code:sub", 500);
  now_ += 10000;
  Fail("claude-code:sub", 500);  // OAuth threshold: 2
  now_ += 10000;
  auto p = Plan("cc/claude-opus-4-7");
  // The OAuth reset timeout is 7 s; 10 s have passed, so this plan probes.
  EXPECT_TRUE(p->candidates_size() == 1 && p->candidates(0).probe());
  const auto h = Health();
  bool half_open = false;
  for (const auto& ph : h.providers()) {
    if (ph.provider() == "claude-code") half_open = ph.state() == "half_open" && ph.oauth();
  }
  EXPECT_TRUE(half_open);
  v1::AdminResponse r = Admin("POST", "/api/resilience/reset", R"({"provider":"cc"})");
  EXPECT_EQ(r.status(), 200) << r.body();
  p = Plan("cc/claude-opus-4-7");
  ASSERT_EQ(p->candidates_size(), 1);
  EXPECT_FALSE(p->candidates(0).probe());
}

// ---- fallback chains -------------------------------------------------------------------

TEST_P(LocalRouterTest, FallbackChainFollowsTheRequestedModel) {
  auto p = Plan("local/big");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(Targets(*p), (std::vector<std::string>{"local/big", "local/big", "local/big",
                                                   "other/shared", "rr/z", "rr/z", "rr/z"}));
  p = Plan("other/shared");
  EXPECT_EQ(Targets(*p), (std::vector<std::string>{"other/shared", "rr/z", "rr/z", "rr/z"}));
  // The chain's name is a model too.
  EXPECT_EQ(Targets(*Plan("prod")).size(), 7u);
  // When the model's own accounts all cool down, the chain still serves.
  Fail("local:a", 429);
  Fail("local:b", 429);
  Fail("local:c", 429);
  EXPECT_EQ(Targets(*Plan("local/big"))[0], "other/shared");
}

// ---- pacing ----------------------------------------------------------------------------

TEST_P(LocalRouterTest, PacingLeasesTheFirstCandidateOnly) {
  auto p1 = Plan("paced/m");
  ASSERT_EQ(p1->candidates_size(), 2);
  EXPECT_EQ(p1->candidates(0).connection_id(), "paced:p1");
  EXPECT_FALSE(p1->candidates(0).lease_id().empty());
  EXPECT_TRUE(p1->candidates(1).lease_id().empty());
  EXPECT_TRUE(p1->candidates(1).paced());
  // p1 is busy: the next plan starts at p2.
  auto p2 = Plan("paced/m");
  ASSERT_EQ(p2->candidates_size(), 1);
  EXPECT_EQ(p2->candidates(0).connection_id(), "paced:p2");
  EXPECT_FALSE(p2->candidates(0).lease_id().empty());
  // Both busy: nothing now, and a short wait.
  auto p3 = Plan("paced/m");
  EXPECT_EQ(p3->candidates_size(), 0);
  EXPECT_EQ(p3->reason(), v1::UNAVAILABLE_PACING);
  EXPECT_GT(p3->wait_ms(), 0);
  EXPECT_LE(p3->wait_ms(), 1000);
  // The report frees the slot.
  Report(p1->candidates(0), 200);
  auto p4 = Plan("paced/m");
  ASSERT_EQ(p4->candidates_size(), 2);
  EXPECT_EQ(p4->candidates(0).connection_id(), "paced:p1");
  EXPECT_TRUE(p4->candidates(1).paced());
  // A later candidate takes its slot through Acquire when the edge reaches it.
  Report(p2->candidates(0), 503);
  v1::AcquireRequest acq;
  *acq.mutable_candidate() = p1->candidates(1);
  v1::AcquireResponse got;
  router_->Acquire(acq, [&](absl::StatusOr<v1::AcquireResponse> r) { got = *r; });
  EXPECT_TRUE(got.granted());
  EXPECT_FALSE(got.lease_id().empty());
  router_->Acquire(acq, [&](absl::StatusOr<v1::AcquireResponse> r) { got = *r; });
  EXPECT_FALSE(got.granted());
  EXPECT_GT(got.retry_after_ms(), 0);
  // Unpaced candidates are granted without a lease.
  *acq.mutable_candidate() = Cand("local:a");
  router_->Acquire(acq, [&](absl::StatusOr<v1::AcquireResponse> r) { got = *r; });
  EXPECT_TRUE(got.granted());
  EXPECT_TRUE(got.lease_id().empty());
}

TEST_P(LocalRouterTest, RequestsPerMinuteAndMinimumGapPerConnection) {
  ASSERT_EQ(Admin("PUT", "/api/providers/local/routing", R"({"queue":{"rpm":2}})").status(), 200);
  EXPECT_EQ(First("local/m"), "local:a");
  EXPECT_EQ(First("local/m"), "local:a");
  EXPECT_EQ(First("local/m"), "local:b");  // a used its two requests this minute
  now_ += 60000;
  EXPECT_EQ(First("local/m"), "local:a");
  ASSERT_EQ(
      Admin("PUT", "/api/providers/local/routing", R"({"queue":{"min_gap_ms":500}})").status(),
      200);
  now_ += 60000;
  EXPECT_EQ(First("local/m"), "local:a");
  now_ += 100;
  EXPECT_EQ(First("local/m"), "local:b");
  now_ += 400;
  EXPECT_EQ(First("local/m"), "local:a");
}

// ---- cacheable plans -------------------------------------------------------------------

TEST_P(LocalRouterTest, PlansOfDeterministicStrategiesAreCacheable) {
  auto p = Plan("local/m");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->cache_ms(), kDefaultPlanCacheMs);
  EXPECT_NE(p->epoch().router_id(), 0u);
  EXPECT_GT(p->epoch().value(), 0);
  // Through a priority combo and an alias, too.
  EXPECT_EQ(Plan("duo")->cache_ms(), kDefaultPlanCacheMs);
  EXPECT_EQ(Plan("fast")->cache_ms(), kDefaultPlanCacheMs);
  // Unknown models are errors, never plans.
  EXPECT_FALSE(Plan("nobody/m").ok());
}

TEST_P(LocalRouterTest, NonDeterministicPlansAreNeverCacheable) {
  // Account strategies: round-robin (node), least-used (provider override), round-robin
  // through a combo's account override.
  EXPECT_EQ(Plan("rr/z")->cache_ms(), 0);
  EXPECT_EQ(Plan("openai/gpt-4o")->cache_ms(), 0);
  EXPECT_EQ(Plan("acct-rr")->cache_ms(), 0);
  // Combo strategies: round-robin, weighted, least-used, random; and any combo or chain
  // that reaches a round-robin provider.
  for (const char* model : {"rotate", "spread", "fair", "dice", "cheap", "prod"}) {
    auto p = Plan(model);
    ASSERT_TRUE(p.ok()) << model << ": " << p.status();
    EXPECT_GT(p->candidates_size(), 0) << model;
    EXPECT_EQ(p->cache_ms(), 0) << model;
  }
  // A session, pacing (a lease), a probe.
  EXPECT_EQ(Plan("local/m", "sess-1")->cache_ms(), 0);
  EXPECT_EQ(Plan("paced/m")->cache_ms(), 0);
  Fail("local:a", 503);
  Fail("local:b", 503);
  Fail("local:c", 503);
  now_ += 5000;
  auto probe = Plan("local/m");
  ASSERT_EQ(probe->candidates_size(), 1);
  ASSERT_TRUE(probe->candidates(0).probe());
  EXPECT_EQ(probe->cache_ms(), 0);
  // Nothing to cache in an empty plan.
  auto none = Plan("local/m");
  EXPECT_EQ(none->candidates_size(), 0);
  EXPECT_EQ(none->cache_ms(), 0);
}

TEST_P(LocalRouterTest, ACachedPlanNeverOutlastsWhatItLeftOut) {
  Fail("local:a", 429);  // cools down for 1 s
  now_ += 950;
  auto p = Plan("local/m");
  ASSERT_EQ(p->candidates_size(), 2);
  EXPECT_EQ(p->cache_ms(), 50);
  now_ += 50;
  p = Plan("local/m");
  EXPECT_EQ(p->candidates_size(), 3);
  EXPECT_EQ(p->cache_ms(), kDefaultPlanCacheMs);
}

TEST_P(LocalRouterTest, ThePlanEpochMovesOnWithEveryChangeThatMayAlterAPlan) {
  const auto epoch = [&] { return Plan("local/m")->epoch().value(); };
  int64_t e = epoch();
  // Plain successes and reads change nothing.
  Report(Cand("local:a"), 200, 0, false, 50);
  EXPECT_EQ(Admin("GET", "/api/routing").status(), 200);
  EXPECT_EQ(epoch(), e);
  // A failure, a 4xx, an admin change or reset, a reload do.
  Fail("local:a", 503);
  EXPECT_GT(epoch(), e);
  e = epoch();
  Fail("local:b", 400);
  EXPECT_GT(epoch(), e);
  e = epoch();
  const v1::AdminResponse reset = Admin("POST", "/api/resilience/reset", R"({"cooldowns":true})");
  EXPECT_EQ(reset.status(), 200) << reset.body();
  EXPECT_GT(reset.epoch().value(), e);
  EXPECT_EQ(reset.epoch().router_id(), Plan("local/m")->epoch().router_id());
  e = epoch();
  ASSERT_TRUE(router_->ReloadConfig(config_).ok());
  EXPECT_GT(epoch(), e);
  // The answer to a batch of reports says where the router stands after them.
  e = epoch();
  v1::OutcomeBatch batch;
  v1::Outcome* failed = batch.add_outcomes();
  *failed->mutable_candidate() = Cand("local:c");
  failed->set_http_status(500);
  v1::ReportBatchAck ack;
  router_->ReportBatch(batch, [&](absl::StatusOr<v1::ReportBatchAck> r) { ack = *r; });
  EXPECT_GT(ack.epoch().value(), e);
  EXPECT_EQ(ack.epoch().value(), epoch());
  EXPECT_EQ(Ids("local/m"), (std::vector<std::string>{"local:a", "local:b"}));
}

TEST_P(LocalRouterTest, ABatchOfReportsIsRecordedInOrder) {
  // a succeeds, fails, succeeds again: not cooling down at the end. b's success pins the
  // session; c's failure in the middle cools it down.
  v1::OutcomeBatch batch;
  auto add = [&](const std::string& connection, int status, const std::string& session = {}) {
    v1::Outcome* o = batch.add_outcomes();
    *o->mutable_candidate() = Cand(connection);
    o->mutable_candidate()->set_session_id(session);
    o->set_http_status(status);
    o->set_latency_ms(10);
  };
  add("local:a", 200);
  add("local:a", 429);
  add("local:b", 200, "sess-9");
  add("local:c", 503);
  add("local:a", 200);
  v1::ReportBatchAck ack;
  router_->ReportBatch(batch, [&](absl::StatusOr<v1::ReportBatchAck> r) { ack = *r; });
  EXPECT_EQ(ack.epoch().router_id(), Plan("local/m")->epoch().router_id());
  EXPECT_EQ(Ids("local/m"), (std::vector<std::string>{"local:a", "local:b"}));
  EXPECT_EQ(First("local/m", "sess-9"), "local:b");
  const auto h = Health();
  for (const auto& ph : h.providers()) {
    if (ph.provider() == "local") EXPECT_EQ(ph.samples(), 3);  // of the successes
  }
}

TEST_P(LocalRouterTest, PlanCachingCanBeTurnedOff) {
  RouterOptions options;
  options.clock = [this] { return now_; };
  options.background = false;
  options.persist = false;
  options.plan_cache_ms = 0;
  LocalRouter router(config_, registry_, MakeStore(), options);
  auto p = Plan("local/m", {}, &router);
  ASSERT_EQ(p->candidates_size(), 3);
  EXPECT_EQ(p->cache_ms(), 0);
}

// ---- health and admin ------------------------------------------------------------------

TEST_P(LocalRouterTest, HealthListsBreakersCooldownsLatencyAndCounters) {
  Fail("local:a", 429, 2000);
  for (int ms : {10, 20, 30, 40, 100}) Report(Cand("other:x"), 200, 0, false, ms);
  const auto h = Health();
  EXPECT_EQ(h.store(), GetParam());
  EXPECT_TRUE(h.store_healthy());
  ASSERT_EQ(h.cooldowns_size(), 1);
  EXPECT_EQ(h.cooldowns(0).connection_id(), "local:a");
  EXPECT_EQ(h.cooldowns(0).provider(), "local");
  EXPECT_EQ(h.cooldowns(0).remaining_ms(), 2000);
  EXPECT_EQ(h.cooldowns(0).level(), 1);
  bool other = false;
  for (const auto& p : h.providers()) {
    if (p.provider() != "other") continue;
    other = true;
    EXPECT_EQ(p.samples(), 5);
    EXPECT_EQ(p.p50_ms(), 30);
    EXPECT_EQ(p.p95_ms(), 100);
    EXPECT_EQ(p.p99_ms(), 100);
  }
  EXPECT_TRUE(other);
  EXPECT_EQ(h.counters().at("cooldowns_started"), 1);
  v1::AdminResponse r = Admin("GET", "/api/health");
  ASSERT_EQ(r.status(), 200);
  json::value v = json::parse(r.body());
  EXPECT_EQ(v.at("cooldowns").as_array().size(), 1u);
  EXPECT_EQ(v.at("state_store").at("kind").as_string(), GetParam());
}

TEST_P(LocalRouterTest, AdminCrudOfCombosWithFileObjectsReadOnly) {
  v1::AdminResponse r = Admin("GET", "/api/combos");
  ASSERT_EQ(r.status(), 200);
  EXPECT_NE(r.body().find(R"("name":"duo")"), std::string::npos);
  EXPECT_NE(r.body().find(R"("managed":"file")"), std::string::npos);
  EXPECT_EQ(Admin("PUT", "/api/combos/duo", R"({"models":["local/m1"]})").status(), 403);
  EXPECT_EQ(Admin("DELETE", "/api/combos/duo").status(), 403);
  EXPECT_EQ(Admin("POST", "/api/combos", R"({"name":"mine","models":["other/shared"]})").status(),
            201);
  EXPECT_EQ(Admin("POST", "/api/combos", R"({"name":"mine","models":["other/shared"]})").status(),
            409);
  EXPECT_EQ(Targets(*Plan("mine"))[0], "other/shared");
  r = Admin("PUT", "/api/combos/mine", R"({"strategy":"weighted","models":["local/m1"]})");
  EXPECT_EQ(r.status(), 200) << r.body();
  EXPECT_EQ(Targets(*Plan("mine"))[0], "local/m1");
  EXPECT_EQ(Admin("PUT", "/api/combos/mine", R"({"name":"other","models":["x/y"]})").status(), 400);
  EXPECT_EQ(Admin("PUT", "/api/combos/bad", R"({"strategy":"fastest","models":["x/y"]})").status(),
            400);
  EXPECT_EQ(Admin("GET", "/api/combos/mine").status(), 200);
  EXPECT_EQ(Admin("DELETE", "/api/combos/mine").status(), 200);
  EXPECT_EQ(Admin("GET", "/api/combos/mine").status(), 404);
  EXPECT_EQ(Plan("mine").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(Admin("GET", "/api/nothing").status(), 404);
  EXPECT_EQ(Admin("PATCH", "/api/combos").status(), 405);
}

TEST_P(LocalRouterTest, AdminAliasesChainsAndSettings) {
  EXPECT_EQ(Admin("PUT", "/api/aliases/my-%2A", R"({"target":"local/m1"})").status(), 201);
  EXPECT_EQ(Targets(*Plan("my-model"))[0], "local/m1");
  EXPECT_EQ(Admin("PUT", "/api/aliases/fast", R"({"target":"rr/z"})").status(), 403);
  EXPECT_EQ(Admin("DELETE", "/api/aliases/MY-*").status(), 200);  // patterns fold case
  EXPECT_EQ(Plan("my-model").status().code(), absl::StatusCode::kNotFound);

  EXPECT_EQ(
      Admin("POST", "/api/fallback-chains", R"({"name":"c2","models":["rr/first","other/shared"]})")
          .status(),
      201);
  EXPECT_EQ(Targets(*Plan("rr/first")).back(), "other/shared");

  v1::AdminResponse r = Admin("PUT", "/api/settings/routing", R"({"sticky_limit":0})");
  EXPECT_EQ(r.status(), 400) << r.body();
  r = Admin("PUT", "/api/settings/resilience", R"({"breaker":{"failure_threshold":1}})");
  ASSERT_EQ(r.status(), 200) << r.body();
  EXPECT_NE(r.body().find(R"("failure_threshold":{"api_key":1,"oauth":1})"), std::string::npos);
  Fail("other:x", 500);
  now_ += 1000;
  EXPECT_EQ(Plan("other/m9")->reason(), v1::UNAVAILABLE_BREAKER_OPEN);
  // Back to the file's values.
  EXPECT_EQ(Admin("DELETE", "/api/settings/resilience").status(), 200);
  r = Admin("GET", "/api/routing");
  ASSERT_EQ(r.status(), 200);
  json::value v = json::parse(r.body());
  EXPECT_EQ(v.at("resilience").at("breaker").at("failure_threshold").at("api_key").as_int64(), 3);
  EXPECT_GT(v.at("version").as_int64(), 0);
}

TEST_P(LocalRouterTest, RuntimeChangesPersistAndReachOtherReplicas) {
  char tmpl[] = "/tmp/omni-router-XXXXXX";
  const std::string dir = mkdtemp(tmpl);
  const std::string path = dir + "/router-runtime.json";
  auto a = MakeRouter(path);
  ASSERT_EQ(
      Admin("POST", "/api/combos", R"({"name":"kept","models":["local/m1"]})", a.get()).status(),
      201);
  ASSERT_EQ(
      Admin("PUT", "/api/settings/routing", R"({"strategy":"round-robin"})", a.get()).status(),
      200);
  // A restart reads the file.
  auto b = MakeRouter(path);
  EXPECT_TRUE(Plan("kept", {}, b.get()).ok());
  EXPECT_EQ(b->table()->routing().strategy, "round-robin");
  if (GetParam() == "redis") {
    // Another replica, with its own file, adopts the change through Redis.
    auto c = MakeRouter(dir + "/other.json");
    EXPECT_FALSE(Plan("kept", {}, c.get()).ok());
    c->Tick();
    EXPECT_TRUE(Plan("kept", {}, c.get()).ok());
    EXPECT_TRUE(std::filesystem::exists(dir + "/other.json"));
    // A change made on a replica that has not caught up yet builds on the newest one.
    auto d = MakeRouter(dir + "/third.json");
    now_ += 10;
    ASSERT_EQ(
        Admin("POST", "/api/combos", R"({"name":"from-d","models":["rr/z"]})", d.get()).status(),
        201);
    EXPECT_TRUE(Plan("kept", {}, d.get()).ok());
    a->Tick();
    EXPECT_TRUE(Plan("from-d", {}, a.get()).ok());
    EXPECT_TRUE(Plan("kept", {}, a.get()).ok());
  }
  std::filesystem::remove_all(dir);
}

TEST_P(LocalRouterTest, ListModelsOnlyForConnectedProvidersPlusCombos) {
  v1::ListModelsResponse out;
  router_->ListModels([&](absl::StatusOr<v1::ListModelsResponse> r) { out = *r; });
  std::vector<std::string> ids;
  for (const auto& m : out.models()) ids.push_back(m.id());
  EXPECT_NE(std::find(ids.begin(), ids.end(), "local/m1"), ids.end());
  EXPECT_NE(std::find(ids.begin(), ids.end(), "openai/gpt-4o"), ids.end());
  EXPECT_NE(std::find(ids.begin(), ids.end(), "duo"), ids.end());
  for (const auto& id : ids) EXPECT_NE(id.rfind("anthropic/", 0), 0u) << id;
}

// ---- config reload ---------------------------------------------------------------------

// kConfig with `from` replaced by `to`, loaded as LoadConfig would.
ConfigPtr EditedConfig(const std::string& from, const std::string& to) {
  std::string text = kConfig;
  const size_t at = text.find(from);
  EXPECT_NE(at, std::string::npos) << from;
  if (at != std::string::npos) text.replace(at, from.size(), to);
  auto c = ParseConfig(text);
  EXPECT_TRUE(c.ok()) << c.status();
  if (!c.ok()) return nullptr;
  auto reg = BuildRegistry(*c);
  EXPECT_TRUE(reg.ok()) << reg.status();
  for (auto& conn : c->connections) {
    conn.provider = (*reg)->Find(conn.provider)->id;
    conn.id = conn.provider + ":" + conn.name;
  }
  return std::make_shared<const Config>(*std::move(c));
}

TEST_P(LocalRouterTest, ReloadAddsFileObjectsAndKeepsRuntimeOnes) {
  ASSERT_EQ(Admin("POST", "/api/combos", R"({"name":"rt","models":["local/m1"]})").status(), 201);
  auto before = Plan("fresh");
  EXPECT_TRUE(!before.ok() || before->candidates_size() == 0);

  ConfigPtr next = EditedConfig("combos:\n", "combos:\n  - { name: fresh, models: [other/shared] }\n");
  ASSERT_NE(next, nullptr);
  ASSERT_TRUE(router_->ReloadConfig(next).ok());

  auto p = Plan("fresh");
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(Targets(*p), (std::vector<std::string>{"other/shared"}));
  p = Plan("rt");  // the admin API's combo is still on top
  ASSERT_TRUE(p.ok()) << p.status();
  EXPECT_EQ(Targets(*p)[0], "local/m1");
  // The file's objects stay marked as such; the runtime one as the API's.
  const std::string combos = Admin("GET", "/api/combos").body();
  EXPECT_NE(combos.find("fresh"), std::string::npos) << combos;
  EXPECT_NE(combos.find("rt"), std::string::npos) << combos;
}

TEST_P(LocalRouterTest, ReloadAddsAnAlias) {
  auto before = Plan("quick");
  EXPECT_TRUE(!before.ok() || before->candidates_size() == 0);
  ConfigPtr next =
      EditedConfig("aliases:\n", "aliases:\n  - { pattern: \"quick\", target: other/shared }\n");
  ASSERT_NE(next, nullptr);
  ASSERT_TRUE(router_->ReloadConfig(next).ok());
  EXPECT_EQ(First("quick"), "other:x");
}

TEST_P(LocalRouterTest, ReloadRemovesAConnectionFromTheCandidates) {
  EXPECT_EQ(Ids("local/m1"), (std::vector<std::string>{"local:a", "local:b", "local:c"}));
  ConfigPtr next = EditedConfig("  - { provider: local, name: a, api_key: ka, priority: 1 }\n", "");
  ASSERT_NE(next, nullptr);
  ASSERT_TRUE(router_->ReloadConfig(next).ok());
  EXPECT_EQ(Ids("local/m1"), (std::vector<std::string>{"local:b", "local:c"}));
  // And back.
  ASSERT_TRUE(router_->ReloadConfig(config_).ok());
  EXPECT_EQ(First("local/m1"), "local:a");
}

TEST_P(LocalRouterTest, ReloadOfNothingIsRefused) {
  EXPECT_FALSE(router_->ReloadConfig(nullptr).ok());
  EXPECT_EQ(First("local/m1"), "local:a");
}

INSTANTIATE_TEST_SUITE_P(Stores, LocalRouterTest, ::testing::Values("memory", "redis"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace omniroute::router
