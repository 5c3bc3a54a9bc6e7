#include <unistd.h>

#include <cstdlib>
#include <pqxx/pqxx>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"
#include "usage_store.h"

// Runs against the PostgreSQL named by OMNI_TEST_PG_URL (a libpq URI or key=value string);
// skipped when it is unset. Each test works in a schema of its own, dropped afterwards.
namespace omniroute::usage {
namespace {

v1::UsageRecord MakeRecord(const std::string& id, int64_t ts, const std::string& key) {
  v1::UsageRecord r;
  r.set_request_id(id);
  r.set_timestamp_ms(ts);
  r.set_client_key_id(key);
  r.set_provider("anthropic");
  r.set_connection_id("anthropic:main");
  r.set_requested_model("cc/claude-sonnet");
  r.set_upstream_model("claude-sonnet-4");
  r.set_client_format(common::v1::FORMAT_OPENAI_CHAT);
  r.set_upstream_format(common::v1::FORMAT_ANTHROPIC);
  r.set_status(200);
  r.set_latency_ms(1234);
  r.set_ttft_ms(321);
  r.set_input_tokens(100);
  r.set_output_tokens(20);
  r.set_cached_tokens(5);
  r.set_reasoning_tokens(7);
  r.set_stream(true);
  r.set_cost_usd(0.000123456789);
  r.set_team("team-a");
  r.set_combo("my-combo");
  r.set_combo_step(1);
  r.set_cache_creation_tokens(3);
  return r;
}

class PostgresUsageStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* url = std::getenv("OMNI_TEST_PG_URL");
    if (url == nullptr || *url == '\0') {
      GTEST_SKIP() << "OMNI_TEST_PG_URL is not set";
    }
    base_url_ = url;
    schema_ = absl::StrCat("omni_test_", getpid(), "_", counter_++);
    {
      pqxx::connection c(base_url_);
      pqxx::work tx(c);
      tx.exec0(absl::StrCat("CREATE SCHEMA ", schema_));
      tx.commit();
    }
    const bool uri = base_url_.rfind("postgres", 0) == 0;
    url_ = uri ? absl::StrCat(base_url_, base_url_.find('?') == std::string::npos ? "?" : "&",
                              "options=-csearch_path%3D", schema_)
               : absl::StrCat(base_url_, " options=-csearch_path=", schema_);
    absl::StatusOr<UsageStorePtr> store = MakePostgresUsageStore(url_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = std::move(store).value();
    const absl::Status migrated = store_->Migrate();
    ASSERT_TRUE(migrated.ok()) << migrated;
  }

  void TearDown() override {
    store_.reset();
    if (!schema_.empty()) {
      pqxx::connection c(base_url_);
      pqxx::work tx(c);
      tx.exec0(absl::StrCat("DROP SCHEMA ", schema_, " CASCADE"));
      tx.commit();
    }
  }

  static inline int counter_ = 0;
  std::string base_url_;
  std::string schema_;
  std::string url_;
  UsageStorePtr store_;
};

TEST_F(PostgresUsageStoreTest, MigratesOnceAndIsIdempotent) {
  const absl::Status again = store_->Migrate();
  ASSERT_TRUE(again.ok()) << again;
  pqxx::connection c(url_);
  pqxx::read_transaction tx(c);
  EXPECT_EQ(tx.exec1("SELECT COUNT(*) FROM schema_migrations")[0].as<int>(), 2);
  EXPECT_EQ(tx.exec1("SELECT COUNT(*) FROM pg_indexes WHERE tablename = 'usage_records' "
                     "AND schemaname = current_schema()")[0]
                .as<int>(),
            4);
}

TEST_F(PostgresUsageStoreTest, WritesRoundTripAndSkipDuplicates) {
  const v1::UsageRecord r = MakeRecord("req-1", 1000, "key-a");
  ASSERT_TRUE(store_->Write({r}).ok());
  v1::UsageRecord changed = r;
  changed.set_status(500);
  ASSERT_TRUE(store_->Write({changed, MakeRecord("req-2", 2000, "key-a")}).ok());

  absl::StatusOr<v1::QueryResponse> q = store_->Query(v1::QueryRequest());
  ASSERT_TRUE(q.ok()) << q.status();
  ASSERT_EQ(q->records_size(), 2);
  EXPECT_EQ(q->records(0).request_id(), "req-2");
  const v1::UsageRecord& got = q->records(1);
  EXPECT_EQ(got.SerializeAsString(), r.SerializeAsString()) << got.DebugString();
  EXPECT_EQ(q->total_requests(), 2);
  EXPECT_EQ(q->total_input_tokens(), 200);
  EXPECT_EQ(q->total_output_tokens(), 40);
  EXPECT_DOUBLE_EQ(q->total_cost_usd(), 2 * 0.000123456789);
}

TEST_F(PostgresUsageStoreTest, QueriesFilterLimitAndTotal) {
  std::vector<v1::UsageRecord> batch;
  for (int i = 0; i < 1200; ++i) {
    batch.push_back(MakeRecord(absl::StrCat("r", i), 10000 + i, i % 2 == 0 ? "even" : "odd"));
  }
  ASSERT_TRUE(store_->Write(batch).ok());

  v1::QueryRequest req;
  absl::StatusOr<v1::QueryResponse> q = store_->Query(req);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->records_size(), 100);
  EXPECT_EQ(q->records(0).request_id(), "r1199");
  EXPECT_EQ(q->total_requests(), 1200);

