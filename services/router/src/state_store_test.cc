// The StateStore contract, run against the in-memory store and the Redis store alike.
#include "state_store.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "memory_state_store.h"
#include "redis_state_store.h"
#include "redis_test_server.h"

namespace omniroute::router {
namespace {

using namespace std::chrono_literals;
using testing::RedisServer;

int64_t RealNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class StateStoreTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (GetParam() == "redis") {
      if (!testing::RedisServerAvailable()) GTEST_SKIP() << "redis-server is not on PATH";
      server_ = std::make_unique<RedisServer>();
      ASSERT_TRUE(server_->Start());
    }
    store_ = MakeStore();
    // Redis keys expire in real time: start the injected clock at the real one.
    now_ = RealNowMs();
  }

  StateStorePtr MakeStore() {
    if (GetParam() == "memory") {
      if (!shared_memory_) shared_memory_ = MakeMemoryStateStore();
      return shared_memory_;
    }
    RedisStateStoreOptions options;
    options.reconnect_interval = 50ms;
    auto s = MakeRedisStateStore(server_->url(), options);
    EXPECT_TRUE(s.ok()) << s.status();
    return *s;
  }

  std::unique_ptr<RedisServer> server_;
  StateStorePtr shared_memory_;
  StateStorePtr store_;
  int64_t now_ = 0;
  CooldownPolicy policy_{.base_ms = 1000, .max_ms = 10000, .max_steps = 5};
};

TEST_P(StateStoreTest, CooldownBacksOffExponentiallyUpToTheCap) {
  for (int64_t want : {1000, 2000, 4000, 8000, 10000, 10000}) {
    EXPECT_EQ(store_->StartCooldown(CooldownScope::kConnection, "p:a", now_, policy_, 0),
              now_ + want);
  }
  const StateSnapshot s = store_->Read({.connections = {"p:a", "p:b"}}, now_);
  EXPECT_EQ(s.connections[0].cooldown_until_ms, now_ + 10000);
  EXPECT_EQ(s.connections[0].level, 6);
  EXPECT_EQ(s.connections[1].cooldown_until_ms, 0);
  // Past its end a cooldown no longer counts.
  EXPECT_EQ(store_->Read({.connections = {"p:a"}}, now_ + 10001).connections[0].cooldown_until_ms,
            0);
}

TEST_P(StateStoreTest, MaxStepsCapsTheLevelNotTheCount) {
  CooldownPolicy p{.base_ms = 100, .max_ms = 100000, .max_steps = 2};
  EXPECT_EQ(store_->StartCooldown(CooldownScope::kConnection, "c", now_, p, 0), now_ + 100);
  EXPECT_EQ(store_->StartCooldown(CooldownScope::kConnection, "c", now_, p, 0), now_ + 200);
  EXPECT_EQ(store_->StartCooldown(CooldownScope::kConnection, "c", now_, p, 0), now_ + 400);
  EXPECT_EQ(store_->StartCooldown(CooldownScope::kConnection, "c", now_, p, 0), now_ + 400);
}

TEST_P(StateStoreTest, HintWinsWhenLongerButIsCapped) {
  EXPECT_EQ(store_->StartCooldown(CooldownScope::kConnection, "a", now_, policy_, 5000),
            now_ + 5000);
  EXPECT_EQ(store_->StartCooldown(CooldownScope::kConnection, "b", now_, policy_, 500),
            now_ + 1000);
  EXPECT_EQ(store_->StartCooldown(CooldownScope::kConnection, "c", now_, policy_, 60000),
            now_ + 10000);
}

TEST_P(StateStoreTest, ClearForgetsCooldownAndLevel) {
  store_->StartCooldown(CooldownScope::kConnection, "c", now_, policy_, 0);
  store_->StartCooldown(CooldownScope::kConnection, "c", now_, policy_, 0);
  store_->ClearCooldown(CooldownScope::kConnection, "c");
  const StateSnapshot s = store_->Read({.connections = {"c"}}, now_);
  EXPECT_EQ(s.connections[0].cooldown_until_ms, 0);
  EXPECT_EQ(s.connections[0].level, 0);
  EXPECT_EQ(store_->StartCooldown(CooldownScope::kConnection, "c", now_, policy_, 0), now_ + 1000);
}

