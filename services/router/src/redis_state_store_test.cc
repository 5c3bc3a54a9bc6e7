#include "redis_state_store.h"

#include <fcntl.h>
#include <hiredis/hiredis.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "redis_test_server.h"

namespace omniroute::router {
namespace {

using namespace std::chrono_literals;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

using testing::RedisServer;

class RedisStateStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!testing::RedisServerAvailable()) {
      GTEST_SKIP() << "redis-server is not on PATH";
    }
    ASSERT_TRUE(server_.Start());
    options_.reconnect_interval = 100ms;
    store_ = MakeStore();
  }

  StateStorePtr MakeStore() {
    absl::StatusOr<StateStorePtr> store = MakeRedisStateStore(server_.url(), options_);
    EXPECT_TRUE(store.ok()) << store.status();
    return store.ok() ? *store : nullptr;
  }

  // A raw command with one key argument on a fresh connection.
  std::string Raw(const std::string& command, const std::string& key) {
    return server_.Run((command + " %b").c_str(), key);
  }

  int64_t CooldownUntil(const std::string& id, int64_t now) {
    return store_->Read({.connections = {id}}, now).connections[0].cooldown_until_ms;
  }

  RedisServer server_;
  RedisStateStoreOptions options_;
  StateStorePtr store_;
  CooldownPolicy policy_{.base_ms = 1000, .max_ms = 10000, .max_steps = 5};
};

TEST_F(RedisStateStoreTest, KeysAreNamespacedAndExpire) {
  const int64_t now = NowMs();
  EXPECT_TRUE(store_->Healthy());
  EXPECT_EQ(store_->Kind(), "redis");
  EXPECT_TRUE(store_->Shared());
  store_->StartCooldown(CooldownScope::kConnection, "k", now, policy_, 0);
  const int64_t cd_ttl = std::stoll(Raw("PTTL", "omni:router:cd:{k}"));
  EXPECT_GT(cd_ttl, 0);
  EXPECT_LE(cd_ttl, 1000);
  const int64_t lvl_ttl = std::stoll(Raw("PTTL", "omni:router:lvl:{k}"));
  EXPECT_GT(lvl_ttl, 1000);
  EXPECT_LE(lvl_ttl, 1000 + policy_.max_ms * 4);
  store_->SetSession("sess-1", "p:a", now, 5000);
  EXPECT_EQ(Raw("GET", "omni:router:sess:{sess-1}"), absl::StrCat("p:a|", now + 5000));
  const int64_t sess_ttl = std::stoll(Raw("PTTL", "omni:router:sess:{sess-1}"));
  EXPECT_GT(sess_ttl, 0);
  EXPECT_LE(sess_ttl, 5000);
  store_->Increment("rr:acct:p", now, 7000);
  EXPECT_EQ(Raw("GET", "omni:router:ctr:{rr:acct:p}"), "1");
  EXPECT_GT(std::stoll(Raw("PTTL", "omni:router:ctr:{rr:acct:p}")), 0);
  store_->RecordFailure("prov", now, {.failure_threshold = 1, .reset_timeout_ms = 1000}, false);
  EXPECT_EQ(Raw("GET", "omni:router:br:{prov}").substr(0, 4), "2|0|");
  EXPECT_GT(std::stoll(Raw("PTTL", "omni:router:br:{prov}")), 0);
  store_->AcquireSlot("p:a", "lease-1", now, {.max_concurrent = 1, .lease_ttl_ms = 9000});
  EXPECT_EQ(Raw("ZCARD", "omni:router:inflight:{p:a}"), "1");
  EXPECT_GT(std::stoll(Raw("PTTL", "omni:router:inflight:{p:a}")), 0);
  store_->ReleaseSlot("p:a", "lease-1");
  EXPECT_EQ(Raw("ZCARD", "omni:router:inflight:{p:a}"), "0");
}

TEST_F(RedisStateStoreTest, ReplicasShareState) {
  StateStorePtr other = MakeStore();
  const int64_t now = NowMs();
  const int64_t until =
      store_->StartCooldown(CooldownScope::kConnection, "shared", now, policy_, 0);
  EXPECT_EQ(other->Read({.connections = {"shared"}}, now).connections[0].cooldown_until_ms, until);
  EXPECT_EQ(other->StartCooldown(CooldownScope::kConnection, "shared", now, policy_, 0),
            now + 2000);
}

