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

#include "gtest/gtest.h"

namespace omniroute::router {
namespace {

using namespace std::chrono_literals;

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool RedisServerAvailable() { return std::system("command -v redis-server >/dev/null 2>&1") == 0; }

// A throwaway redis-server on a unix socket in a temporary directory.
class RedisServer {
 public:
  RedisServer() {
    char tmpl[] = "/tmp/omni-redis-XXXXXX";
    dir_ = mkdtemp(tmpl);
    socket_ = dir_ + "/redis.sock";
  }
  ~RedisServer() {
    Kill();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // Starts the server and waits until it answers PING.
  bool Start() {
    pid_ = fork();
    if (pid_ == 0) {
      const int devnull = open("/dev/null", O_WRONLY);
      dup2(devnull, STDOUT_FILENO);
      dup2(devnull, STDERR_FILENO);
      execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", socket_.c_str(),
             "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir", dir_.c_str(),
             static_cast<char*>(nullptr));
      _exit(127);
    }
    for (int i = 0; i < 200; ++i) {
      if (redisContext* c = Connect()) {
        redisFree(c);
        return true;
      }
      std::this_thread::sleep_for(10ms);
    }
    return false;
  }

  void Kill() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
      pid_ = -1;
      unlink(socket_.c_str());
    }
  }

  // A direct connection for inspecting keys; nullptr when the server does not answer.
  redisContext* Connect() const {
    redisContext* c = redisConnectUnix(socket_.c_str());
    if (c == nullptr || c->err != 0) {
      if (c != nullptr) {
        redisFree(c);
      }
      return nullptr;
    }
    redisReply* r = static_cast<redisReply*>(redisCommand(c, "PING"));
    const bool ok = r != nullptr && r->type == REDIS_REPLY_STATUS;
    if (r != nullptr) {
      freeReplyObject(r);
    }
    if (!ok) {
      redisFree(c);
      return nullptr;
    }
    return c;
  }

  std::string url() const { return "unix://" + socket_; }

 private:
  std::string dir_;
  std::string socket_;
  pid_t pid_ = -1;
};

class RedisStateStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!RedisServerAvailable()) {
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

  // A raw command on a fresh connection; the reply's integer or string, "" for nil.
  std::string Raw(const std::string& command, const std::string& key) {
    redisContext* c = server_.Connect();
    if (c == nullptr) {
      return "<down>";
    }
    redisReply* r =
        static_cast<redisReply*>(redisCommand(c, "%s %b", command.c_str(), key.data(), key.size()));
    std::string out;
    if (r != nullptr && r->type == REDIS_REPLY_INTEGER) {
      out = std::to_string(r->integer);
    } else if (r != nullptr && r->type == REDIS_REPLY_STRING) {
      out.assign(r->str, r->len);
    }
    if (r != nullptr) {
      freeReplyObject(r);
    }
    redisFree(c);
    return out;
  }

  RedisServer server_;
  RedisStateStoreOptions options_;
  StateStorePtr store_;
  CooldownPolicy policy_{.base_ms = 1000, .max_ms = 10000, .max_steps = 5};
};

TEST_F(RedisStateStoreTest, BacksOffExponentiallyUpToTheCap) {
  const int64_t now = NowMs();
  EXPECT_TRUE(store_->Healthy());
  EXPECT_EQ(store_->StartCooldown("openai:a", now, policy_, 0), now + 1000);
  EXPECT_EQ(store_->StartCooldown("openai:a", now, policy_, 0), now + 2000);
  EXPECT_EQ(store_->StartCooldown("openai:a", now, policy_, 0), now + 4000);
  EXPECT_EQ(store_->StartCooldown("openai:a", now, policy_, 0), now + 8000);
  EXPECT_EQ(store_->StartCooldown("openai:a", now, policy_, 0), now + 10000);
  EXPECT_EQ(store_->StartCooldown("openai:a", now, policy_, 0), now + 10000);
  EXPECT_EQ(Raw("GET", "omni:router:lvl:{openai:a}"), "6");
}

TEST_F(RedisStateStoreTest, HintWinsWhenLongerButIsCapped) {
  const int64_t now = NowMs();
  EXPECT_EQ(store_->StartCooldown("a", now, policy_, 5000), now + 5000);
  EXPECT_EQ(store_->StartCooldown("b", now, policy_, 500), now + 1000);
  EXPECT_EQ(store_->StartCooldown("c", now, policy_, 60000), now + 10000);
}