TEST_P(StateStoreTest, LockoutsAreSeparateFromConnectionCooldowns) {
  const std::string key = "p:p:a:model-x";
  CooldownPolicy lock{.base_ms = 120000, .max_ms = 1800000, .max_steps = 30};
  EXPECT_EQ(store_->StartCooldown(CooldownScope::kModel, key, now_, lock, 0), now_ + 120000);
  EXPECT_EQ(store_->StartCooldown(CooldownScope::kModel, key, now_, lock, 0), now_ + 240000);
  const StateSnapshot s =
      store_->Read({.connections = {"p:a"}, .lockouts = {key, "p:p:a:y"}}, now_);
  EXPECT_EQ(s.connections[0].cooldown_until_ms, 0);
  EXPECT_EQ(s.lockout_until_ms[0], now_ + 240000);
  EXPECT_EQ(s.lockout_until_ms[1], 0);
  const auto active = store_->ActiveCooldowns({"p:a"}, now_);
  ASSERT_EQ(active.size(), 1u);
  EXPECT_EQ(active[0].scope, CooldownScope::kModel);
  EXPECT_EQ(active[0].id, key);
  store_->ResetCooldowns({"p:a"});
  EXPECT_TRUE(store_->ActiveCooldowns({"p:a"}, now_).empty());
}

TEST_P(StateStoreTest, HoldDoesNotRaiseTheLevelNorShortenACooldown) {
  store_->HoldUntil("h", now_, now_ + 3000);
  StateSnapshot s = store_->Read({.connections = {"h"}}, now_);
  EXPECT_EQ(s.connections[0].cooldown_until_ms, now_ + 3000);
  EXPECT_EQ(s.connections[0].level, 0);
  store_->HoldUntil("h", now_, now_ + 1000);  // shorter: ignored
  EXPECT_EQ(store_->Read({.connections = {"h"}}, now_).connections[0].cooldown_until_ms,
            now_ + 3000);
  // A later failure starts at the base level, and never shortens the hold.
  EXPECT_EQ(store_->StartCooldown(CooldownScope::kConnection, "h", now_, policy_, 0), now_ + 3000);
}

TEST_P(StateStoreTest, CountersSessionsAndLastUse) {
  EXPECT_EQ(store_->Increment("rr:x", now_, 60000), 1);
  EXPECT_EQ(store_->Increment("rr:x", now_, 60000), 2);
  EXPECT_EQ(store_->Increment("rr:y", now_, 60000), 1);
  store_->SetSession("s1", "p:b", now_, 60000);
  store_->Touch("p:a", now_ - 5);
  const StateSnapshot s = store_->Read(
      {.connections = {"p:a", "p:b"}, .counters = {"rr:x", "rr:z"}, .session = "s1"}, now_);
  EXPECT_EQ(s.counters[0], 2);
  EXPECT_EQ(s.counters[1], 0);
  EXPECT_EQ(s.session_connection, "p:b");
  EXPECT_EQ(s.connections[0].last_used_ms, now_ - 5);
  EXPECT_EQ(s.connections[1].last_used_ms, 0);
  EXPECT_EQ(store_->Read({.session = "other"}, now_).session_connection, "");
}

