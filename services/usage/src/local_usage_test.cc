#include "local_usage.h"

#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <future>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "archive.h"
#include "sql_util.h"

namespace omniroute::usage {
namespace {

using namespace std::chrono_literals;

v1::UsageRecord Rec(const std::string& id, const std::string& key, int64_t ts, int in, int out) {
  v1::UsageRecord r;
  r.set_request_id(id);
  r.set_client_key_id(key);
  r.set_timestamp_ms(ts);
  r.set_provider("mock");
  r.set_input_tokens(in);
  r.set_output_tokens(out);
  r.set_status(200);
  r.set_client_format(common::v1::FORMAT_OPENAI_CHAT);
  return r;
}

int64_t Now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

template <typename T, typename Fn>
absl::StatusOr<T> Call(Fn fn) {
  std::promise<absl::StatusOr<T>> p;
  fn([&](absl::StatusOr<T> r) { p.set_value(std::move(r)); });
  return p.get_future().get();
}

// A store that fails writes while `down` is set (the database being unreachable).
class FlakyStore final : public UsageStore {
 public:
  FlakyStore(UsageStorePtr inner, std::shared_ptr<std::atomic<bool>> down)
      : inner_(std::move(inner)), down_(std::move(down)) {}
  absl::Status Migrate() override { return inner_->Migrate(); }
  absl::Status Write(const std::vector<v1::UsageRecord>& records,
                     std::vector<bool>* inserted) override {
    if (*down_) {
      return absl::UnavailableError("database down");
    }
    return inner_->Write(records, inserted);
  }
  absl::StatusOr<v1::QueryResponse> Query(const v1::QueryRequest& r) override {
    return inner_->Query(r);
  }
  absl::StatusOr<v1::StatsResponse> Stats(const v1::StatsRequest& r) override {
    return inner_->Stats(r);
  }
  absl::StatusOr<std::vector<SpendRow>> SpendByDay(int64_t since, int64_t offset) override {
    return inner_->SpendByDay(since, offset);
  }
  absl::StatusOr<std::vector<v1::PricingEntry>> LoadPricing() override {
    return inner_->LoadPricing();
  }
  absl::Status SavePricing(const v1::PricingEntry& e) override { return inner_->SavePricing(e); }
  absl::Status DeletePricing(const std::string& p, const std::string& m) override {
    return inner_->DeletePricing(p, m);
  }
  absl::StatusOr<std::vector<v1::Budget>> LoadBudgets() override { return inner_->LoadBudgets(); }
  absl::Status SaveBudget(const v1::Budget& b) override { return inner_->SaveBudget(b); }
  absl::Status DeleteBudget(const std::string& k, const std::string& t) override {
    return inner_->DeleteBudget(k, t);
  }
  std::string kind() const override { return inner_->kind(); }
  absl::Status Backup(const std::string& path) override { return inner_->Backup(path); }
  absl::Status Restore(const std::string& path) override { return inner_->Restore(path); }

 private:
  UsageStorePtr inner_;
  std::shared_ptr<std::atomic<bool>> down_;
};

class LocalUsageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/omni-usage-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  UsageStorePtr Store(const std::string& name = "u.db") {
    auto store = MakeSqliteUsageStore(dir_ + "/" + name);
    EXPECT_TRUE(store.ok()) << store.status();
    EXPECT_TRUE((*store)->Migrate().ok());
    return std::move(store).value();
  }

  LocalUsageOptions Options() {
    LocalUsageOptions o;
    o.spool_dir = dir_ + "/spool";
    o.data_dir = dir_;
    return o;
  }

  UsagePtr Make(UsageStorePtr store, LocalUsageOptions options) {
    absl::StatusOr<UsagePtr> u = MakeLocalUsage(std::move(store), std::move(options));
    EXPECT_TRUE(u.ok()) << u.status();
    return u.ok() ? *u : nullptr;
  }

  v1::QueryResponse QueryAll(const UsagePtr& usage, const std::string& key = "") {
    v1::QueryRequest q;
    q.set_client_key_id(key);
    q.set_limit(1000);
    absl::StatusOr<v1::QueryResponse> r =
        Call<v1::QueryResponse>([&](auto cb) { usage->Query(q, std::move(cb)); });
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : v1::QueryResponse();
  }

