#include "grpc_accounts.h"

#include <chrono>
#include <future>
#include <string>

#include "absl/strings/str_cat.h"
#include "common/grpc_util.h"
#include "gtest/gtest.h"

namespace omniroute::accounts {
namespace {

using namespace std::chrono_literals;

class FakeAccounts final : public Accounts {
 public:
  void ResolveClientKey(const std::string& key, Callback<v1::ClientKey> done) override {
    if (key != "sk-good") {
      done(absl::NotFoundError("unknown key"));
      return;
    }
    v1::ClientKey k;
    k.set_id("key-1");
    k.set_name("team");
    k.set_cache_ttl_s(30);
    done(std::move(k));
  }

  void GetCredential(const v1::GetCredentialRequest& request,
                     Callback<v1::Credential> done) override {
    v1::Credential c;
    auto* h = c.add_headers();
    h->set_name("authorization");
    h->set_value(absl::StrCat(request.refresh() ? "Bearer refreshed for " : "Bearer for ",
                              request.connection_id(), request.failed_token_sha256()));
    c.set_token_sha256("abc");
    done(std::move(c));
  }

  void GetCatalog(int64_t known_version, Callback<v1::Catalog> done) override {
    v1::Catalog c;
    c.set_version(7);
    if (known_version == 7) {
      c.set_not_modified(true);
    } else {
      c.mutable_access()->add_ip_denylist("10.0.0.0/8");
    }
    done(std::move(c));
  }

  void Admin(const v1::AdminRequest& request, Callback<v1::AdminResponse> done) override {
    if (request.path() == "/api/missing") {
      done(absl::NotFoundError("no such route"));
      return;
    }
    v1::AdminResponse r;
    r.set_status(201);
    r.set_body(absl::StrCat(R"({"actor":")", request.actor(), R"(","query":")", request.query(),
                            R"("})"));
    auto* h = r.add_headers();
    h->set_name("set-cookie");
    h->set_value("auth_token=x");
    done(std::move(r));
  }

  void ReportQuota(const v1::QuotaReport& report) override { quota.set_value(report); }