TEST_P(StateStoreTest, BreakerOpensAtTheThresholdAndProbesOnce) {
  BreakerPolicy policy{.failure_threshold = 3, .reset_timeout_ms = 1000, .max_reset_multiplier = 4};
  EXPECT_EQ(store_->RecordFailure("p", now_, policy, false).state, BreakerState::kClosed);
  EXPECT_EQ(store_->RecordFailure("p", now_, policy, false).failures, 2);
  // A success resets the count.
  EXPECT_EQ(store_->RecordSuccess("p", now_, false).state, BreakerState::kClosed);
  EXPECT_EQ(store_->RecordFailure("p", now_, policy, false).failures, 1);
  store_->RecordFailure("p", now_, policy, false);
  const BreakerStatus open = store_->RecordFailure("p", now_, policy, false);
  EXPECT_EQ(open.state, BreakerState::kOpen);
  EXPECT_EQ(open.open_until_ms, now_ + 1000);
  EXPECT_EQ(open.trips, 1);
  // Late reports while open change nothing.
  EXPECT_EQ(store_->RecordFailure("p", now_, policy, false).open_until_ms, now_ + 1000);
  EXPECT_EQ(store_->RecordSuccess("p", now_, false).state, BreakerState::kOpen);

  EXPECT_FALSE(store_->TryProbe("p", now_ + 999, 5000));
  EXPECT_TRUE(store_->TryProbe("p", now_ + 1000, 5000));
  EXPECT_FALSE(store_->TryProbe("p", now_ + 1000, 5000));  // one probe at a time
  StateSnapshot s = store_->Read({.providers = {"p"}}, now_ + 1000);
  EXPECT_EQ(s.breakers[0].state, BreakerState::kHalfOpen);
  EXPECT_TRUE(s.breakers[0].probe_in_flight);
  // A non-probe failure (a request from before) does not decide.
  EXPECT_EQ(store_->RecordFailure("p", now_ + 1000, policy, false).state, BreakerState::kHalfOpen);

  // The probe fails: open again, timeout doubled.
  BreakerStatus again = store_->RecordFailure("p", now_ + 1000, policy, true);
  EXPECT_EQ(again.state, BreakerState::kOpen);
  EXPECT_EQ(again.trips, 2);
  EXPECT_EQ(again.open_until_ms, now_ + 1000 + 2000);
  EXPECT_TRUE(store_->TryProbe("p", now_ + 3000, 5000));
  again = store_->RecordFailure("p", now_ + 3000, policy, true);
  EXPECT_EQ(again.open_until_ms, now_ + 3000 + 4000);
  EXPECT_TRUE(store_->TryProbe("p", now_ + 7000, 5000));
  again = store_->RecordFailure("p", now_ + 7000, policy, true);
  EXPECT_EQ(again.open_until_ms, now_ + 7000 + 4000) << "capped at 4x";

  // The probe succeeds: closed, everything forgotten.
  EXPECT_TRUE(store_->TryProbe("p", now_ + 11000, 5000));
  EXPECT_EQ(store_->RecordSuccess("p", now_ + 11000, true).state, BreakerState::kClosed);
  s = store_->Read({.providers = {"p"}}, now_ + 11000);
  EXPECT_EQ(s.breakers[0].state, BreakerState::kClosed);
  EXPECT_EQ(s.breakers[0].trips, 0);
  EXPECT_EQ(s.breakers[0].failures, 0);
}

TEST_P(StateStoreTest, AnAbandonedProbeExpires) {
  BreakerPolicy policy{
      .failure_threshold = 1, .reset_timeout_ms = 1000, .max_reset_multiplier = 16};
  store_->RecordFailure("p", now_, policy, false);
  ASSERT_TRUE(store_->TryProbe("p", now_ + 1000, 100));
  EXPECT_FALSE(store_->TryProbe("p", now_ + 1050, 100));
  if (GetParam() == "redis") std::this_thread::sleep_for(150ms);  // Redis TTLs are real time
  EXPECT_TRUE(store_->TryProbe("p", now_ + 1150, 100));
}

TEST_P(StateStoreTest, ThresholdZeroNeverOpens) {
  BreakerPolicy policy{.failure_threshold = 0, .reset_timeout_ms = 1000, .max_reset_multiplier = 1};
  for (int i = 0; i < 50; ++i) store_->RecordFailure("p", now_, policy, false);
  EXPECT_EQ(store_->Read({.providers = {"p"}}, now_).breakers[0].state, BreakerState::kClosed);
}

TEST_P(StateStoreTest, ResetBreakersCloses) {
  BreakerPolicy policy{
      .failure_threshold = 1, .reset_timeout_ms = 100000, .max_reset_multiplier = 1};
  store_->RecordFailure("p", now_, policy, false);
  store_->RecordFailure("q", now_, policy, false);
  store_->ResetBreakers({"p"});
  const StateSnapshot s = store_->Read({.providers = {"p", "q"}}, now_);
  EXPECT_EQ(s.breakers[0].state, BreakerState::kClosed);
  EXPECT_EQ(s.breakers[1].state, BreakerState::kOpen);
}

