// The Redis budget ledger against a throwaway redis-server on a unix socket (skipped when
// redis-server is not installed).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "budget.h"

namespace omniroute::usage {
namespace {

using namespace std::chrono_literals;

class RedisServer {
 public:
  RedisServer() {
    char tmpl[] = "/tmp/omni-usage-redis-XXXXXX";
    dir_ = mkdtemp(tmpl);
    socket_ = dir_ + "/redis.sock";
  }
  ~RedisServer() {
    Kill();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  static bool Available() { return std::system("command -v redis-server >/dev/null 2>&1") == 0; }

  bool Start() {
    pid_ = fork();
    if (pid_ == 0) {
      const int devnull = open("/dev/null", O_WRONLY);
      dup2(devnull, STDOUT_FILENO);
      dup2(devnull, STDERR_FILENO);
      execlp("redis-server", "redis-server", "--port", "0", "--unixsocket", socket_.c_str(),
             "--save", "", "--appendonly", "no", "--dir", dir_.c_str(),
             static_cast<char*>(nullptr));
      _exit(127);
    }
    for (int i = 0; i < 300; ++i) {
      if (std::filesystem::exists(socket_)) {
        std::this_thread::sleep_for(20ms);
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

  std::string url() const { return "unix://" + socket_; }

 private:
  std::string dir_;
  std::string socket_;
  pid_t pid_ = -1;
};

constexpr int64_t kNow = 1795532400000;  // 2026-11-24T15:00:00Z

class RedisBudgetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!RedisServer::Available()) {
      GTEST_SKIP() << "redis-server is not on PATH";
    }
    ASSERT_TRUE(server_.Start());
    a_ = Make();
    b_ = Make();
  }

  // One replica of the usage service.
  std::unique_ptr<Budgets> Make() {
    absl::StatusOr<std::unique_ptr<BudgetLedger>> ledger = MakeRedisLedger(server_.url());
    EXPECT_TRUE(ledger.ok()) << ledger.status();
    BudgetOptions o;
    o.reservation_ttl_ms = 60000;
    auto b = std::make_unique<Budgets>(*std::move(ledger), o, [this] { return now_.load(); });
    v1::Budget budget;
    budget.set_client_key_id("k");
    budget.set_daily_usd(1.0);
    b->SetConfigBudgets({budget});
    return b;
  }

  v1::ReserveRequest Req(const std::string& id) {
    v1::ReserveRequest r;
    r.set_client_key_id("k");
    r.set_request_id(id);
    return r;
  }

  v1::UsageRecord Rec(const std::string& id, double cost) {
    v1::UsageRecord r;
    r.set_client_key_id("k");
    r.set_request_id(id);
    r.set_timestamp_ms(now_);
    r.set_cost_usd(cost);
    return r;
  }

  v1::WindowStatus Daily(Budgets& b) {
    absl::StatusOr<v1::BudgetStatus> s = b.Status("k", "");
    EXPECT_TRUE(s.ok()) << s.status();
    return s.ok() ? s->windows(0) : v1::WindowStatus();
  }

  RedisServer server_;
  std::atomic<int64_t> now_{kNow};
  std::unique_ptr<Budgets> a_;
  std::unique_ptr<Budgets> b_;
};

TEST_F(RedisBudgetTest, FiftyConcurrentReservationsAcrossReplicas) {
  ASSERT_TRUE(a_->AddSpend({Rec("past", 0.99)}, +1, true).ok());
  constexpr double kEstimate = 0.004;
  std::atomic<int> allowed{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 50; ++i) {
    threads.emplace_back([&, i] {
      Budgets& replica = i % 2 == 0 ? *a_ : *b_;
      if (replica.Reserve(Req(absl::StrCat("r", i)), kEstimate).allowed()) {
        ++allowed;
      }
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  EXPECT_EQ(allowed.load(), 3);
  EXPECT_NEAR(Daily(*b_).held_usd(), 3 * kEstimate, 1e-9);
  EXPECT_NEAR(Daily(*b_).spent_usd(), 0.99, 1e-9);
}

TEST_F(RedisBudgetTest, SettleKeepsTheHoldUntilTheRecordArrives) {
  const v1::Reservation r = a_->Reserve(Req("q1"), 0.5);
  ASSERT_TRUE(r.allowed());
  ASSERT_FALSE(r.id().empty());
  v1::SettleRequest s;
  s.set_reservation_id(r.id());
  s.set_actual_cost_usd(0.2);
  EXPECT_TRUE(b_->Settle(s).found());
  EXPECT_NEAR(Daily(*a_).held_usd(), 0.2, 1e-9);
  // The record reaches the other replica: spend counted, hold released, atomically.
  ASSERT_TRUE(b_->AddSpend({Rec("q1", 0.2)}, +1, true).ok());
  EXPECT_NEAR(Daily(*a_).held_usd(), 0, 1e-9);
  EXPECT_NEAR(Daily(*a_).spent_usd(), 0.2, 1e-9);
  EXPECT_FALSE(a_->Settle(s).found());
  // Cancel releases at once; unsettled holds lapse.
  const v1::Reservation c = a_->Reserve(Req("q2"), 0.3);
  v1::SettleRequest cancel;
  cancel.set_reservation_id(c.id());
  cancel.set_cancelled(true);
  EXPECT_TRUE(a_->Settle(cancel).found());
  EXPECT_NEAR(Daily(*a_).held_usd(), 0, 1e-9);
  a_->Reserve(Req("q3"), 0.3);
  EXPECT_NEAR(Daily(*a_).held_usd(), 0.3, 1e-9);
  now_ += 61000;
  EXPECT_NEAR(Daily(*a_).held_usd(), 0, 1e-9);
}

TEST_F(RedisBudgetTest, DeniedWithTheLimitAndSeedKeepsLiveValues) {
  ASSERT_TRUE(a_->AddSpend({Rec("x", 1.0)}, +1, true).ok());
  const v1::Reservation r = b_->Reserve(Req("q"), 0.01);
  EXPECT_FALSE(r.allowed());
  EXPECT_TRUE(absl::StartsWith(r.message(), "Daily budget exceeded for key 'k': $1.0000 spent"))
      << r.message();
  // A replica starting later does not overwrite the live spend with its own view.
  const int64_t today = DayIndex(now_, 0);
  ASSERT_TRUE(b_->Seed({{"k", "", today, 0.25}}).ok());
  EXPECT_NEAR(Daily(*a_).spent_usd(), 1.0, 1e-9);
  // After an import, the store's view replaces it.
  ASSERT_TRUE(b_->Seed({{"k", "", today, 0.25}}, /*overwrite=*/true).ok());
  EXPECT_NEAR(Daily(*a_).spent_usd(), 0.25, 1e-9);
}

TEST_F(RedisBudgetTest, RateLimitsHoldAcrossReplicas) {
  now_ += 20000;  // 15:00:20
  constexpr int kRpm = 7;
  std::atomic<int> allowed{0};
  std::atomic<int> refused{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 40; ++i) {
    threads.emplace_back([&, i] {
      Budgets& replica = i % 2 == 0 ? *a_ : *b_;
      v1::ReserveRequest r;
      r.set_client_key_id("rl");  // no budget: rate limits only
      r.set_request_id(absl::StrCat("rl", i));
      r.set_rpm_limit(kRpm);
      const v1::Reservation res = replica.Reserve(r, 0.001);
      if (res.allowed()) {
        ++allowed;
      } else if (res.code() == "rate_limit_exceeded" && res.retry_after_seconds() == 40) {
        ++refused;
      }
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  EXPECT_EQ(allowed.load(), kRpm);
  EXPECT_EQ(refused.load(), 40 - kRpm);
  // Tokens per minute, with a budget in the same call: a refusal holds nothing.
  v1::ReserveRequest t = Req("t1");
  t.set_tpm_limit(100);
  t.set_estimated_input_tokens(60);
  ASSERT_TRUE(a_->Reserve(t, 0.1).allowed());
  EXPECT_NEAR(Daily(*a_).held_usd(), 0.1, 1e-9);
  t.set_request_id("t2");
  const v1::Reservation over = b_->Reserve(t, 0.1);
  EXPECT_FALSE(over.allowed());
  EXPECT_EQ(over.code(), "rate_limit_exceeded");
  EXPECT_TRUE(absl::StrContains(over.message(), "100 tokens per minute (60 used"))
      << over.message();
  EXPECT_NEAR(Daily(*a_).held_usd(), 0.1, 1e-9);
  // The next minute starts afresh.
  now_ += 40000;
  t.set_request_id("t3");
  EXPECT_TRUE(b_->Reserve(t, 0.1).allowed());
}

TEST_F(RedisBudgetTest, RedisDownFailsOpenByDefault) {
  server_.Kill();
  const v1::Reservation r = a_->Reserve(Req("q"), 0.01);
  EXPECT_TRUE(r.allowed());
  EXPECT_TRUE(r.id().empty());
  EXPECT_FALSE(a_->Status("k", "").ok());
}

TEST(RedisLedgerUrlTest, RejectsMalformedUrls) {
  EXPECT_FALSE(MakeRedisLedger("localhost:6379").ok());
  EXPECT_FALSE(MakeRedisLedger("redis://host:notaport").ok());
  EXPECT_TRUE(MakeRedisLedger("redis://:secret@host:6380/2").ok());
  EXPECT_TRUE(MakeRedisLedger("unix:///tmp/redis.sock?db=1").ok());
}

}  // namespace
}  // namespace omniroute::usage
