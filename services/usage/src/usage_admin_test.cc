#include "usage_admin.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <filesystem>
#include <future>

#include "absl/strings/str_cat.h"
#include "local_usage.h"

namespace omniroute::usage {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class UsageAdminTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/omni-admin-XXXXXX";
    dir_ = mkdtemp(tmpl);
    auto store = MakeSqliteUsageStore(dir_ + "/u.db");
    ASSERT_TRUE(store.ok());
    ASSERT_TRUE((*store)->Migrate().ok());
    LocalUsageOptions o;
    o.data_dir = dir_;
    o.spool_dir = dir_ + "/spool";
    BudgetSpec cfg;
    cfg.key_id = "cfg:fixed";
    cfg.daily_usd = 1;
    o.budgets = {cfg};
    auto usage = MakeLocalUsage(std::move(store).value(), o);
    ASSERT_TRUE(usage.ok());
    usage_ = *usage;
  }
  void TearDown() override {
    usage_.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  AdminResponse Do(const std::string& method, const std::string& target,
                   const std::string& body = "", bool admin = true, const std::string& key = "",
                   const std::string& content_type = "") {
    AdminRequest r;
    r.method = method;
    const size_t q = target.find('?');
    r.path = target.substr(0, q);
    r.query = q == std::string::npos ? "" : target.substr(q + 1);
    r.body = body;
    r.is_admin = admin;
    r.client_key_id = key;
    r.content_type = content_type;
    std::promise<absl::StatusOr<AdminResponse>> p;
    HandleUsageAdmin(usage_, r, [&](absl::StatusOr<AdminResponse> res) { p.set_value(res); });
    absl::StatusOr<AdminResponse> res = p.get_future().get();
    EXPECT_TRUE(res.ok());
    return res.ok() ? *res : AdminResponse();
  }

  static json::value Body(const AdminResponse& r) { return json::parse(r.body); }

  void Seed() {
    const int64_t now = WallMs();
    for (int i = 0; i < 30; ++i) {
      v1::UsageRecord r;
      r.set_request_id(absl::StrCat("r", i));
      r.set_timestamp_ms(now - i * 1000);
      r.set_client_key_id(i % 3 == 0 ? "k1" : "k2");
      r.set_provider(i % 2 == 0 ? "openai" : "anthropic");
      r.set_upstream_model(i % 2 == 0 ? "gpt-4o" : "claude-sonnet-4-5");
      r.set_connection_id(i % 2 == 0 ? "openai:a" : "anthropic:b");
      r.set_status(i == 5 ? 500 : 200);
      r.set_input_tokens(1000);
      r.set_output_tokens(100);
      usage_->Record(r);
    }
    ASSERT_EQ(usage_->Flush(10s), 0u);
  }

  std::string dir_;
  UsagePtr usage_;
};

TEST_F(UsageAdminTest, BudgetApiFollowsTheUserGuide) {
  AdminResponse r = Do("POST", "/api/usage/budget",
                       R"({"keyId": "key-123", "limit": 50.00, "period": "monthly"})");
  ASSERT_EQ(r.status, 200) << r.body;
  json::value v = Body(r);
  EXPECT_TRUE(v.at("success").as_bool());
  EXPECT_EQ(v.at("budget").at("monthlyLimitUsd").to_number<double>(), 50);
  // A second call with another period keeps the first limit.
  r = Do("POST", "/api/usage/budget", R"({"keyId": "key-123", "limit": 5, "period": "daily"})");
  ASSERT_EQ(r.status, 200) << r.body;
  r = Do("GET", "/api/usage/budget?apiKeyId=key-123");
  ASSERT_EQ(r.status, 200) << r.body;
  v = Body(r);
  EXPECT_EQ(v.at("dailyLimitUsd").to_number<double>(), 5);
  EXPECT_EQ(v.at("monthlyLimitUsd").to_number<double>(), 50);
  EXPECT_TRUE(v.at("weeklyLimitUsd").is_null());
  EXPECT_EQ(v.at("totalCostToday").to_number<double>(), 0);
  EXPECT_TRUE(v.at("budgetCheck").at("allowed").as_bool());
  EXPECT_EQ(v.at("budgetCheck").at("remaining").to_number<double>(), 5);
  // OmniRoute's dashboard shape.
  r = Do("PUT", "/api/usage/budget",
         R"({"apiKeyId": "key-123", "dailyLimitUsd": null, "warningThreshold": 90})");
  ASSERT_EQ(r.status, 200) << r.body;
  v = Body(Do("GET", "/api/usage/budget?apiKeyId=key-123"));
  EXPECT_TRUE(v.at("dailyLimitUsd").is_null());
  EXPECT_EQ(v.at("warningThreshold").to_number<double>(), 90);
  // The list has the config budget and this one.
  v = Body(Do("GET", "/api/usage/budget"));
  EXPECT_EQ(v.at("budgets").as_array().size(), 2u);
  // Config budgets cannot be changed at run time.
  EXPECT_EQ(Do("POST", "/api/usage/budget", R"({"keyId": "cfg:fixed", "limit": 9})").status, 403);
  EXPECT_EQ(Do("POST", "/api/usage/budget", R"({"limit": 9})").status, 400);
  EXPECT_EQ(Do("POST", "/api/usage/budget", R"({"keyId": "x", "limit": -1})").status, 400);
  EXPECT_EQ(Do("POST", "/api/usage/budget", "not json").status, 400);
  EXPECT_EQ(Do("DELETE", "/api/usage/budget?apiKeyId=key-123").status, 200);
  EXPECT_EQ(Do("DELETE", "/api/usage/budget?apiKeyId=key-123").status, 404);
  EXPECT_EQ(Do("POST", "/api/usage/budget", R"({"team": "research", "weeklyLimitUsd": 10})").status,
            200);
}

