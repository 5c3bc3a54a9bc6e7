#include "local_usage.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <future>

namespace omniroute::usage {
namespace {

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

class LocalUsageTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/omni-usage-XXXXXX";
    dir_ = mkdtemp(tmpl);
  }
  std::string dir_;
};

TEST_F(LocalUsageTest, RecordsLandInSqliteOnceEach) {
  auto store = MakeSqliteUsageStore(dir_ + "/u.db");
  ASSERT_TRUE(store.ok()) << store.status();
  ASSERT_TRUE((*store)->Migrate().ok());
  UsagePtr usage = MakeLocalUsage(std::move(store).value());
  for (int i = 0; i < 1200; ++i) usage->Record(Rec("r" + std::to_string(i), "k1", 1000 + i, 10, 5));
  usage->Record(Rec("r5", "k1", 5000, 999, 999));  // a replay: ignored
  usage->Record(Rec("x", "k2", 3000, 1, 1));
  EXPECT_EQ(usage->Flush(std::chrono::seconds(10)), 0u);

  std::promise<absl::StatusOr<v1::QueryResponse>> done;
  v1::QueryRequest q;
  q.set_client_key_id("k1");
  q.set_limit(3);
  usage->Query(q, [&](auto r) { done.set_value(std::move(r)); });
  auto res = done.get_future().get();
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_EQ(res->total_requests(), 1200);
  EXPECT_EQ(res->total_input_tokens(), 12000);
  ASSERT_EQ(res->records_size(), 3);
  EXPECT_EQ(res->records(0).request_id(), "r1199");  // newest first
  EXPECT_EQ(res->records(0).client_format(), common::v1::FORMAT_OPENAI_CHAT);
}

TEST_F(LocalUsageTest, MigrationIsIdempotentAndDataSurvivesReopen) {
  {
    auto store = MakeSqliteUsageStore(dir_ + "/v.db");
    ASSERT_TRUE((*store)->Migrate().ok());
    ASSERT_TRUE((*store)->Write({Rec("a", "k", 1, 2, 3)}).ok());
  }
  auto store = MakeSqliteUsageStore(dir_ + "/v.db");
  ASSERT_TRUE((*store)->Migrate().ok());
  auto res = (*store)->Query(v1::QueryRequest());
  ASSERT_TRUE(res.ok());
  EXPECT_EQ(res->total_requests(), 1);
  EXPECT_EQ(res->records(0).output_tokens(), 3);
}

TEST_F(LocalUsageTest, UnwritableStoreFailsToOpen) {
  EXPECT_FALSE(MakeSqliteUsageStore("/nonexistent-dir/x/u.db").ok());
}

}  // namespace
}  // namespace omniroute::usage