TEST_P(StateStoreTest, SlotsLimitConcurrencyAndExpire) {
  PacingPolicy p{.max_concurrent = 2, .lease_ttl_ms = 5000};
  EXPECT_TRUE(store_->AcquireSlot("c", "l1", now_, p).granted);
  EXPECT_TRUE(store_->AcquireSlot("c", "l2", now_, p).granted);
  SlotGrant full = store_->AcquireSlot("c", "l3", now_, p);
  EXPECT_FALSE(full.granted);
  EXPECT_GT(full.retry_at_ms, now_);
  EXPECT_LE(full.retry_at_ms, now_ + 1000);
  store_->ReleaseSlot("c", "l1");
  EXPECT_TRUE(store_->AcquireSlot("c", "l3", now_, p).granted);
  // Leases of an edge that never reported expire.
  EXPECT_FALSE(store_->AcquireSlot("c", "l4", now_ + 4999, p).granted);
  EXPECT_TRUE(store_->AcquireSlot("c", "l4", now_ + 5000, p).granted);
}

TEST_P(StateStoreTest, RequestsPerMinuteAndMinimumGap) {
  PacingPolicy rpm{.rpm = 3};
  for (int i = 0; i < 3; ++i) {
    EXPECT_TRUE(store_->AcquireSlot("r", absl::StrCat("x", i), now_ + i, rpm).granted);
  }
  SlotGrant g = store_->AcquireSlot("r", "x3", now_ + 10, rpm);
  EXPECT_FALSE(g.granted);
  EXPECT_EQ(g.retry_at_ms, now_ + 60000);
  EXPECT_TRUE(store_->AcquireSlot("r", "x4", now_ + 60001, rpm).granted);

  PacingPolicy gap{.min_gap_ms = 200};
  EXPECT_TRUE(store_->AcquireSlot("g", "a", now_, gap).granted);
  g = store_->AcquireSlot("g", "b", now_ + 50, gap);
  EXPECT_FALSE(g.granted);
  EXPECT_EQ(g.retry_at_ms, now_ + 200);
  EXPECT_TRUE(store_->AcquireSlot("g", "b", now_ + 200, gap).granted);
}