  std::string dir_;
};

TEST_F(LocalUsageTest, RecordsLandInSqliteOnceEach) {
  UsagePtr usage = MakeLocalUsage(Store());
  for (int i = 0; i < 1200; ++i) usage->Record(Rec("r" + std::to_string(i), "k1", 1000 + i, 10, 5));
  usage->Record(Rec("r5", "k1", 5000, 999, 999));  // a replay: ignored
  usage->Record(Rec("x", "k2", 3000, 1, 1));
  EXPECT_EQ(usage->Flush(std::chrono::seconds(10)), 0u);

  v1::QueryRequest q;
  q.set_client_key_id("k1");
  q.set_limit(3);
  auto res = Call<v1::QueryResponse>([&](auto cb) { usage->Query(q, std::move(cb)); });
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_EQ(res->total_requests(), 1200);
  EXPECT_EQ(res->total_input_tokens(), 12000);
  ASSERT_EQ(res->records_size(), 3);
  EXPECT_EQ(res->records(0).request_id(), "r1199");  // newest first
  EXPECT_EQ(res->records(0).client_format(), common::v1::FORMAT_OPENAI_CHAT);
  EXPECT_EQ(res->next_offset(), 3);
}

TEST_F(LocalUsageTest, MigrationIsIdempotentAndDataSurvivesReopen) {
  {
    auto store = MakeSqliteUsageStore(dir_ + "/v.db");
    ASSERT_TRUE((*store)->Migrate().ok());
    v1::UsageRecord r = Rec("a", "k", 1, 2, 3);
    r.set_team("t");
    r.set_combo("c");
    r.set_combo_step(2);
    r.set_cache_creation_tokens(7);
    ASSERT_TRUE((*store)->Write({r}).ok());
  }
  auto store = MakeSqliteUsageStore(dir_ + "/v.db");
  ASSERT_TRUE((*store)->Migrate().ok());
  auto res = (*store)->Query(v1::QueryRequest());
  ASSERT_TRUE(res.ok());
  EXPECT_EQ(res->total_requests(), 1);
  EXPECT_EQ(res->records(0).output_tokens(), 3);
  EXPECT_EQ(res->records(0).team(), "t");
  EXPECT_EQ(res->records(0).combo(), "c");
  EXPECT_EQ(res->records(0).combo_step(), 2);
  EXPECT_EQ(res->records(0).cache_creation_tokens(), 7);
}

TEST_F(LocalUsageTest, TeamFiltersUseTheTeamIndex) {
  {
    auto store = MakeSqliteUsageStore(dir_ + "/t.db");
    ASSERT_TRUE((*store)->Migrate().ok());
    std::vector<v1::UsageRecord> records;
    for (int i = 0; i < 6; ++i) {
      v1::UsageRecord r = Rec(absl::StrCat("r", i), "k", 1000 + i, 10, 1);
      r.set_team(i < 2 ? "t" : i < 3 ? "u" : "");
      records.push_back(r);
    }
    ASSERT_TRUE((*store)->Write(records).ok());
    v1::QueryRequest q;
    q.set_team("t");
    auto res = (*store)->Query(q);
    ASSERT_TRUE(res.ok()) << res.status();
    EXPECT_EQ(res->total_requests(), 2);
    ASSERT_EQ(res->records_size(), 2);
    EXPECT_EQ(res->records(0).request_id(), "r1");
    v1::StatsRequest st;
    st.set_team("u");
    st.set_group_by("team");
    auto stats = (*store)->Stats(st);
    ASSERT_TRUE(stats.ok()) << stats.status();
    ASSERT_EQ(stats->rows_size(), 1);
    EXPECT_EQ(stats->rows(0).group(), "u");
    EXPECT_EQ(stats->rows(0).requests(), 1);
    st.set_team("");
    stats = (*store)->Stats(st);
    ASSERT_TRUE(stats.ok()) << stats.status();
    EXPECT_EQ(stats->totals().requests(), 6);
  }
  // Only the rows with a team are in the index, and a team filter searches it.
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open_v2((dir_ + "/t.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr),
            SQLITE_OK);
  auto one = [&](const std::string& sql) {
    sqlite3_stmt* st = nullptr;
    std::string out;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) == SQLITE_OK) {
      while (sqlite3_step(st) == SQLITE_ROW) {
        absl::StrAppend(&out, reinterpret_cast<const char*>(sqlite3_column_text(st, 3)), ";");
      }
    }
    sqlite3_finalize(st);
    return out;
  };
  v1::QueryRequest q;
  q.set_team("t");
  const sql::Where where = sql::QueryWhere(q, /*dollar=*/false);
  EXPECT_NE(one(absl::StrCat("EXPLAIN QUERY PLAN SELECT * FROM usage_records", where.sql,
                             " ORDER BY ts_ms DESC, rowid DESC"))
                .find("usage_records_team_ts"),
            std::string::npos);
  sqlite3_stmt* count = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db,
                               "SELECT COUNT(*) FROM usage_records INDEXED BY "
                               "usage_records_team_ts WHERE team <> ''",
                               -1, &count, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(count), SQLITE_ROW);
  EXPECT_EQ(sqlite3_column_int(count, 0), 3);
  sqlite3_finalize(count);
  sqlite3_close(db);
}