  req.set_limit(5000);
  q = store_->Query(req);
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->records_size(), 1000);

  req.set_client_key_id("odd");
  req.set_since_ms(11100);
  req.set_limit(3);
  q = store_->Query(req);
  ASSERT_TRUE(q.ok()) << q.status();
  ASSERT_EQ(q->records_size(), 3);
  EXPECT_EQ(q->records(0).request_id(), "r1199");
  EXPECT_EQ(q->records(1).request_id(), "r1197");
  EXPECT_EQ(q->total_requests(), 50);
  EXPECT_EQ(q->total_input_tokens(), 5000);
}

TEST_F(PostgresUsageStoreTest, ReconnectsAfterTheConnectionBreaks) {
  ASSERT_TRUE(store_->Write({MakeRecord("a", 1, "k")}).ok());
  {
    pqxx::connection c(base_url_);
    pqxx::work tx(c);
    const pqxx::result killed = tx.exec(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid <> pg_backend_pid() "
        "AND datname = current_database() AND backend_type = 'client backend'");
    EXPECT_GE(killed.size(), 1u);
    tx.commit();
  }
  // The first call may see the broken connection; the caller retries.
  absl::Status s = store_->Write({MakeRecord("b", 2, "k")});
  if (!s.ok()) {
    EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
    s = store_->Write({MakeRecord("b", 2, "k")});
  }
  EXPECT_TRUE(s.ok()) << s;
  absl::StatusOr<v1::QueryResponse> q = store_->Query(v1::QueryRequest());
  ASSERT_TRUE(q.ok()) << q.status();
  EXPECT_EQ(q->total_requests(), 2);
}

TEST_F(PostgresUsageStoreTest, ReportsWhichRecordsWereNew) {
  ASSERT_TRUE(store_->Write({MakeRecord("a", 1, "k")}).ok());
  std::vector<bool> inserted;
  ASSERT_TRUE(
      store_->Write({MakeRecord("a", 1, "k"), MakeRecord("b", 2, "k"), MakeRecord("b", 2, "k")},
                    &inserted)
          .ok());
  EXPECT_EQ(inserted, (std::vector<bool>{false, true, false}));
}