TEST_F(RedisStateStoreTest, CooldownUntilReadsEveryIdAtOnce) {
  const int64_t now = NowMs();
  const int64_t until = store_->StartCooldown("x", now, policy_, 0);
  const std::vector<int64_t> got = store_->CooldownUntil({"w", "x", "y"}, now);
  EXPECT_EQ(got, (std::vector<int64_t>{0, until, 0}));
  // Past its end a cooldown no longer counts.
  EXPECT_EQ(store_->CooldownUntil({"x"}, until + 1), std::vector<int64_t>{0});
  EXPECT_TRUE(store_->CooldownUntil({}, now).empty());
}

TEST_F(RedisStateStoreTest, KeysExpire) {
  const int64_t now = NowMs();
  store_->StartCooldown("k", now, policy_, 0);
  const int64_t cd_ttl = std::stoll(Raw("PTTL", "omni:router:cd:{k}"));
  EXPECT_GT(cd_ttl, 0);
  EXPECT_LE(cd_ttl, 1000);
  const int64_t lvl_ttl = std::stoll(Raw("PTTL", "omni:router:lvl:{k}"));
  EXPECT_GT(lvl_ttl, 1000);
  EXPECT_LE(lvl_ttl, 1000 + policy_.max_ms * 4);
}

TEST_F(RedisStateStoreTest, ClearForgetsCooldownAndLevel) {
  const int64_t now = NowMs();
  store_->StartCooldown("c", now, policy_, 0);
  store_->StartCooldown("c", now, policy_, 0);
  store_->ClearCooldown("c");
  EXPECT_EQ(store_->CooldownUntil({"c"}, now), std::vector<int64_t>{0});
  EXPECT_EQ(Raw("EXISTS", "omni:router:lvl:{c}"), "0");
  EXPECT_EQ(store_->StartCooldown("c", now, policy_, 0), now + 1000);
}

TEST_F(RedisStateStoreTest, ReplicasShareState) {
  StateStorePtr other = MakeStore();
  const int64_t now = NowMs();
  const int64_t until = store_->StartCooldown("shared", now, policy_, 0);
  EXPECT_EQ(other->CooldownUntil({"shared"}, now), std::vector<int64_t>{until});
  EXPECT_EQ(other->StartCooldown("shared", now, policy_, 0), now + 2000);
}

TEST_F(RedisStateStoreTest, ConcurrentFailuresEachRaiseTheLevel) {
  const int64_t now = NowMs();
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 25; ++i) {
        store_->StartCooldown("busy", now, policy_, 0);
      }
    });
  }
  for (auto& t : threads) {
    t.join();
  }
  EXPECT_EQ(Raw("GET", "omni:router:lvl:{busy}"), "200");
  EXPECT_EQ(store_->CooldownUntil({"busy"}, now), std::vector<int64_t>{now + 10000});
}

TEST_F(RedisStateStoreTest, FallsBackToLocalStateWhileRedisIsDownAndRecovers) {
  const int64_t now = NowMs();
  store_->StartCooldown("before", now, policy_, 0);
  server_.Kill();

  // Routing goes on with process-local state.
  EXPECT_EQ(store_->StartCooldown("down", now, policy_, 0), now + 1000);
  EXPECT_FALSE(store_->Healthy());
  EXPECT_EQ(store_->StartCooldown("down", now, policy_, 0), now + 2000);
  EXPECT_EQ(store_->CooldownUntil({"down"}, now), std::vector<int64_t>{now + 2000});
  store_->ClearCooldown("down");
  EXPECT_EQ(store_->CooldownUntil({"down"}, now), std::vector<int64_t>{0});

  ASSERT_TRUE(server_.Start());
  bool healthy = false;
  for (int i = 0; i < 50 && !healthy; ++i) {
    std::this_thread::sleep_for(20ms);
    healthy = store_->Healthy();
  }
  EXPECT_TRUE(healthy);
  // Back on Redis (a fresh server: nothing survived).
  EXPECT_EQ(store_->StartCooldown("after", now, policy_, 0), now + 1000);
  EXPECT_EQ(Raw("GET", "omni:router:lvl:{after}"), "1");
}

TEST_F(RedisStateStoreTest, ReloadsTheScriptAfterAFlush) {
  const int64_t now = NowMs();
  store_->StartCooldown("s", now, policy_, 0);
  redisContext* c = server_.Connect();
  ASSERT_NE(c, nullptr);
  freeReplyObject(redisCommand(c, "SCRIPT FLUSH"));
  redisFree(c);
  EXPECT_EQ(store_->StartCooldown("s", now, policy_, 0), now + 2000);
  EXPECT_TRUE(store_->Healthy());
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
  EXPECT_EQ((*store)->StartCooldown("a", now, policy, 0), now + 100);
  EXPECT_EQ((*store)->CooldownUntil({"a"}, now), std::vector<int64_t>{now + 100});
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