TEST_F(RedisStateStoreTest, ConcurrentFailuresEachRaiseTheLevel) {
  const int64_t now = NowMs();
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 25; ++i) {
        store_->StartCooldown(CooldownScope::kConnection, "busy", now, policy_, 0);
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(Raw("GET", "omni:router:lvl:{busy}"), "200");
  EXPECT_EQ(CooldownUntil("busy", now), now + 10000);
}

TEST_F(RedisStateStoreTest, FallsBackToLocalStateWhileRedisIsDownAndHandsItOver) {
  const int64_t now = NowMs();
  store_->StartCooldown(CooldownScope::kConnection, "before", now, policy_, 0);
  server_.Kill();

  // Routing goes on with process-local state.
  EXPECT_EQ(store_->StartCooldown(CooldownScope::kConnection, "down", now, policy_, 0), now + 1000);
  EXPECT_FALSE(store_->Healthy());
  EXPECT_EQ(store_->StartCooldown(CooldownScope::kConnection, "down", now, policy_, 0), now + 2000);
  EXPECT_EQ(CooldownUntil("down", now), now + 2000);
  store_->ClearCooldown(CooldownScope::kConnection, "down");
  EXPECT_EQ(CooldownUntil("down", now), 0);
  store_->StartCooldown(CooldownScope::kConnection, "kept", now, policy_, 0);
  store_->RecordFailure("prov", now, {.failure_threshold = 1, .reset_timeout_ms = 60000}, false);
  store_->SetSession("s", "p:b", now, 60000);
  EXPECT_GT(store_->Errors(), 0);
  StateSnapshot local = store_->Read({.providers = {"prov"}}, now);
  EXPECT_EQ(local.breakers[0].state, BreakerState::kOpen);

  ASSERT_TRUE(server_.Start());
  bool healthy = false;
  for (int i = 0; i < 50 && !healthy; ++i) {
    std::this_thread::sleep_for(20ms);
    healthy = store_->Healthy();
  }
  EXPECT_TRUE(healthy);
  // Back on Redis (a fresh server: nothing survived), and the outage's state handed over.
  store_->Maintain(now);
  StateStorePtr other = MakeStore();
  const StateSnapshot shared =
      other->Read({.connections = {"kept"}, .providers = {"prov"}, .session = "s"}, now);
  EXPECT_EQ(shared.connections[0].cooldown_until_ms, now + 1000);
  EXPECT_EQ(shared.breakers[0].state, BreakerState::kOpen);
  EXPECT_EQ(shared.session_connection, "p:b");
  EXPECT_EQ(store_->StartCooldown(CooldownScope::kConnection, "after", now, policy_, 0),
            now + 1000);
  EXPECT_EQ(Raw("GET", "omni:router:lvl:{after}"), "1");
}

TEST_F(RedisStateStoreTest, ReloadsTheScriptAfterAFlush) {
  const int64_t now = NowMs();
  store_->StartCooldown(CooldownScope::kConnection, "s", now, policy_, 0);
  server_.Run("SCRIPT FLUSH");
  EXPECT_EQ(store_->StartCooldown(CooldownScope::kConnection, "s", now, policy_, 0), now + 2000);
  EXPECT_TRUE(store_->Healthy());
}

TEST_F(RedisStateStoreTest, PipelinedSuccessesReloadTheScriptAfterAFlush) {
  const int64_t now = NowMs();
  store_->StartCooldown(CooldownScope::kConnection, "s1", now, policy_, 0);
  store_->StartCooldown(CooldownScope::kConnection, "s2", now, policy_, 0);
  store_->RecordSuccessOutcomes({{.connection_id = "warm", .provider = "p"}}, now);
  server_.Run("SCRIPT FLUSH");
  const std::vector<BreakerStatus> b = store_->RecordSuccessOutcomes(
      {{.connection_id = "s1", .provider = "p", .latency_ms = 5},
       {.connection_id = "s2", .provider = "p", .latency_ms = 6}},
      now);
  ASSERT_EQ(b.size(), 2u);
  EXPECT_EQ(CooldownUntil("s1", now), 0);
  EXPECT_EQ(CooldownUntil("s2", now), 0);
  EXPECT_EQ(store_->Latencies("p"), (std::vector<int64_t>{6, 5}));
  EXPECT_TRUE(store_->Healthy());
}

