// Quota reports of subscription connections: kept in memory, shown by the admin API, put in
// the catalog, and stored only when they matter (every store write makes the routers fetch
// the catalog again).
#include <gtest/gtest.h>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <future>
#include <map>
#include <mutex>
#include <thread>

#include "local_accounts.h"

namespace omniroute::accounts {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;

// The SQLite store, counting the writes of each kind.
class CountingStore final : public AccountsStore {
 public:
  explicit CountingStore(AccountsStorePtr inner) : inner_(std::move(inner)) {}

  absl::Status Migrate() override { return inner_->Migrate(); }
  absl::StatusOr<std::vector<StoredObject>> List(const std::string& kind) override {
    return inner_->List(kind);
  }
  absl::StatusOr<std::optional<StoredObject>> Get(const std::string& kind,
                                                  const std::string& id) override {
    return inner_->Get(kind, id);
  }
  absl::Status Put(const StoredObject& object) override {
    absl::Status s = inner_->Put(object);
    std::lock_guard<std::mutex> lock(mu_);
    ++puts_[object.kind];
    if (object.kind == "quota") stored_quota_[object.id] = true;
    return s;
  }
  absl::StatusOr<bool> Delete(const std::string& kind, const std::string& id) override {
    auto existed = inner_->Delete(kind, id);
    std::lock_guard<std::mutex> lock(mu_);
    if (kind == "quota") stored_quota_[id] = false;
    return existed;
  }
  absl::StatusOr<int64_t> Version() override { return inner_->Version(); }
  std::string kind() const override { return inner_->kind(); }

  int Puts(const std::string& kind) {
    std::lock_guard<std::mutex> lock(mu_);
    return puts_[kind];
  }
  bool QuotaStored(const std::string& id) {
    std::lock_guard<std::mutex> lock(mu_);
    return stored_quota_[id];
  }

 private:
  AccountsStorePtr inner_;
  std::mutex mu_;
  std::map<std::string, int> puts_;
  std::map<std::string, bool> stored_quota_;
};

constexpr int64_t kStart = 1'800'000'000'000;
constexpr int64_t kHour = 3'600'000;

class QuotaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto c = ParseConfig(R"(
nodes: [ { id: local, format: openai, base_url: "http://127.0.0.1:9/v1" } ]
connections:
  - { provider: local, name: a, api_key: sk-a }
  - { provider: anthropic, name: c, api_key: sk-ant }
)");
    ASSERT_TRUE(c.ok()) << c.status();
    Config cfg = *c;
    cfg.api_key_secret = "key-secret";
    cfg.jwt_secret = "jwt-secret";
    cfg.initial_password = "first-password";
    AccountsOptions options;
    auto sqlite = MakeSqliteAccountsStore(":memory:");
    ASSERT_TRUE(sqlite.ok()) << sqlite.status();
    auto counting = std::make_unique<CountingStore>(std::move(sqlite).value());
    store_ = counting.get();
    options.store = std::move(counting);
    options.keyring = *crypto::Keyring::FromSecrets("storage-secret");
    options.clock = [this] { return now_.load(); };
    options.sync_interval_ms = 50;
    auto made = MakeLocalAccounts(std::make_shared<const Config>(cfg), std::move(options));
    ASSERT_TRUE(made.ok()) << made.status();
    acc_ = *made;
  }

  static v1::QuotaReport Report(const std::string& connection,
                                std::initializer_list<std::pair<double, int64_t>> windows) {
    static const char* kNames[] = {"5h", "7d"};
    v1::QuotaReport r;
    r.set_connection_id(connection);
    size_t i = 0;
    for (const auto& [used, reset] : windows) {
      v1::QuotaWindow* w = r.add_windows();
      w->set_name(kNames[i++ % 2]);
      w->set_used_percent(used);
      w->set_resets_at_ms(reset);
      w->set_window_minutes(i == 1 ? 300 : 10080);
    }
    return r;
  }

  json::object Admin(const std::string& method, const std::string& path) {
    v1::AdminRequest r;
    r.set_method(method);
    r.set_path(path);
    r.set_actor("admin-key");
    std::promise<absl::StatusOr<v1::AdminResponse>> p;
    acc_->Admin(r, [&](absl::StatusOr<v1::AdminResponse> a) { p.set_value(std::move(a)); });
    auto got = p.get_future().get();
    EXPECT_TRUE(got.ok()) << got.status();
    EXPECT_LT(got->status(), 300) << got->body();
    return json::parse(got->body()).as_object();
  }

  std::optional<v1::Connection> CatalogConnection(const std::string& id) {
    std::optional<v1::Connection> out;
    acc_->GetCatalog(0, [&](absl::StatusOr<v1::Catalog> c) {
      for (const auto& conn : c->connections()) {
        if (conn.id() == id) out = conn;
      }
    });
    return out;
  }

  // Polls `done` for up to 5 s.
  template <typename Fn>
  bool Eventually(Fn done) {
    for (int i = 0; i < 250; ++i) {
      if (done()) return true;
      std::this_thread::sleep_for(20ms);
    }
    return done();
  }

  int QuotaPuts() { return store_->Puts("quota"); }

  std::atomic<int64_t> now_{kStart};
  CountingStore* store_ = nullptr;  // owned by acc_
  AccountsPtr acc_;
};