TEST_F(LocalUsageTest, UnwritableStoreFailsToOpen) {
  EXPECT_FALSE(MakeSqliteUsageStore("/nonexistent-dir/x/u.db").ok());
}

TEST_F(LocalUsageTest, CostIsComputedFromThePricingTableOnArrival) {
  LocalUsageOptions o = Options();
  PricingSpec p;
  p.provider = "mock";
  p.model = "m*";
  p.input = 2;
  p.output = 10;
  p.cached_input = 0.5;
  o.pricing = {p};
  UsagePtr usage = Make(Store(), o);
  v1::UsageRecord r = Rec("a", "k", Now(), 1000, 100);
  r.set_upstream_model("m1");
  r.set_cached_tokens(400);
  r.set_cost_usd(123);  // whatever the edge says, the service prices it
  usage->Record(r);
  v1::UsageRecord unknown = Rec("b", "k", Now(), 1000, 100);
  unknown.set_upstream_model("zzz");
  usage->Record(unknown);
  ASSERT_EQ(usage->Flush(10s), 0u);
  v1::QueryResponse q = QueryAll(usage);
  ASSERT_EQ(q.records_size(), 2);
  EXPECT_NEAR(q.records(1).cost_usd(), (600 * 2 + 400 * 0.5 + 100 * 10) / 1e6, 1e-12);
  EXPECT_EQ(q.records(0).cost_usd(), 0);
  absl::StatusOr<v1::MetricsResponse> m =
      Call<v1::MetricsResponse>([&](auto cb) { usage->Metrics(std::move(cb)); });
  ASSERT_TRUE(m.ok());
  EXPECT_NE(
      m->text().find("omniroute_usage_cost_usd_total{key=\"k\",model=\"m1\",provider=\"mock\"}"),
      std::string::npos)
      << m->text();
  EXPECT_NE(m->text().find("omniroute_usage_unpriced_records_total{provider=\"mock\"} 1"),
            std::string::npos);
}

TEST_F(LocalUsageTest, SpoolsWhileTheStoreIsDownAndReplaysInOrderWithoutDoubleCounting) {
  auto down = std::make_shared<std::atomic<bool>>(false);
  LocalUsageOptions o = Options();
  BudgetSpec b;
  b.key_id = "k";
  b.daily_usd = 100;
  o.budgets = {b};
  PricingSpec p;
  p.model = "*";
  p.input = 1000;  // $0.001 per token
  o.pricing = {p};
  UsagePtr usage = Make(std::make_unique<FlakyStore>(Store(), down), o);
  const int64_t now = Now();
  usage->Record(Rec("before", "k", now, 1, 0));
  ASSERT_EQ(usage->Flush(10s), 0u);
  *down = true;
  // Acknowledged once durable: in the spool, the store being down.
  v1::RecordBatch batch;
  for (int i = 0; i < 20; ++i) {
    *batch.add_records() = Rec(absl::StrCat("r", i), "k", now + i, 1, 0);
  }
  *batch.add_records() = Rec("before", "k", now, 1, 0);  // a replay of a stored record
  absl::StatusOr<v1::Ack> ack =
      Call<v1::Ack>([&](auto cb) { usage->RecordBatch(batch, std::move(cb)); });
  ASSERT_TRUE(ack.ok());
  EXPECT_EQ(ack->accepted(), 21);
  absl::StatusOr<v1::QueryResponse> q =
      Call<v1::QueryResponse>([&](auto cb) { usage->Query(v1::QueryRequest(), std::move(cb)); });
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(q->total_requests(), 1);
  EXPECT_EQ(q->spool_depth(), 21);
  // New records queue behind the spool.
  usage->Record(Rec("late", "k", now + 100, 1, 0));
  *down = false;
  ASSERT_EQ(usage->Flush(10s), 0u);
  for (int i = 0; i < 100 && QueryAll(usage).total_requests() < 22; ++i) {
    std::this_thread::sleep_for(50ms);
  }
  v1::QueryResponse all = QueryAll(usage);
  EXPECT_EQ(all.total_requests(), 22);
  EXPECT_EQ(all.spool_depth(), 0);
  EXPECT_EQ(all.records(0).request_id(), "late");
  // Spend: 22 distinct records at $0.001 each; the replayed duplicate is not counted.
  absl::StatusOr<v1::BudgetList> st = Call<v1::BudgetList>([&](auto cb) {
    v1::ListBudgetsRequest r;
    r.set_client_key_id("k");
    usage->ListBudgets(r, std::move(cb));
  });
  ASSERT_TRUE(st.ok());
  EXPECT_NEAR(st->budgets(0).windows(0).spent_usd(), 0.022, 1e-9);
}

