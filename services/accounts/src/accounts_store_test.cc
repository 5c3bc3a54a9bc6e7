#include "accounts_store.h"

#include <gtest/gtest.h>

#include <cstdlib>

namespace omniroute::accounts {
namespace {

void Exercise(AccountsStore& s) {
  auto v0 = s.Version();
  ASSERT_TRUE(v0.ok()) << v0.status();
  ASSERT_TRUE(s.Put({"key", "k1", R"({"name":"a"})", "enc:v1:x", 1}).ok());
  ASSERT_TRUE(s.Put({"key", "k2", R"({"name":"b"})", "", 2}).ok());
  ASSERT_TRUE(s.Put({"node", "n1", "{}", "", 3}).ok());
  EXPECT_EQ(*s.Version(), *v0 + 3);
  auto keys = s.List("key");
  ASSERT_TRUE(keys.ok());
  ASSERT_EQ(keys->size(), 2u);
  EXPECT_EQ((*keys)[0].id, "k1");
  EXPECT_EQ((*keys)[0].secret, "enc:v1:x");
  ASSERT_TRUE(s.Put({"key", "k1", R"({"name":"c"})", "", 4}).ok());  // replace
  auto got = s.Get("key", "k1");
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->doc, R"({"name":"c"})");
  EXPECT_EQ((*got)->secret, "");
  EXPECT_FALSE(s.Get("key", "zz")->has_value());
  EXPECT_TRUE(*s.Delete("key", "k1"));
  const int64_t v = *s.Version();
  EXPECT_FALSE(*s.Delete("key", "k1"));
  EXPECT_EQ(*s.Version(), v);  // nothing changed
  EXPECT_EQ(s.List("key")->size(), 1u);
  EXPECT_TRUE(s.Migrate().ok());  // idempotent
}

TEST(AccountsStoreTest, Sqlite) {
  auto s = MakeSqliteAccountsStore(":memory:");
  ASSERT_TRUE(s.ok()) << s.status();
  Exercise(**s);
}

// Runs with OMNI_TEST_PG_URL (scripts/test.sh starts a throwaway PostgreSQL).
TEST(AccountsStoreTest, Postgres) {
  const char* url = std::getenv("OMNI_TEST_PG_URL");
  if (!url) GTEST_SKIP() << "OMNI_TEST_PG_URL not set";
  auto s = MakePostgresAccountsStore(url);
  ASSERT_TRUE(s.ok()) << s.status();
  for (const char* kind : {"key", "node"}) {
    for (const auto& o : *(*s)->List(kind)) (void)(*s)->Delete(kind, o.id);
  }
  Exercise(**s);
  // The advisory lock serialises holders.
  auto lock = MakePostgresLock(url);
  int inside = 0;
  ASSERT_TRUE(lock->With("oauth:x", [&] { ++inside; return absl::OkStatus(); }).ok());
  EXPECT_EQ(inside, 1);
}

}  // namespace
}  // namespace omniroute::accounts