TEST_F(UsageAdminTest, PricingApi) {
  AdminResponse r = Do("GET", "/api/pricing");
  ASSERT_EQ(r.status, 200);
  EXPECT_GT(Body(r).at("data").as_array().size(), 50u);
  r = Do(
      "PUT", "/api/pricing",
      R"({"provider": "openai", "model": "gpt-4o", "input": 1, "output": 2, "cached_input": 0.5})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r).at("data").at(0).at("source").as_string(), "api");
  r = Do(
      "POST", "/api/pricing",
      R"({"pricing": [{"model": "a*", "input": 1, "output": 1}, {"model": "b", "input": 2, "output": 2}]})");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(Body(r).at("data").as_array().size(), 2u);
  EXPECT_EQ(Do("PUT", "/api/pricing", R"({"model": "x", "input": "cheap"})").status, 400);
  EXPECT_EQ(Do("PUT", "/api/pricing", R"({"model": "x", "input": 1, "bogus": 1})").status, 400);
  EXPECT_EQ(Do("DELETE", "/api/pricing?provider=openai&model=gpt-4o").status, 200);
  EXPECT_EQ(Do("DELETE", "/api/pricing?provider=openai&model=gpt-4o").status, 404);
  EXPECT_EQ(Do("DELETE", "/api/pricing?model=a*").status, 200);
  EXPECT_EQ(Do("DELETE", "/api/pricing").status, 400);
}

TEST_F(UsageAdminTest, RequestLogSummaryAndSeries) {
  Seed();
  AdminResponse r = Do("GET", "/api/usage/requests?key_id=k1&limit=4");
  ASSERT_EQ(r.status, 200) << r.body;
  json::value v = Body(r);
  EXPECT_EQ(v.at("total_requests").as_int64(), 10);
  EXPECT_EQ(v.at("data").as_array().size(), 4u);
  EXPECT_EQ(v.at("next_offset").as_int64(), 4);
  EXPECT_EQ(v.at("data").at(0).at("request_id").as_string(), "r0");
  v = Body(Do("GET", "/api/usage/requests?errors=1"));
  EXPECT_EQ(v.at("total_requests").as_int64(), 1);
  v = Body(Do("GET", "/api/usage/requests?model=gpt-4o&provider=openai&since=1h"));
  EXPECT_EQ(v.at("total_requests").as_int64(), 15);
  EXPECT_EQ(Do("GET", "/api/usage/requests?since=yesterday-ish").status, 400);

  r = Do("GET", "/api/usage/summary?group_by=model");
  ASSERT_EQ(r.status, 200) << r.body;
  v = Body(r);
  EXPECT_EQ(v.at("totals").at("requests").as_int64(), 30);
  EXPECT_EQ(v.at("totals").at("errors").as_int64(), 1);
  ASSERT_EQ(v.at("groups").as_array().size(), 2u);
  // gpt-4o: 1000 × 2.5 + 100 × 10 per request; claude-sonnet-4-5: 1000 × 3 + 100 × 15.
  double total = 0;
  for (const json::value& g : v.at("groups").as_array()) {
    total += g.at("cost_usd").to_number<double>();
  }
  EXPECT_NEAR(total, 15 * 0.0035 + 15 * 0.0045, 1e-9);
  EXPECT_EQ(Do("GET", "/api/usage/summary?group_by=color").status, 400);
  v = Body(Do("GET", "/api/usage/summary?group_by=key"));
  EXPECT_EQ(v.at("groups").as_array().size(), 2u);

  r = Do("GET", "/api/usage/timeseries?bucket=minute&since=1h&group_by=provider");
  ASSERT_EQ(r.status, 200) << r.body;
  v = Body(r);
  EXPECT_EQ(v.at("bucket_ms").as_int64(), 60000);
  int64_t requests = 0;
  for (const json::value& p : v.at("series").as_array()) {
    requests += p.at("requests").as_int64();
  }
  EXPECT_EQ(requests, 30);
  EXPECT_EQ(Do("GET", "/api/usage/timeseries?bucket=1&since=1000d").status, 400);
}

TEST_F(UsageAdminTest, SelfServiceIsTheOnlyRouteForClientKeys) {
  Seed();
  ASSERT_EQ(
      Do("POST", "/api/usage/budget", R"({"keyId": "k1", "limit": 1, "period": "daily"})").status,
      200);
  AdminResponse r = Do("GET", "/api/usage/self", "", /*admin=*/false, "k1");
  ASSERT_EQ(r.status, 200) << r.body;
  json::value v = Body(r);
  EXPECT_EQ(v.at("keyId").as_string(), "k1");
  EXPECT_EQ(v.at("today").at("requests").as_int64(), 10);
  EXPECT_EQ(v.at("budget").at("dailyLimitUsd").to_number<double>(), 1);
  EXPECT_TRUE(v.at("budget").at("budgetCheck").at("allowed").as_bool());
  EXPECT_LT(v.at("budget").at("budgetCheck").at("remaining").to_number<double>(), 1);
  EXPECT_EQ(Do("GET", "/api/usage/self", "", false, "").status, 400);
  EXPECT_EQ(Do("GET", "/api/usage/requests", "", false, "k1").status, 403);
  EXPECT_EQ(Do("GET", "/api/pricing", "", false, "k1").status, 403);
  EXPECT_EQ(Do("GET", "/api/usage/self?keyId=k2").status, 200);
  EXPECT_EQ(Do("POST", "/api/usage/self", "", false, "k1").status, 405);
}

TEST_F(UsageAdminTest, UnknownRoutesAndMethods) {
  EXPECT_EQ(Do("GET", "/api/usage/nothing").status, 404);
  EXPECT_EQ(Do("GET", "/api/combos").status, 404);
  EXPECT_EQ(Do("DELETE", "/api/usage/requests").status, 405);
  EXPECT_FALSE(IsUsageAdminPath("/api/combos"));
  EXPECT_TRUE(IsUsageAdminPath("/api/db-backups/export"));
}

TEST_F(UsageAdminTest, DatabaseBackups) {
  Seed();
  AdminResponse r = Do("GET", "/api/db-backups/export");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.content_type, "application/vnd.sqlite3");
  ASSERT_EQ(r.headers.size(), 1u);
  EXPECT_EQ(r.headers[0].first, "Content-Disposition");
  const std::string db = r.body;
  r = Do("GET", "/api/db-backups/exportAll");
  ASSERT_EQ(r.status, 200);
  EXPECT_EQ(r.content_type, "application/gzip");

  const std::string boundary = "----omni";
  const std::string multipart =
      absl::StrCat("--", boundary,
                   "\r\nContent-Disposition: form-data; name=\"file\"; filename=\"b.sqlite\"\r\n"
                   "Content-Type: application/octet-stream\r\n\r\n",
                   db, "\r\n--", boundary, "--\r\n");
  r = Do("POST", "/api/db-backups/import", multipart, true, "",
         absl::StrCat("multipart/form-data; boundary=", boundary));
  ASSERT_EQ(r.status, 200) << r.body;
  json::value v = Body(r);
  EXPECT_TRUE(v.at("success").as_bool());
  EXPECT_EQ(v.at("records").as_int64(), 30);
  EXPECT_TRUE(v.as_object().contains("backup"));
  r = Do("POST", "/api/db-backups/import", "garbage");
  EXPECT_EQ(r.status, 400) << r.body;
  EXPECT_EQ(Do("GET", "/api/db-backups/import").status, 405);
}

}  // namespace
}  // namespace omniroute::usage
