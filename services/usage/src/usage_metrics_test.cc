#include "usage_metrics.h"

#include <string>
#include <thread>

#include "absl/strings/str_cat.h"
#include "gtest/gtest.h"

namespace omniroute::usage {
namespace {

v1::UsageRecord Rec(const std::string& key, const std::string& model, int status = 200) {
  v1::UsageRecord r;
  r.set_client_key_id(key);
  r.set_provider("mock");
  r.set_upstream_model(model);
  r.set_status(status);
  r.set_input_tokens(10);
  r.set_output_tokens(3);
  r.set_cost_usd(0.5);
  return r;
}

bool Has(const std::string& text, const std::string& line) {
  return text.find(line + "\n") != std::string::npos;
}

TEST(UsageMetricsTest, LabelsAndValues) {
  UsageMetrics m(10);
  m.Recorded(Rec("k", "m1"), true);
  m.Recorded(Rec("k", "m1", 502), true);
  v1::UsageRecord bare;
  bare.set_requested_model("m2");
  bare.set_input_tokens(7);
  bare.set_cached_tokens(2);
  bare.set_cache_creation_tokens(1);
  bare.set_reasoning_tokens(0);
  m.Recorded(bare, false);
  const std::string t = m.Text();
  EXPECT_TRUE(Has(t, R"(omniroute_usage_records_total{provider="mock",status_class="2xx"} 1)"))
      << t;
  EXPECT_TRUE(Has(t, R"(omniroute_usage_records_total{provider="mock",status_class="5xx"} 1)"))
      << t;
  EXPECT_TRUE(Has(t, R"(omniroute_usage_records_total{provider="none",status_class="none"} 1)"))
      << t;
  EXPECT_TRUE(
      Has(t, R"(omniroute_usage_tokens_total{key="k",model="m1",provider="mock",type="input"} 20)"))
      << t;
  EXPECT_TRUE(
      Has(t, R"(omniroute_usage_tokens_total{key="k",model="m1",provider="mock",type="output"} 6)"))
      << t;
  EXPECT_TRUE(
      Has(t, R"(omniroute_usage_tokens_total{key="",model="m2",provider="none",type="cached"} 2)"))
      << t;
  EXPECT_TRUE(Has(
      t,
      R"(omniroute_usage_tokens_total{key="",model="m2",provider="none",type="cache_creation"} 1)"))
      << t;
  EXPECT_EQ(t.find(R"(type="reasoning")"), std::string::npos) << t;  // only counts above 0
  EXPECT_TRUE(Has(t, R"(omniroute_usage_cost_usd_total{key="k",model="m1",provider="mock"} 1)"))
      << t;
  EXPECT_TRUE(Has(t, R"(omniroute_usage_unpriced_records_total{provider="none"} 1)")) << t;
}

TEST(UsageMetricsTest, KeysPastTheTopAndModelsPastTheCapCountAsOther) {
  UsageMetrics m(2);
  m.SeedTopKeys({"big"});
  m.Recorded(Rec("big", "m"), true);
  m.Recorded(Rec("a", "m"), true);
  m.Recorded(Rec("b", "m"), true);  // third key: other
  m.Recorded(Rec("c", "m"), true);  // other
  m.Recorded(Rec("a", "m"), true);  // still its own
  for (int i = 0; i < 500; ++i) {
    m.Recorded(Rec("a", absl::StrCat("model-", i)), true);  // 499 new models fill the cap
  }
  const std::string t = m.Text();
  EXPECT_TRUE(Has(t, R"(omniroute_usage_cost_usd_total{key="big",model="m",provider="mock"} 0.5)"))
      << t;
  EXPECT_TRUE(Has(t, R"(omniroute_usage_cost_usd_total{key="a",model="m",provider="mock"} 1)"))
      << t;
  EXPECT_TRUE(Has(t, R"(omniroute_usage_cost_usd_total{key="other",model="m",provider="mock"} 1)"))
      << t;
  EXPECT_EQ(t.find(R"(key="b")"), std::string::npos) << t;
  EXPECT_TRUE(
      Has(t, R"(omniroute_usage_cost_usd_total{key="a",model="model-498",provider="mock"} 0.5)"))
      << t;
  EXPECT_EQ(t.find(R"(model="model-499")"), std::string::npos) << t;
  EXPECT_TRUE(
      Has(t, R"(omniroute_usage_cost_usd_total{key="a",model="other",provider="mock"} 0.5)"))
      << t;
}

TEST(UsageMetricsTest, ReservationsAndThreads) {
  UsageMetrics m(10);
  std::thread t1([&] {
    for (int i = 0; i < 100; ++i) m.Reservation(true, false, "");
  });
  std::thread t2([&] {
    for (int i = 0; i < 100; ++i) m.Reservation(true, false, "");
  });
  t1.join();
  t2.join();
  m.Reservation(true, true, "");
  m.Reservation(false, false, "daily");
  m.Reservation(false, false, "");
  const std::string t = m.Text();
  EXPECT_TRUE(Has(t, R"(omniroute_usage_reservations_total{result="allowed"} 200)")) << t;
  EXPECT_TRUE(Has(t, R"(omniroute_usage_reservations_total{result="held"} 1)")) << t;
  EXPECT_TRUE(Has(t, R"(omniroute_usage_reservations_total{result="denied"} 2)")) << t;
  EXPECT_TRUE(Has(t, R"(omniroute_usage_budget_rejections_total{window="daily"} 1)")) << t;
  EXPECT_TRUE(Has(t, R"(omniroute_usage_budget_rejections_total{window="unknown"} 1)")) << t;
}

}  // namespace
}  // namespace omniroute::usage
