#include "budget.h"

#include <gtest/gtest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"

namespace omniroute::usage {
namespace {

constexpr int64_t kDay = 86400000;
// 2026-11-24 (a Tuesday) 15:00:00 UTC.
constexpr int64_t kTuesday = 1795532400000;

TEST(WindowTest, DailyWeeklyMonthlyWithResetTime) {
  ASSERT_EQ(FormatUtc(kTuesday), "2026-11-24T15:00:00Z");
  const int64_t ten = 10 * 3600000;
  WindowSpan d = SpanOf(WindowKind::kDaily, kTuesday, ten);
  EXPECT_EQ(FormatUtc(d.start_ms), "2026-11-24T10:00:00Z");
  EXPECT_EQ(FormatUtc(d.end_ms), "2026-11-25T10:00:00Z");
  // Before 10:00 the day still belongs to the previous window.
  d = SpanOf(WindowKind::kDaily, kTuesday - 6 * 3600000, ten);
  EXPECT_EQ(FormatUtc(d.start_ms), "2026-11-23T10:00:00Z");
  const WindowSpan w = SpanOf(WindowKind::kWeekly, kTuesday, 0);
  EXPECT_EQ(FormatUtc(w.start_ms), "2026-11-23T00:00:00Z");  // Monday
  EXPECT_EQ(FormatUtc(w.end_ms), "2026-11-30T00:00:00Z");
  const WindowSpan m = SpanOf(WindowKind::kMonthly, kTuesday, ten);
  EXPECT_EQ(FormatUtc(m.start_ms), "2026-11-01T10:00:00Z");
  EXPECT_EQ(FormatUtc(m.end_ms), "2026-12-01T10:00:00Z");
  const WindowSpan dec = SpanOf(WindowKind::kMonthly, kTuesday + 30 * kDay, 0);
  EXPECT_EQ(FormatUtc(dec.start_ms), "2026-12-01T00:00:00Z");
  EXPECT_EQ(FormatUtc(dec.end_ms), "2027-01-01T00:00:00Z");
  // The first instant of a window belongs to it, the last to the previous.
  EXPECT_EQ(SpanOf(WindowKind::kDaily, d.end_ms, ten).start_ms, d.end_ms);
  EXPECT_EQ(SpanOf(WindowKind::kDaily, d.end_ms - 1, ten).start_ms, d.start_ms);
}

class BudgetsTest : public ::testing::Test {
 protected:
  void SetUp() override { Make(MakeMemoryLedger()); }

  void Make(std::unique_ptr<BudgetLedger> ledger) {
    BudgetOptions o;
    o.reservation_ttl_ms = 60000;
    o.settle_ttl_ms = 30000;
    budgets_ = std::make_unique<Budgets>(std::move(ledger), o, [this] { return now_.load(); });
  }

  v1::Budget KeyBudget(const std::string& key, double daily, double weekly, double monthly) {
    v1::Budget b;
    b.set_client_key_id(key);
    b.set_daily_usd(daily);
    b.set_weekly_usd(weekly);
    b.set_monthly_usd(monthly);
    return b;
  }

  v1::ReserveRequest Req(const std::string& key, const std::string& request_id,
                         const std::string& team = "") {
    v1::ReserveRequest r;
    r.set_client_key_id(key);
    r.set_team(team);
    r.set_request_id(request_id);
    return r;
  }

  v1::UsageRecord Rec(const std::string& key, const std::string& request_id, double cost,
                      const std::string& team = "") {
    v1::UsageRecord r;
    r.set_client_key_id(key);
    r.set_team(team);
    r.set_request_id(request_id);
    r.set_timestamp_ms(now_);
    r.set_cost_usd(cost);
    return r;
  }

  double Spent(const std::string& key, const std::string& window) {
    absl::StatusOr<v1::BudgetStatus> s = budgets_->Status(key, "");
    EXPECT_TRUE(s.ok());
    for (const auto& w : s->windows()) {
      if (w.window() == window) return w.spent_usd();
    }
    return -1;
  }

  double Held(const std::string& key) {
    absl::StatusOr<v1::BudgetStatus> s = budgets_->Status(key, "");
    return s->windows(0).held_usd();
  }