  std::promise<v1::QuotaReport> quota;
};

TEST(GrpcAccountsTest, ResolvesKeysAndCredentialsOverTheWire) {
  std::unique_ptr<grpc::Service> service =
      MakeAccountsGrpcService(std::make_shared<FakeAccounts>());
  int port = 0;
  std::unique_ptr<grpc::Server> server = StartGrpcServer("127.0.0.1:0", {service.get()}, &port);
  ASSERT_NE(server, nullptr);
  AccountsPtr client = MakeAccountsGrpcClient(MakeServiceChannel(absl::StrCat("127.0.0.1:", port)));

  std::promise<absl::StatusOr<v1::ClientKey>> p1;
  client->ResolveClientKey("sk-good",
                           [&](absl::StatusOr<v1::ClientKey> r) { p1.set_value(std::move(r)); });
  absl::StatusOr<v1::ClientKey> key = p1.get_future().get();
  ASSERT_TRUE(key.ok()) << key.status();
  EXPECT_EQ(key->id(), "key-1");
  EXPECT_EQ(key->cache_ttl_s(), 30);

  std::promise<absl::StatusOr<v1::ClientKey>> p2;
  client->ResolveClientKey("sk-bad",
                           [&](absl::StatusOr<v1::ClientKey> r) { p2.set_value(std::move(r)); });
  EXPECT_EQ(p2.get_future().get().status().code(), absl::StatusCode::kNotFound);

  v1::GetCredentialRequest creq;
  creq.set_connection_id("openai:main");
  std::promise<absl::StatusOr<v1::Credential>> p3;
  client->GetCredential(creq,
                        [&](absl::StatusOr<v1::Credential> r) { p3.set_value(std::move(r)); });
  absl::StatusOr<v1::Credential> cred = p3.get_future().get();
  ASSERT_TRUE(cred.ok()) << cred.status();
  ASSERT_EQ(cred->headers_size(), 1);
  EXPECT_EQ(cred->headers(0).value(), "Bearer for openai:main");
  EXPECT_EQ(cred->token_sha256(), "abc");

  creq.set_refresh(true);
  creq.set_failed_token_sha256("/abc");
  std::promise<absl::StatusOr<v1::Credential>> p4;
  client->GetCredential(creq,
                        [&](absl::StatusOr<v1::Credential> r) { p4.set_value(std::move(r)); });
  cred = p4.get_future().get();
  ASSERT_TRUE(cred.ok()) << cred.status();
  EXPECT_EQ(cred->headers(0).value(), "Bearer refreshed for openai:main/abc");

  server->Shutdown(std::chrono::system_clock::now() + 1s);
}

TEST(GrpcAccountsTest, CatalogAndAdminOverTheWire) {
  std::unique_ptr<grpc::Service> service =
      MakeAccountsGrpcService(std::make_shared<FakeAccounts>());
  int port = 0;
  std::unique_ptr<grpc::Server> server = StartGrpcServer("127.0.0.1:0", {service.get()}, &port);
  ASSERT_NE(server, nullptr);
  AccountsPtr client = MakeAccountsGrpcClient(MakeServiceChannel(absl::StrCat("127.0.0.1:", port)));

  std::promise<absl::StatusOr<v1::Catalog>> p1;
  client->GetCatalog(0, [&](absl::StatusOr<v1::Catalog> r) { p1.set_value(std::move(r)); });
  absl::StatusOr<v1::Catalog> catalog = p1.get_future().get();
  ASSERT_TRUE(catalog.ok()) << catalog.status();
  EXPECT_EQ(catalog->version(), 7);
  EXPECT_FALSE(catalog->not_modified());
  ASSERT_EQ(catalog->access().ip_denylist_size(), 1);
  EXPECT_EQ(catalog->access().ip_denylist(0), "10.0.0.0/8");

  std::promise<absl::StatusOr<v1::Catalog>> p2;
  client->GetCatalog(7, [&](absl::StatusOr<v1::Catalog> r) { p2.set_value(std::move(r)); });
  catalog = p2.get_future().get();
  ASSERT_TRUE(catalog.ok()) << catalog.status();
  EXPECT_TRUE(catalog->not_modified());

  v1::AdminRequest areq;
  areq.set_method("POST");
  areq.set_path("/api/keys");
  areq.set_query("a=1");
  areq.set_actor("session:admin");
  std::promise<absl::StatusOr<v1::AdminResponse>> p3;
  client->Admin(areq, [&](absl::StatusOr<v1::AdminResponse> r) { p3.set_value(std::move(r)); });
  absl::StatusOr<v1::AdminResponse> answer = p3.get_future().get();
  ASSERT_TRUE(answer.ok()) << answer.status();
  EXPECT_EQ(answer->status(), 201);
  EXPECT_EQ(answer->body(), R"({"actor":"session:admin","query":"a=1"})");
  ASSERT_EQ(answer->headers_size(), 1);
  EXPECT_EQ(answer->headers(0).name(), "set-cookie");

  areq.set_path("/api/missing");
  std::promise<absl::StatusOr<v1::AdminResponse>> p4;
  client->Admin(areq, [&](absl::StatusOr<v1::AdminResponse> r) { p4.set_value(std::move(r)); });
  EXPECT_EQ(p4.get_future().get().status().code(), absl::StatusCode::kNotFound);

  server->Shutdown(std::chrono::system_clock::now() + 1s);
}

TEST(GrpcAccountsTest, QuotaReportsReachTheService) {
  auto fake = std::make_shared<FakeAccounts>();
  std::future<v1::QuotaReport> received = fake->quota.get_future();
  std::unique_ptr<grpc::Service> service = MakeAccountsGrpcService(fake);
  int port = 0;
  std::unique_ptr<grpc::Server> server = StartGrpcServer("127.0.0.1:0", {service.get()}, &port);
  ASSERT_NE(server, nullptr);
  AccountsPtr client = MakeAccountsGrpcClient(MakeServiceChannel(absl::StrCat("127.0.0.1:", port)));

  v1::QuotaReport report;
  report.set_connection_id("claude:max");
  v1::QuotaWindow* w = report.add_windows();
  w->set_name("5h");
  w->set_used_percent(42.5);
  w->set_resets_at_ms(1700000000000);
  w->set_window_minutes(300);
  client->ReportQuota(report);  // returns at once
  ASSERT_EQ(received.wait_for(5s), std::future_status::ready);
  v1::QuotaReport got = received.get();
  EXPECT_EQ(got.connection_id(), "claude:max");
  ASSERT_EQ(got.windows_size(), 1);
  EXPECT_DOUBLE_EQ(got.windows(0).used_percent(), 42.5);
  EXPECT_EQ(got.windows(0).resets_at_ms(), 1700000000000);

  client.reset();  // waits for the call in flight
  server->Shutdown(std::chrono::system_clock::now() + 1s);
}

}  // namespace
}  // namespace omniroute::accounts
