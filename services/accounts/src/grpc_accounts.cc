#include "grpc_accounts.h"

#include <chrono>
#include <utility>

#include "common/grpc_adapter.h"
#include "omniroute/accounts/v1/accounts.grpc.pb.h"

namespace omniroute::accounts {
namespace grpc_accounts_impl {
namespace {

using grpc_adapter::CallUnary;
using grpc_adapter::ServeUnary;
using namespace std::chrono_literals;

// Credential look-ups may refresh an OAuth token inside the service.
constexpr auto kResolveTimeout = 5s;
constexpr auto kCredentialTimeout = 15s;

class AccountsGrpcService final : public v1::Accounts::CallbackService {
 public:
  explicit AccountsGrpcService(AccountsPtr impl) : impl_(std::move(impl)) {}

  grpc::ServerUnaryReactor* ResolveClientKey(grpc::CallbackServerContext* context,
                                             const v1::ResolveClientKeyRequest* request,
                                             v1::ClientKey* response) override {
    return ServeUnary<v1::ClientKey>(context, response, [&](Callback<v1::ClientKey> done) {
      impl_->ResolveClientKey(request->key(), std::move(done));
    });
  }

  grpc::ServerUnaryReactor* GetCredential(grpc::CallbackServerContext* context,
                                          const v1::GetCredentialRequest* request,
                                          v1::Credential* response) override {
    return ServeUnary<v1::Credential>(context, response, [&](Callback<v1::Credential> done) {
      impl_->GetCredential(request->connection_id(), std::move(done));
    });
  }

 private:
  AccountsPtr impl_;
};

class AccountsGrpcClient final : public Accounts {
 public:
  explicit AccountsGrpcClient(std::shared_ptr<grpc::Channel> channel)
      : stub_(v1::Accounts::NewStub(std::move(channel))) {}

  ~AccountsGrpcClient() override { in_flight_->Drain(grpc_adapter::kClientDrainGrace); }

  // Interface
  void ResolveClientKey(const std::string& key, Callback<v1::ClientKey> done) override {
    v1::ResolveClientKeyRequest request;
    request.set_key(key);
    CallUnary<v1::ClientKey>(
        in_flight_, [this](auto... a) { stub_->async()->ResolveClientKey(a...); },
        std::move(request), std::move(done), kResolveTimeout);
  }

  void GetCredential(const std::string& connection_id, Callback<v1::Credential> done) override {
    v1::GetCredentialRequest request;
    request.set_connection_id(connection_id);
    CallUnary<v1::Credential>(
        in_flight_, [this](auto... a) { stub_->async()->GetCredential(a...); }, std::move(request),
        std::move(done), kCredentialTimeout);
  }

 private:
  std::unique_ptr<v1::Accounts::Stub> stub_;
  std::shared_ptr<grpc_adapter::InFlightCalls> in_flight_ =
      std::make_shared<grpc_adapter::InFlightCalls>();
};

}  // namespace
}  // namespace grpc_accounts_impl

std::unique_ptr<grpc::Service> MakeAccountsGrpcService(AccountsPtr impl) {
  return std::make_unique<grpc_accounts_impl::AccountsGrpcService>(std::move(impl));
}

AccountsPtr MakeAccountsGrpcClient(std::shared_ptr<grpc::Channel> channel) {
  return std::make_shared<grpc_accounts_impl::AccountsGrpcClient>(std::move(channel));
}

}  // namespace omniroute::accounts
