#include "common/metric_cache.h"

#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <string>
#include <thread>

#include "gtest/gtest.h"

namespace omniroute {
namespace {

TEST(MetricCacheTest, SameLabelValuesSameChild) {
  prometheus::Registry registry;
  auto& family = prometheus::BuildCounter().Name("c_total").Help("c").Register(registry);
  MetricCache cache;
  std::string route = "/v1/chat";
  prometheus::Counter& a = cache.Child(&family, {{"route", route}, {"status", "200"}});
  route = "/v1/chat";  // an equal value from another buffer
  prometheus::Counter& b = cache.Child(&family, {{"route", route}, {"status", "200"}});
  EXPECT_EQ(&a, &b);
  EXPECT_EQ(&a, &family.Add({{"route", "/v1/chat"}, {"status", "200"}}));
  prometheus::Counter& c = cache.Child(&family, {{"route", "/v1/chat"}, {"status", "500"}});
  EXPECT_NE(&a, &c);
  // Values are separated: ("a", "bc") is not ("ab", "c").
  EXPECT_NE(&cache.Child(&family, {{"route", "a"}, {"status", "bc"}}),
            &cache.Child(&family, {{"route", "ab"}, {"status", "c"}}));
}

TEST(MetricCacheTest, FamiliesAndCachesAreApart) {
  prometheus::Registry registry;
  auto& one = prometheus::BuildCounter().Name("one_total").Help("1").Register(registry);
  auto& two = prometheus::BuildCounter().Name("two_total").Help("2").Register(registry);
  MetricCache cache;
  EXPECT_EQ(&cache.Child(&one, {{"x", "v"}}), &one.Add({{"x", "v"}}));
  EXPECT_EQ(&cache.Child(&two, {{"x", "v"}}), &two.Add({{"x", "v"}}));
  {
    // Another registry's family of the same name, through another cache.
    prometheus::Registry other;
    auto& three = prometheus::BuildCounter().Name("one_total").Help("1").Register(other);
    MetricCache cache2;
    EXPECT_EQ(&cache2.Child(&three, {{"x", "v"}}), &three.Add({{"x", "v"}}));
  }
  EXPECT_EQ(&cache.Child(&one, {{"x", "v"}}), &one.Add({{"x", "v"}}));
}

TEST(MetricCacheTest, HistogramBucketsAndThreads) {
  prometheus::Registry registry;
  auto& family = prometheus::BuildHistogram().Name("h_seconds").Help("h").Register(registry);
  const prometheus::Histogram::BucketBoundaries buckets = {0.1, 1, 10};
  MetricCache cache;
  prometheus::Histogram* seen[2] = {};
  std::thread t([&] {
    seen[0] = &cache.Child(&family, {{"route", "r"}}, buckets);
    seen[0]->Observe(0.5);
  });
  t.join();
  seen[1] = &cache.Child(&family, {{"route", "r"}}, buckets);
  seen[1]->Observe(5);
  EXPECT_EQ(seen[0], seen[1]);
  const prometheus::ClientMetric m = seen[1]->Collect();
  EXPECT_EQ(m.histogram.sample_count, 2u);
  ASSERT_EQ(m.histogram.bucket.size(), 4u);  // 0.1, 1, 10, +Inf
  EXPECT_EQ(m.histogram.bucket[1].cumulative_count, 1u);
}

TEST(MetricCacheTest, EmptyLabelSet) {
  prometheus::Registry registry;
  auto& family = prometheus::BuildCounter().Name("e_total").Help("e").Register(registry);
  MetricCache cache;
  cache.Child(&family, {}).Increment(2);
  cache.Child(&family, {}).Increment();
  EXPECT_EQ(family.Add({}).Value(), 3);
}

}  // namespace
}  // namespace omniroute