TEST_F(QuotaTest, ReportShowsInTheAdminApiAndTheCatalog) {
  acc_->ReportQuota(Report("anthropic:c", {{40, kStart + kHour}, {70, kStart + 72 * kHour}}));

  const json::object conn = Admin("GET", "/api/providers/anthropic:c");
  ASSERT_TRUE(conn.contains("quota")) << json::serialize(conn);
  const json::object& q = conn.at("quota").as_object();
  const json::array& windows = q.at("windows").as_array();
  ASSERT_EQ(windows.size(), 2u);
  EXPECT_EQ(windows[0].at("name").as_string(), "5h");
  EXPECT_DOUBLE_EQ(windows[0].at("usedPercent").to_number<double>(), 40);
  EXPECT_EQ(windows[0].at("resetsAt").to_number<int64_t>(), kStart + kHour);
  EXPECT_EQ(windows[0].at("windowMinutes").to_number<int64_t>(), 300);
  EXPECT_DOUBLE_EQ(q.at("remainingPercent").to_number<double>(), 30);  // the 7d window limits
  EXPECT_EQ(q.at("resetsAt").to_number<int64_t>(), kStart + 72 * kHour);
  EXPECT_EQ(q.at("reportedAt").to_number<int64_t>(), kStart);
  // Listed too; connections without reports have no quota.
  const json::object list = Admin("GET", "/api/providers");
  int with_quota = 0;
  for (const auto& c : list.at("connections").as_array()) {
    with_quota += c.as_object().contains("quota") ? 1 : 0;
  }
  EXPECT_EQ(with_quota, 1);

  // The first report is stored, and the catalog carries it.
  ASSERT_TRUE(Eventually([&] {
    auto c = CatalogConnection("anthropic:c");
    return c && c->quota_size() == 2;
  }));
  auto c = CatalogConnection("anthropic:c");
  EXPECT_DOUBLE_EQ(c->quota_remaining_percent(), 30);
  EXPECT_EQ(c->quota_resets_at_ms(), kStart + 72 * kHour);
  EXPECT_DOUBLE_EQ(CatalogConnection("local:a")->quota_remaining_percent(), -1);

  // Spent: the window that limits it is the spent one, with its reset.
  acc_->ReportQuota(Report("anthropic:c", {{100, kStart + kHour}, {72, kStart + 72 * kHour}}));
  ASSERT_TRUE(Eventually([&] {
    auto spent = CatalogConnection("anthropic:c");
    return spent && spent->quota_remaining_percent() == 0;
  }));
  EXPECT_EQ(CatalogConnection("anthropic:c")->quota_resets_at_ms(), kStart + kHour);

  // Unknown connections are ignored.
  acc_->ReportQuota(Report("nope:x", {{50, kStart + kHour}}));
  std::this_thread::sleep_for(100ms);
  EXPECT_FALSE(store_->QuotaStored("nope:x"));
}