  std::atomic<int64_t> now_{kTuesday};
  std::unique_ptr<Budgets> budgets_;
};

TEST_F(BudgetsTest, NoBudgetMeansAllowedWithoutReservation) {
  const v1::Reservation r = budgets_->Reserve(Req("k", "r1"), 1.0);
  EXPECT_TRUE(r.allowed());
  EXPECT_TRUE(r.id().empty());
  EXPECT_EQ(r.remaining_usd(), -1);
}

TEST_F(BudgetsTest, DeniesWhenSpentReachesTheLimitAndNamesIt) {
  ASSERT_TRUE(budgets_->Upsert(KeyBudget("k", 1.0, 0, 0)).ok());
  ASSERT_TRUE(budgets_->AddSpend({Rec("k", "a", 1.0)}, +1, true).ok());
  const v1::Reservation r = budgets_->Reserve(Req("k", "r1"), 0.01);
  EXPECT_FALSE(r.allowed());
  EXPECT_EQ(r.code(), "budget_exceeded");
  EXPECT_TRUE(absl::StartsWith(r.message(), "Daily budget exceeded for key 'k': $1.0000 spent"))
      << r.message();
  EXPECT_TRUE(absl::StrContains(r.message(), "resets at 2026-11-25T00:00:00Z")) << r.message();
  EXPECT_EQ(r.retry_after_seconds(), 9 * 3600);
  EXPECT_EQ(budgets_->rejections(), 1u);
}

TEST_F(BudgetsTest, WindowsResetWithTheClock) {
  ASSERT_TRUE(budgets_->Upsert(KeyBudget("k", 1.0, 0, 3.0)).ok());
  ASSERT_TRUE(budgets_->AddSpend({Rec("k", "a", 1.0)}, +1, true).ok());
  EXPECT_FALSE(budgets_->Reserve(Req("k", "r1"), 0.1).allowed());
  now_ += 9 * 3600000;  // midnight: a new day, same month
  EXPECT_EQ(Spent("k", "daily"), 0);
  EXPECT_EQ(Spent("k", "monthly"), 1.0);
  EXPECT_TRUE(budgets_->Reserve(Req("k", "r2"), 0.1).allowed());
  ASSERT_TRUE(budgets_->AddSpend({Rec("k", "b", 1.0)}, +1, true).ok());
  now_ += kDay;
  ASSERT_TRUE(budgets_->AddSpend({Rec("k", "c", 1.0)}, +1, true).ok());
  now_ += kDay;
  // Monthly limit 3 reached although today is empty.
  const v1::Reservation r = budgets_->Reserve(Req("k", "r3"), 0.1);
  EXPECT_FALSE(r.allowed());
  EXPECT_TRUE(absl::StartsWith(r.message(), "Monthly budget exceeded")) << r.message();
  EXPECT_TRUE(absl::StrContains(r.message(), "2026-12-01T00:00:00Z"));
}

TEST_F(BudgetsTest, HoldsCountUntilTheRecordArrives) {
  ASSERT_TRUE(budgets_->Upsert(KeyBudget("k", 1.0, 0, 0)).ok());
  const v1::Reservation r = budgets_->Reserve(Req("k", "req-1"), 0.6);
  ASSERT_TRUE(r.allowed());
  ASSERT_FALSE(r.id().empty());
  EXPECT_NEAR(r.remaining_usd(), 1.0, 1e-9);
  EXPECT_NEAR(Held("k"), 0.6, 1e-9);
  // Settled with the real cost: held at that amount until the record lands.
  v1::SettleRequest s;
  s.set_reservation_id(r.id());
  s.set_actual_cost_usd(0.25);
  EXPECT_TRUE(budgets_->Settle(s).found());
  EXPECT_NEAR(Held("k"), 0.25, 1e-9);
  ASSERT_TRUE(budgets_->AddSpend({Rec("k", "req-1", 0.25)}, +1, true).ok());
  EXPECT_NEAR(Held("k"), 0, 1e-9);
  EXPECT_NEAR(Spent("k", "daily"), 0.25, 1e-9);
  // A second settle (or a record arriving first) is harmless.
  EXPECT_FALSE(budgets_->Settle(s).found());
}

TEST_F(BudgetsTest, CancelReleasesAtOnceAndUnsettledHoldsLapse) {
  ASSERT_TRUE(budgets_->Upsert(KeyBudget("k", 1.0, 0, 0)).ok());
  v1::Reservation r = budgets_->Reserve(Req("k", "a"), 0.5);
  v1::SettleRequest s;
  s.set_reservation_id(r.id());
  s.set_cancelled(true);
  EXPECT_TRUE(budgets_->Settle(s).found());
  EXPECT_NEAR(Held("k"), 0, 1e-9);
  r = budgets_->Reserve(Req("k", "b"), 0.5);
  EXPECT_NEAR(Held("k"), 0.5, 1e-9);
  now_ += 61000;  // past reservation_ttl_ms
  EXPECT_NEAR(Held("k"), 0, 1e-9);
}

TEST_F(BudgetsTest, FiftyConcurrentReservationsOnOneCentLeft) {
  ASSERT_TRUE(budgets_->Upsert(KeyBudget("k", 1.0, 0, 0)).ok());
  ASSERT_TRUE(budgets_->AddSpend({Rec("k", "past", 0.99)}, +1, true).ok());
  constexpr double kEstimate = 0.004;  // $0.01 left: room for three holds at most
  std::atomic<int> allowed{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 50; ++i) {
    threads.emplace_back([&, i] {
      if (budgets_->Reserve(Req("k", absl::StrCat("r", i)), kEstimate).allowed()) {
        ++allowed;
      }
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  // A hold is granted while spent + held < limit: 0.99, 0.994, 0.998 → three; the total
  // reserved passes the limit by less than one estimate.
  EXPECT_EQ(allowed.load(), 3);
  EXPECT_LT(0.99 + Held("k") - 1.0, kEstimate);
}

TEST_F(BudgetsTest, TeamBudgetsApplyToEveryKeyOfTheTeam) {
  v1::Budget team;
  team.set_team("research");
  team.set_weekly_usd(2.0);
  ASSERT_TRUE(budgets_->Upsert(team).ok());
  ASSERT_TRUE(
      budgets_->AddSpend({Rec("a", "1", 1.5, "research"), Rec("b", "2", 0.6, "research")}, +1, true)
          .ok());
  const v1::Reservation r = budgets_->Reserve(Req("c", "3", "research"), 0.1);
  EXPECT_FALSE(r.allowed());
  EXPECT_TRUE(absl::StartsWith(r.message(), "Weekly budget exceeded for team 'research'"))
      << r.message();
  EXPECT_TRUE(budgets_->Reserve(Req("c", "4", "other"), 0.1).allowed());
}

TEST_F(BudgetsTest, WarningThreshold) {
  v1::Budget b = KeyBudget("k", 10.0, 0, 0);
  ASSERT_TRUE(budgets_->Upsert(b).ok());
  ASSERT_TRUE(budgets_->AddSpend({Rec("k", "a", 7.0)}, +1, true).ok());
  EXPECT_FALSE(budgets_->Reserve(Req("k", "r1"), 0.5).warning());
  const v1::Reservation r = budgets_->Reserve(Req("k", "r2"), 0.6);  // 7 + 0.5 + 0.6 > 8
  EXPECT_TRUE(r.allowed());
  EXPECT_TRUE(r.warning());
  EXPECT_TRUE(absl::StrContains(r.warning_message(), "Daily budget of key 'k' at 81%"))
      << r.warning_message();
}

TEST_F(BudgetsTest, SeedFromStoreRowsAndDuplicatesAreRemoved) {
  ASSERT_TRUE(budgets_->Upsert(KeyBudget("k", 5.0, 5.0, 5.0)).ok());
  const int64_t today = DayIndex(now_, 0);
  ASSERT_TRUE(budgets_
                  ->Seed({{"k", "", today, 1.0},
                          {"k", "", today - 1, 2.0},    // Monday: this week
                          {"k", "", today - 10, 4.0}})  // earlier this month
                  .ok());
  EXPECT_NEAR(Spent("k", "daily"), 1.0, 1e-9);
  EXPECT_NEAR(Spent("k", "weekly"), 3.0, 1e-9);
  EXPECT_NEAR(Spent("k", "monthly"), 7.0, 1e-9);
  ASSERT_TRUE(budgets_->AddSpend({Rec("k", "dup", 0.5)}, +1, true).ok());
  ASSERT_TRUE(budgets_->AddSpend({Rec("k", "dup", 0.5)}, -1, false).ok());
  EXPECT_NEAR(Spent("k", "daily"), 1.0, 1e-9);
  EXPECT_GE(budgets_->SeedSinceMs(), now_ - 31 * kDay);
}

TEST_F(BudgetsTest, RequestsPerMinutePerKeyWithRetryToTheNextMinute) {
  now_ += 15000;  // 15:00:15
  auto req = [](const std::string& key, int i) {
    v1::ReserveRequest r;
    r.set_client_key_id(key);
    r.set_request_id(absl::StrCat(key, i));
    r.set_rpm_limit(3);
    return r;
  };
  for (int i = 0; i < 3; ++i) {
    const v1::Reservation r = budgets_->Reserve(req("k", i), 0.01);
    EXPECT_TRUE(r.allowed()) << i;
    EXPECT_TRUE(r.id().empty());  // no budget: nothing held
  }
  const v1::Reservation denied = budgets_->Reserve(req("k", 3), 0.01);
  EXPECT_FALSE(denied.allowed());
  EXPECT_EQ(denied.code(), "rate_limit_exceeded");
  EXPECT_EQ(denied.retry_after_seconds(), 45);
  EXPECT_TRUE(absl::StrContains(denied.message(), "3 requests per minute")) << denied.message();
  EXPECT_EQ(budgets_->rejections(), 1u);
  // Another key has its own window; the next minute starts afresh.
  EXPECT_TRUE(budgets_->Reserve(req("other", 0), 0.01).allowed());
  now_ += 44000;  // 15:00:59
  EXPECT_FALSE(budgets_->Reserve(req("k", 4), 0.01).allowed());
  now_ += 1000;  // 15:01:00
  EXPECT_TRUE(budgets_->Reserve(req("k", 5), 0.01).allowed());
}

TEST_F(BudgetsTest, TokensPerMinuteCountEstimatedInputAndOutput) {
  auto req = [](int i, int64_t input, int64_t output) {
    v1::ReserveRequest r;
    r.set_client_key_id("k");
    r.set_request_id(absl::StrCat("t", i));
    r.set_tpm_limit(1000);
    r.set_estimated_input_tokens(input);
    r.set_max_output_tokens(output);
    return r;
  };
  EXPECT_TRUE(budgets_->Reserve(req(1, 300, 200), 0.01).allowed());
  EXPECT_TRUE(budgets_->Reserve(req(2, 300, 200), 0.01).allowed());  // 1000 of 1000
  const v1::Reservation r = budgets_->Reserve(req(3, 1, 0), 0.01);
  EXPECT_FALSE(r.allowed());
  EXPECT_EQ(r.code(), "rate_limit_exceeded");
  EXPECT_TRUE(absl::StrContains(r.message(), "1000 tokens per minute (1000 used"))
      << r.message();
  // A request bigger than the limit still goes when it is alone in its minute.
  now_ += 60000;
  EXPECT_TRUE(budgets_->Reserve(req(4, 5000, 0), 0.01).allowed());
  EXPECT_FALSE(budgets_->Reserve(req(5, 1, 0), 0.01).allowed());
}

TEST_F(BudgetsTest, RateLimitsAndBudgetsTogether) {
  ASSERT_TRUE(budgets_->Upsert(KeyBudget("k", 1.0, 0, 0)).ok());
  v1::ReserveRequest a = Req("k", "a");
  a.set_rpm_limit(1);
  const v1::Reservation first = budgets_->Reserve(a, 0.4);
  ASSERT_TRUE(first.allowed());
  EXPECT_FALSE(first.id().empty());
  v1::ReserveRequest b = Req("k", "b");
  b.set_rpm_limit(1);
  const v1::Reservation second = budgets_->Reserve(b, 0.4);
  EXPECT_FALSE(second.allowed());
  EXPECT_EQ(second.code(), "rate_limit_exceeded");
  EXPECT_NEAR(Held("k"), 0.4, 1e-9);  // the refused request holds nothing
  // A request the budget refuses does not use up the minute.
  ASSERT_TRUE(budgets_->AddSpend({Rec("k", "past", 1.0)}, +1, true).ok());
  now_ += 60000;
  v1::ReserveRequest c = Req("k", "c");
  c.set_rpm_limit(1);
  const v1::Reservation over = budgets_->Reserve(c, 0.1);
  EXPECT_FALSE(over.allowed());
  EXPECT_EQ(over.code(), "budget_exceeded");
  v1::Budget more = KeyBudget("k", 10.0, 0, 0);
  ASSERT_TRUE(budgets_->Upsert(more).ok());
  v1::ReserveRequest d = Req("k", "d");
  d.set_rpm_limit(1);
  EXPECT_TRUE(budgets_->Reserve(d, 0.1).allowed());
}

TEST_F(BudgetsTest, FiftyConcurrentRequestsOnATenRpmKey) {
  std::atomic<int> allowed{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 50; ++i) {
    threads.emplace_back([&, i] {
      v1::ReserveRequest r = Req("k", absl::StrCat("r", i));
      r.set_rpm_limit(10);
      if (budgets_->Reserve(r, 0.001).allowed()) {
        ++allowed;
      }
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  EXPECT_EQ(allowed.load(), 10);
}

TEST_F(BudgetsTest, ConfigBudgetsAreReadOnly) {
  budgets_->SetConfigBudgets({KeyBudget("cfg:a", 1, 0, 0)});
  EXPECT_EQ(budgets_->Upsert(KeyBudget("cfg:a", 2, 0, 0)).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(budgets_->Remove("cfg:a", "").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(budgets_->Remove("nope", "").code(), absl::StatusCode::kNotFound);
  v1::Budget both = KeyBudget("x", 1, 0, 0);
  both.set_team("t");
  EXPECT_EQ(budgets_->Upsert(both).status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(budgets_->List().size(), 1u);
  EXPECT_EQ(budgets_->List()[0].budget().source(), "config");
}

// Records what AddSpend hands the ledger.
class RecordingLedger final : public BudgetLedger {
 public:
  explicit RecordingLedger(std::vector<std::pair<WindowRef, int64_t>>* applied,
                           std::vector<std::string>* arrived)
      : applied_(applied), arrived_(arrived) {}
  absl::StatusOr<LedgerReserve> Reserve(const std::vector<LedgerCheck>&, const LedgerRate*,
                                        const std::string&, const std::string&, int64_t, int64_t,
                                        int64_t) override {
    return LedgerReserve();
  }
  absl::StatusOr<bool> Settle(const std::string&, int64_t, bool, int64_t, int64_t) override {
    return false;
  }
  absl::Status Apply(const std::vector<std::pair<WindowRef, int64_t>>& deltas,
                     const std::vector<std::string>& arrived, int64_t) override {
    *applied_ = deltas;
    *arrived_ = arrived;
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<LedgerState>> Read(const std::vector<WindowRef>& w, int64_t) override {
    return std::vector<LedgerState>(w.size());
  }
  absl::Status Seed(const std::vector<std::pair<WindowRef, int64_t>>&, bool) override {
    return absl::OkStatus();
  }
  bool blocking() const override { return false; }

 private:
  std::vector<std::pair<WindowRef, int64_t>>* applied_;
  std::vector<std::string>* arrived_;
};

TEST_F(BudgetsTest, SpendGoesToEachWindowOfKeyAndTeamByName) {
  std::vector<std::pair<WindowRef, int64_t>> applied;
  std::vector<std::string> arrived;
  Make(std::make_unique<RecordingLedger>(&applied, &arrived));
  auto rec = [](const std::string& id, const std::string& key, const std::string& team, int64_t ts,
                double cost) {
    v1::UsageRecord r;
    r.set_request_id(id);
    r.set_client_key_id(key);
    r.set_team(team);
    r.set_timestamp_ms(ts);
    r.set_cost_usd(cost);
    return r;
  };
  // Tuesday 2026-11-24 is day 20781; its week starts on Monday (20780), its month on the 1st
  // (20758). The last record is on the next day, in the same week and month.
  ASSERT_TRUE(budgets_
                  ->AddSpend({rec("r1", "cfg:a", "", kTuesday, 0.25),
                              rec("r2", "cfg:a", "research", kTuesday + 1, 0.5),
                              rec("r3", "", "", kTuesday + 2, 1),       // no subject
                              rec("r4", "cfg:b", "", kTuesday + 3, 0),  // no spend
                              rec("", "cfg:a", "", kTuesday + kDay, 2)},
                             +1, true)
                  .ok());
  std::vector<std::string> got;
  for (const auto& [ref, nano] : applied) {
    got.push_back(absl::StrCat(ref.key, "=", nano, "@", ref.expire_at_ms));
  }
  const int64_t grace = 2 * kDay;
  const int64_t day_end = (20781 + 1) * kDay + grace;
  const int64_t next_day_end = (20782 + 1) * kDay + grace;
  const int64_t week_end = (20780 + 7) * kDay + grace;
  const int64_t month_end = 20788 * kDay + grace;  // 2026-12-01
  EXPECT_EQ(got, (std::vector<std::string>{
                     absl::StrCat("key:cfg:a|d:20781=750000000@", day_end),
                     absl::StrCat("key:cfg:a|d:20782=2000000000@", next_day_end),
                     absl::StrCat("key:cfg:a|m:20758=2750000000@", month_end),
                     absl::StrCat("key:cfg:a|w:20780=2750000000@", week_end),
                     absl::StrCat("team:research|d:20781=500000000@", day_end),
                     absl::StrCat("team:research|m:20758=500000000@", month_end),
                     absl::StrCat("team:research|w:20780=500000000@", week_end),
                 }));
  EXPECT_EQ(arrived, (std::vector<std::string>{"r1", "r2", "r3", "r4"}));
}

}  // namespace
}  // namespace omniroute::usage