TEST_F(LocalUsageTest, SpoolSurvivesARestart) {
  auto down = std::make_shared<std::atomic<bool>>(true);
  const int64_t now = Now();
  {
    UsagePtr usage = Make(std::make_unique<FlakyStore>(Store(), down), Options());
    for (int i = 0; i < 5; ++i) {
      usage->Record(Rec(absl::StrCat("r", i), "k", now + i, 1, 0));
    }
    EXPECT_EQ(usage->Flush(2s), 0u);  // spooled: nothing left in memory
  }
  *down = false;
  UsagePtr usage = Make(std::make_unique<FlakyStore>(Store(), down), Options());
  ASSERT_EQ(usage->Flush(10s), 0u);
  EXPECT_EQ(QueryAll(usage).total_requests(), 5);
}

TEST_F(LocalUsageTest, ReservationsSettleAndSpendSurvivesRestart) {
  LocalUsageOptions o = Options();
  BudgetSpec b;
  b.key_id = "k";
  b.daily_usd = 0.01;
  o.budgets = {b};
  PricingSpec p;
  p.model = "m";
  p.input = 1;
  p.output = 1;
  o.pricing = {p};
  const int64_t now = Now();
  {
    UsagePtr usage = Make(Store(), o);
    v1::ReserveRequest req;
    req.set_client_key_id("k");
    req.set_request_id("q1");
    req.set_model("m");
    req.set_estimated_input_tokens(1000);
    req.set_max_output_tokens(1000);
    absl::StatusOr<v1::Reservation> r =
        Call<v1::Reservation>([&](auto cb) { usage->Reserve(req, std::move(cb)); });
    ASSERT_TRUE(r.ok());
    EXPECT_TRUE(r->allowed());
    EXPECT_NEAR(r->estimated_cost_usd(), 0.002, 1e-12);
    v1::SettleRequest s;
    s.set_reservation_id(r->id());
    ASSERT_TRUE(
        Call<v1::SettleResponse>([&](auto cb) { usage->Settle(s, std::move(cb)); })->found());
    v1::UsageRecord rec = Rec("q1", "k", now, 10000, 0);
    rec.set_upstream_model("m");
    usage->Record(rec);  // $0.01: the limit
    ASSERT_EQ(usage->Flush(10s), 0u);
  }
  UsagePtr usage = Make(Store(), o);
  v1::ReserveRequest req;
  req.set_client_key_id("k");
  req.set_request_id("q2");
  req.set_model("m");
  absl::StatusOr<v1::Reservation> r =
      Call<v1::Reservation>([&](auto cb) { usage->Reserve(req, std::move(cb)); });
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->allowed()) << "spend of the day must survive the restart";
  EXPECT_NE(r->message().find("Daily budget exceeded for key 'k'"), std::string::npos)
      << r->message();
}

TEST_F(LocalUsageTest, RateLimitsApplyWithoutAnyBudget) {
  UsagePtr usage = Make(Store(), Options());
  auto reserve = [&](const std::string& id) {
    v1::ReserveRequest req;
    req.set_client_key_id("k");
    req.set_request_id(id);
    req.set_model("m");
    req.set_rpm_limit(2);
    return Call<v1::Reservation>([&](auto cb) { usage->Reserve(req, std::move(cb)); });
  };
  ASSERT_TRUE(reserve("a")->allowed());
  ASSERT_TRUE(reserve("b")->allowed());
  absl::StatusOr<v1::Reservation> r = reserve("c");
  ASSERT_TRUE(r.ok());
  // The third may land in a new minute when the test runs across one.
  if (!r->allowed()) {
    EXPECT_EQ(r->code(), "rate_limit_exceeded");
    EXPECT_GE(r->retry_after_seconds(), 1);
    EXPECT_LE(r->retry_after_seconds(), 60);
  } else {
    EXPECT_FALSE(reserve("d")->allowed());
  }
}