TEST_F(RedisStateStoreTest, ListsLockoutsBySCAN) {
  const int64_t now = NowMs();
  CooldownPolicy lock{.base_ms = 120000, .max_ms = 1800000, .max_steps = 30};
  store_->StartCooldown(CooldownScope::kModel, "p:p:a:m1", now, lock, 0);
  store_->StartCooldown(CooldownScope::kModel, "p:p:b:m2", now, lock, 0);
  store_->StartCooldown(CooldownScope::kConnection, "p:a", now, policy_, 0);
  auto active = store_->ActiveCooldowns({"p:a", "p:b"}, now);
  ASSERT_EQ(active.size(), 3u);
  EXPECT_EQ(active[0].id, "p:a");
  store_->ResetCooldowns({"p:a", "p:b"});
  EXPECT_TRUE(store_->ActiveCooldowns({"p:a", "p:b"}, now).empty());
  EXPECT_EQ(Raw("EXISTS", "omni:router:lklvl:{p:p:a:m1}"), "0");
}

TEST(RedisStateStoreStandaloneTest, UnreachableAtStartServesLocalState) {
  RedisStateStoreOptions options;
  options.reconnect_interval = 50ms;
  absl::StatusOr<StateStorePtr> store =
      MakeRedisStateStore("unix:///nonexistent/omni-test/redis.sock", options);
  ASSERT_TRUE(store.ok()) << store.status();
  EXPECT_FALSE((*store)->Healthy());
  const int64_t now = NowMs();
  CooldownPolicy policy{.base_ms = 100, .max_ms = 1000, .max_steps = 3};
  EXPECT_EQ((*store)->StartCooldown(CooldownScope::kConnection, "a", now, policy, 0), now + 100);
  EXPECT_EQ((*store)->Read({.connections = {"a"}}, now).connections[0].cooldown_until_ms,
            now + 100);
}

TEST(RedisUrlTest, ParsesTheSupportedForms) {
  absl::StatusOr<RedisAddress> a = ParseRedisUrl("redis://cache.internal:6380/2");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->host, "cache.internal");
  EXPECT_EQ(a->port, 6380);
  EXPECT_EQ(a->db, 2);
  EXPECT_TRUE(a->password.empty());

  a = ParseRedisUrl("redis://:s%40cret@10.0.0.5:6379");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->host, "10.0.0.5");
  EXPECT_EQ(a->password, "s@cret");
  EXPECT_TRUE(a->username.empty());
  EXPECT_EQ(a->db, 0);

  a = ParseRedisUrl("redis://router:pw@redis");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->host, "redis");
  EXPECT_EQ(a->port, 6379);
  EXPECT_EQ(a->username, "router");
  EXPECT_EQ(a->password, "pw");

  a = ParseRedisUrl("redis://[::1]:7000/");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->host, "::1");
  EXPECT_EQ(a->port, 7000);

  a = ParseRedisUrl("unix:///run/redis/redis.sock?db=3");
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ(a->socket_path, "/run/redis/redis.sock");
  EXPECT_TRUE(a->host.empty());
  EXPECT_EQ(a->db, 3);
}

TEST(RedisUrlTest, RejectsMalformedUrls) {
  for (const char* url : {"", "localhost:6379", "redis://", "redis://host:notaport",
                          "redis://host:6379/x", "rediss://host:6379", "unix://relative.sock",
                          "redis://host?timeout=1", "redis://:%zz@host"}) {
    absl::StatusOr<RedisAddress> a = ParseRedisUrl(url);
    EXPECT_FALSE(a.ok()) << url;
    EXPECT_EQ(a.status().code(), absl::StatusCode::kInvalidArgument) << url;
  }
  EXPECT_FALSE(MakeRedisStateStore("http://x", RedisStateStoreOptions()).ok());
}

}  // namespace
}  // namespace omniroute::router
