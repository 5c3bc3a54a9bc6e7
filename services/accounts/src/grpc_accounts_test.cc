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

  void GetCredential(const std::string& connection_id, Callback<v1::Credential> done) override {
    v1::Credential c;
    auto* h = c.add_headers();
    h->set_name("authorization");
    h->set_value(absl::StrCat("Bearer for ", connection_id));
    done(std::move(c));
  }
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

  std::promise<absl::StatusOr<v1::Credential>> p3;
  client->GetCredential("openai:main",
                        [&](absl::StatusOr<v1::Credential> r) { p3.set_value(std::move(r)); });
  absl::StatusOr<v1::Credential> cred = p3.get_future().get();
  ASSERT_TRUE(cred.ok()) << cred.status();
  ASSERT_EQ(cred->headers_size(), 1);
  EXPECT_EQ(cred->headers(0).value(), "Bearer for openai:main");

  server->Shutdown(std::chrono::system_clock::now() + 1s);
}

}  // namespace
}  // namespace omniroute::accounts