TEST_F(PostgresUsageStoreTest, StatsSpendAndFilters) {
  const int64_t day = 86400000;
  std::vector<v1::UsageRecord> batch;
  for (int i = 0; i < 40; ++i) {
    v1::UsageRecord r = MakeRecord(absl::StrCat("s", i), 10 * day + i * 3600000,
                                   i % 2 == 0 ? "k1" : "k2");
    r.set_provider(i % 4 == 0 ? "openai" : "anthropic");
    r.set_status(i == 3 ? 429 : 200);
    r.set_cost_usd(0.5);
    batch.push_back(r);
  }
  ASSERT_TRUE(store_->Write(batch).ok());
  v1::StatsRequest q;
  q.set_group_by("provider");
  absl::StatusOr<v1::StatsResponse> st = store_->Stats(q);
  ASSERT_TRUE(st.ok()) << st.status();
  EXPECT_EQ(st->totals().requests(), 40);
  EXPECT_EQ(st->totals().errors(), 1);
  EXPECT_DOUBLE_EQ(st->totals().cost_usd(), 20);
  ASSERT_EQ(st->rows_size(), 2);
  EXPECT_EQ(st->rows(0).group(), "anthropic");  // the most expensive first
  EXPECT_EQ(st->rows(0).requests(), 30);
  q.set_bucket_ms(day);
  q.set_group_by("");
  st = store_->Stats(q);
  ASSERT_TRUE(st.ok()) << st.status();
  ASSERT_EQ(st->rows_size(), 2);  // 40 hours over two days
  EXPECT_EQ(st->rows(0).bucket_start_ms(), 10 * day);
  EXPECT_EQ(st->rows(0).requests(), 24);
  q.set_group_by("nope");
  EXPECT_EQ(store_->Stats(q).status().code(), absl::StatusCode::kInvalidArgument);

  absl::StatusOr<std::vector<SpendRow>> spend = store_->SpendByDay(10 * day, 0);
  ASSERT_TRUE(spend.ok()) << spend.status();
  double total = 0;
  for (const SpendRow& row : *spend) {
    total += row.cost_usd;
    EXPECT_EQ(row.team, "team-a");
    EXPECT_TRUE(row.day == 10 || row.day == 11) << row.day;
  }
  EXPECT_DOUBLE_EQ(total, 20);

  v1::QueryRequest filter;
  filter.set_provider("openai");
  filter.set_status_min(400);
  absl::StatusOr<v1::QueryResponse> none = store_->Query(filter);
  ASSERT_TRUE(none.ok()) << none.status();
  EXPECT_EQ(none->total_requests(), 0);
  filter.set_provider("anthropic");
  filter.set_limit(1);
  absl::StatusOr<v1::QueryResponse> one = store_->Query(filter);
  ASSERT_TRUE(one.ok()) << one.status();
  EXPECT_EQ(one->total_requests(), 1);
  EXPECT_EQ(one->total_errors(), 1);
  EXPECT_EQ(one->records(0).request_id(), "s3");
}

TEST_F(PostgresUsageStoreTest, PricingAndBudgetsRoundTrip) {
  v1::PricingEntry e;
  e.set_provider("openai");
  e.set_model("gpt-*");
  e.set_input(1.5);
  e.set_output(6);
  e.set_cached_input(0.25);
  e.set_updated_ms(42);
  ASSERT_TRUE(store_->SavePricing(e).ok());
  e.set_input(2);
  ASSERT_TRUE(store_->SavePricing(e).ok());
  absl::StatusOr<std::vector<v1::PricingEntry>> p = store_->LoadPricing();
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->size(), 1u);
  EXPECT_EQ((*p)[0].input(), 2);
  EXPECT_TRUE((*p)[0].has_cached_input());
  EXPECT_FALSE((*p)[0].has_reasoning());
  ASSERT_TRUE(store_->DeletePricing("openai", "gpt-*").ok());
  EXPECT_TRUE(store_->LoadPricing()->empty());

  v1::Budget b;
  b.set_team("t");
  b.set_weekly_usd(3);
  b.set_warn_at(0.5);
  ASSERT_TRUE(store_->SaveBudget(b).ok());
  absl::StatusOr<std::vector<v1::Budget>> budgets = store_->LoadBudgets();
  ASSERT_TRUE(budgets.ok()) << budgets.status();
  ASSERT_EQ(budgets->size(), 1u);
  EXPECT_EQ((*budgets)[0].weekly_usd(), 3);
  ASSERT_TRUE(store_->DeleteBudget("", "t").ok());
  EXPECT_TRUE(store_->LoadBudgets()->empty());
  EXPECT_EQ(store_->Backup("/tmp/x").code(), absl::StatusCode::kUnimplemented);
}

TEST(PostgresUsageStoreStandaloneTest, UnreachableServerIsAnError) {
  absl::StatusOr<UsageStorePtr> store =
      MakePostgresUsageStore("postgresql://nobody@127.0.0.1:1/none?connect_timeout=2");
  EXPECT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), absl::StatusCode::kUnavailable) << store.status();
}

}  // namespace
}  // namespace omniroute::usage