TEST_F(QuotaTest, SmallChangesAreStoredRarely) {
  acc_->ReportQuota(Report("anthropic:c", {{10, kStart + kHour}}));
  ASSERT_TRUE(Eventually([&] { return QuotaPuts() == 1; }));

  // 200 reports creeping up by 0.02 points each (4 points in all): memory only.
  for (int i = 1; i <= 200; ++i) {
    acc_->ReportQuota(Report("anthropic:c", {{10 + i * 0.02, kStart + kHour}}));
  }
  std::this_thread::sleep_for(200ms);
  EXPECT_EQ(QuotaPuts(), 1);
  // The admin API shows the latest all the same.
  const json::object q = Admin("GET", "/api/providers/anthropic:c").at("quota").as_object();
  EXPECT_NEAR(q.at("windows").as_array()[0].at("usedPercent").to_number<double>(), 14, 1e-9);

  // A minute later a change is stored once.
  now_ += 61'000;
  acc_->ReportQuota(Report("anthropic:c", {{14.1, kStart + kHour}}));
  ASSERT_TRUE(Eventually([&] { return QuotaPuts() == 2; }));
  // The same values again do not count as a change.
  now_ += 61'000;
  acc_->ReportQuota(Report("anthropic:c", {{14.1, kStart + kHour}}));
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(QuotaPuts(), 2);

  // 5 points at once.
  acc_->ReportQuota(Report("anthropic:c", {{19.2, kStart + kHour}}));
  ASSERT_TRUE(Eventually([&] { return QuotaPuts() == 3; }));
  // A reset time that moved (the window restarted).
  acc_->ReportQuota(Report("anthropic:c", {{19.2, kStart + 6 * kHour}}));
  ASSERT_TRUE(Eventually([&] { return QuotaPuts() == 4; }));
  // A reset that drifts by seconds (relative resets) is no change.
  acc_->ReportQuota(Report("anthropic:c", {{19.2, kStart + 6 * kHour + 2000}}));
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(QuotaPuts(), 4);
  // Spent: 97 → 99.8 is under 5 points but crosses the line the router goes by.
  acc_->ReportQuota(Report("anthropic:c", {{97, kStart + 6 * kHour}}));
  ASSERT_TRUE(Eventually([&] { return QuotaPuts() == 5; }));
  acc_->ReportQuota(Report("anthropic:c", {{99.8, kStart + 6 * kHour}}));
  ASSERT_TRUE(Eventually([&] { return QuotaPuts() == 6; }));
  // A second window appears.
  acc_->ReportQuota(Report("anthropic:c", {{99.8, kStart + 6 * kHour}, {30, kStart + 90 * kHour}}));
  ASSERT_TRUE(Eventually([&] { return QuotaPuts() == 7; }));
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(QuotaPuts(), 7);
}

TEST_F(QuotaTest, DeletingTheConnectionDeletesItsQuota) {
  v1::AdminRequest create;
  create.set_method("POST");
  create.set_path("/api/providers");
  create.set_body(R"({"provider":"openai","name":"team","apiKey":"sk-x"})");
  create.set_actor("admin-key");
  std::promise<int> created;
  acc_->Admin(create, [&](absl::StatusOr<v1::AdminResponse> r) { created.set_value(r->status()); });
  ASSERT_EQ(created.get_future().get(), 201);

  acc_->ReportQuota(Report("openai:team", {{55, kStart + kHour}}));
  ASSERT_TRUE(Eventually([&] { return store_->QuotaStored("openai:team"); }));
  Admin("DELETE", "/api/providers/openai:team");
  EXPECT_FALSE(store_->QuotaStored("openai:team"));
  EXPECT_FALSE(CatalogConnection("openai:team"));
}

}  // namespace
}  // namespace omniroute::accounts