TEST_F(LocalUsageTest, RuntimePricingAndBudgetsArePersisted) {
  {
    UsagePtr usage = Make(Store(), Options());
    v1::PricingEntry e;
    e.set_provider("openai");
    e.set_model("gpt-custom*");
    e.set_input(4);
    e.set_output(5);
    ASSERT_TRUE(
        Call<v1::PricingEntry>([&](auto cb) { usage->UpsertPricing(e, std::move(cb)); }).ok());
    v1::Budget b;
    b.set_team("t");
    b.set_monthly_usd(12);
    ASSERT_TRUE(Call<v1::BudgetStatus>([&](auto cb) { usage->SetBudget(b, std::move(cb)); }).ok());
  }
  UsagePtr usage = Make(Store(), Options());
  absl::StatusOr<v1::PricingList> list =
      Call<v1::PricingList>([&](auto cb) { usage->ListPricing(std::move(cb)); });
  ASSERT_TRUE(list.ok());
  bool found = false;
  for (const auto& e : list->entries()) {
    found = found || (e.model() == "gpt-custom*" && e.source() == "api" && e.input() == 4);
  }
  EXPECT_TRUE(found);
  absl::StatusOr<v1::BudgetList> budgets = Call<v1::BudgetList>(
      [&](auto cb) { usage->ListBudgets(v1::ListBudgetsRequest(), std::move(cb)); });
  ASSERT_TRUE(budgets.ok());
  ASSERT_EQ(budgets->budgets_size(), 1);
  EXPECT_EQ(budgets->budgets(0).budget().monthly_usd(), 12);
  v1::DeletePricingRequest del;
  del.set_provider("openai");
  del.set_model("gpt-custom*");
  EXPECT_TRUE(Call<v1::Ack>([&](auto cb) { usage->DeletePricing(del, std::move(cb)); }).ok());
}

TEST_F(LocalUsageTest, ExportAndImport) {
  UsagePtr usage = Make(Store(), Options());
  usage->Record(Rec("a", "k", Now(), 1, 1));
  ASSERT_EQ(usage->Flush(10s), 0u);
  absl::StatusOr<v1::DataChunk> db =
      Call<v1::DataChunk>([&](auto cb) { usage->ExportDatabase("sqlite", std::move(cb)); });
  ASSERT_TRUE(db.ok()) << db.status();
  EXPECT_EQ(db->data().substr(0, 15), "SQLite format 3");
  absl::StatusOr<v1::DataChunk> all =
      Call<v1::DataChunk>([&](auto cb) { usage->ExportDatabase("all", std::move(cb)); });
  ASSERT_TRUE(all.ok()) << all.status();
  auto files = ReadTarGz(all->data());
  ASSERT_TRUE(files.ok()) << files.status();
  ASSERT_EQ(files->size(), 4u);
  EXPECT_EQ((*files)[1].first, "omniroute.sqlite");

  usage->Record(Rec("b", "k", Now(), 1, 1));
  ASSERT_EQ(usage->Flush(10s), 0u);
  EXPECT_EQ(QueryAll(usage).total_requests(), 2);
  absl::StatusOr<v1::ImportResult> imported =
      Call<v1::ImportResult>([&](auto cb) { usage->ImportDatabase(db->data(), std::move(cb)); });
  ASSERT_TRUE(imported.ok()) << imported.status();
  EXPECT_EQ(imported->records(), 1);
  EXPECT_TRUE(std::filesystem::exists(imported->backup_path()));
  EXPECT_EQ(QueryAll(usage).total_requests(), 1);
  // The tar.gz works too; garbage does not.
  EXPECT_TRUE(Call<v1::ImportResult>([&](auto cb) {
                usage->ImportDatabase(all->data(), std::move(cb));
              }).ok());
  absl::StatusOr<v1::ImportResult> bad = Call<v1::ImportResult>(
      [&](auto cb) { usage->ImportDatabase("not a database at all", std::move(cb)); });
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(QueryAll(usage).total_requests(), 1);
}

}  // namespace
}  // namespace omniroute::usage