TEST_P(StateStoreTest, ConcurrentReplicasNeverOversubscribeASlot) {
  // Separate store instances stand for separate replicas.
  std::vector<StateStorePtr> replicas;
  for (int i = 0; i < 4; ++i) replicas.push_back(MakeStore());
  PacingPolicy p{.max_concurrent = 3, .lease_ttl_ms = 60000};
  std::atomic<int> granted{0};
  std::atomic<int> probes{0};
  BreakerPolicy bp{.failure_threshold = 1, .reset_timeout_ms = 10, .max_reset_multiplier = 1};
  store_->RecordFailure("prov", now_, bp, false);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      StateStorePtr s = replicas[t % replicas.size()];
      for (int i = 0; i < 10; ++i) {
        if (s->AcquireSlot("busy", absl::StrCat(t, "-", i), now_, p).granted) ++granted;
        if (s->TryProbe("prov", now_ + 100, 60000)) ++probes;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(granted.load(), 3);
  EXPECT_EQ(probes.load(), 1);
}

TEST_P(StateStoreTest, LatencyStatsAndDocuments) {
  for (int i = 1; i <= 300; ++i) store_->RecordLatency("p", i);
  const std::vector<int64_t> lat = store_->Latencies("p");
  EXPECT_EQ(lat.size(), MemoryStateStore::kLatencySamples);
  EXPECT_EQ(lat.front(), 300);
  store_->AddStat("cooldowns_started", 2);
  store_->AddStat("cooldowns_started", 1);
  EXPECT_EQ(store_->Stats()["cooldowns_started"], 3);
  EXPECT_FALSE(store_->GetDocument("runtime").has_value());
  EXPECT_TRUE(store_->PutDocument("runtime", {5, "five"}));
  EXPECT_FALSE(store_->PutDocument("runtime", {4, "four"}));
  EXPECT_FALSE(store_->PutDocument("runtime", {5, "again"}));
  auto doc = MakeStore()->GetDocument("runtime");
  ASSERT_TRUE(doc.has_value());
  EXPECT_EQ(doc->version, 5);
  EXPECT_EQ(doc->body, "five");
}

TEST_P(StateStoreTest, ASuccessInOneGoDoesWhatItsPartsDo) {
  BreakerPolicy policy{.failure_threshold = 3, .reset_timeout_ms = 1000, .max_reset_multiplier = 4};
  store_->StartCooldown(CooldownScope::kConnection, "p:a", now_, policy_, 0);
  store_->StartCooldown(CooldownScope::kConnection, "p:a", now_, policy_, 0);
  store_->RecordFailure("p", now_, policy, false);
  store_->RecordFailure("p", now_, policy, false);
  SuccessRecord success{.connection_id = "p:a",
                        .provider = "p",
                        .latency_ms = 42,
                        .session = "s1",
                        .session_ttl_ms = 60000};
  BreakerStatus b = store_->RecordSuccessOutcome(success, now_);
  EXPECT_EQ(b.state, BreakerState::kClosed);
  EXPECT_EQ(b.failures, 0);
  StateSnapshot s =
      store_->Read({.connections = {"p:a"}, .providers = {"p"}, .session = "s1"}, now_);
  EXPECT_EQ(s.connections[0].cooldown_until_ms, 0);
  EXPECT_EQ(s.connections[0].level, 0);
  EXPECT_EQ(s.breakers[0].failures, 0);
  EXPECT_EQ(s.session_connection, "p:a");
  EXPECT_EQ(store_->Latencies("p"), (std::vector<int64_t>{42}));
  // A failure afterwards starts again from the base level.
  EXPECT_EQ(store_->StartCooldown(CooldownScope::kConnection, "p:a", now_, policy_, 0),
            now_ + 1000);

  // No latency, no session: neither is recorded. A probe's success closes its breaker.
  store_->RecordFailure("q", now_, policy, false);
  store_->RecordFailure("q", now_, policy, false);
  ASSERT_EQ(store_->RecordFailure("q", now_, policy, false).state, BreakerState::kOpen);
  ASSERT_TRUE(store_->TryProbe("q", now_ + 1000, 5000));
  b = store_->RecordSuccessOutcome({.connection_id = "q:x", .provider = "q", .probe = true},
                                   now_ + 1000);
  EXPECT_EQ(b.state, BreakerState::kClosed);
  s = store_->Read({.providers = {"q"}, .session = "s2"}, now_ + 1000);
  EXPECT_EQ(s.breakers[0].state, BreakerState::kClosed);
  EXPECT_EQ(s.session_connection, "");
  EXPECT_TRUE(store_->Latencies("q").empty());
}

TEST_P(StateStoreTest, SuccessesInOneGoAreRecordedInOrder) {
  BreakerPolicy policy{.failure_threshold = 3, .reset_timeout_ms = 1000, .max_reset_multiplier = 4};
  store_->StartCooldown(CooldownScope::kConnection, "p:a", now_, policy_, 0);
  store_->StartCooldown(CooldownScope::kConnection, "p:b", now_, policy_, 0);
  store_->RecordFailure("p", now_, policy, false);
  std::vector<SuccessRecord> successes;
  for (int i = 1; i <= 50; ++i) {
    successes.push_back({.connection_id = i % 2 ? "p:a" : "p:b",
                         .provider = "p",
                         .latency_ms = i,
                         .session = "s",
                         .session_ttl_ms = 60000});
  }
  const std::vector<BreakerStatus> b = store_->RecordSuccessOutcomes(successes, now_);
  ASSERT_EQ(b.size(), 50u);
  for (const BreakerStatus& s : b) EXPECT_EQ(s.state, BreakerState::kClosed);
  const StateSnapshot s =
      store_->Read({.connections = {"p:a", "p:b"}, .providers = {"p"}, .session = "s"}, now_);
  EXPECT_EQ(s.connections[0].cooldown_until_ms, 0);
  EXPECT_EQ(s.connections[1].cooldown_until_ms, 0);
  EXPECT_EQ(s.breakers[0].failures, 0);
  EXPECT_EQ(s.session_connection, "p:b");  // the last one pinned it
  const std::vector<int64_t> lat = store_->Latencies("p");
  ASSERT_EQ(lat.size(), 50u);
  EXPECT_EQ(lat.front(), 50);
  EXPECT_EQ(lat.back(), 1);
  EXPECT_TRUE(store_->RecordSuccessOutcomes({}, now_).empty());
}

INSTANTIATE_TEST_SUITE_P(Stores, StateStoreTest, ::testing::Values("memory", "redis"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace omniroute::router
