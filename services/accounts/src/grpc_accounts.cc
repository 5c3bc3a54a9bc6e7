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
constexpr auto kCatalogTimeout = 5s;
// Admin calls may exchange an OAuth code or test a provider upstream.
constexpr auto kAdminTimeout = 30s;
constexpr auto kReportTimeout = 5s;

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
      impl_->GetCredential(*request, std::move(done));
    });
  }

  grpc::ServerUnaryReactor* GetCatalog(grpc::CallbackServerContext* context,
                                       const v1::GetCatalogRequest* request,
                                       v1::Catalog* response) override {
    return ServeUnary<v1::Catalog>(context, response, [&](Callback<v1::Catalog> done) {
      impl_->GetCatalog(request->known_version(), std::move(done));
    });
  }

  grpc::ServerUnaryReactor* Admin(grpc::CallbackServerContext* context,
                                  const v1::AdminRequest* request,
                                  v1::AdminResponse* response) override {
    return ServeUnary<v1::AdminResponse>(context, response, [&](Callback<v1::AdminResponse> done) {
      impl_->Admin(*request, std::move(done));
    });
  }

  grpc::ServerUnaryReactor* ReportQuota(grpc::CallbackServerContext* context,
                                        const v1::QuotaReport* request,
                                        v1::QuotaAck* /*response*/) override {
    return grpc_adapter::ServeNow(context, [&] { impl_->ReportQuota(*request); });
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

  void GetCredential(const v1::GetCredentialRequest& request,
                     Callback<v1::Credential> done) override {
    CallUnary<v1::Credential>(
        in_flight_, [this](auto... a) { stub_->async()->GetCredential(a...); }, request,
        std::move(done), kCredentialTimeout);
  }

  void GetCatalog(int64_t known_version, Callback<v1::Catalog> done) override {
    v1::GetCatalogRequest request;
    request.set_known_version(known_version);
    CallUnary<v1::Catalog>(
        in_flight_, [this](auto... a) { stub_->async()->GetCatalog(a...); }, std::move(request),
        std::move(done), kCatalogTimeout);
  }

  void Admin(const v1::AdminRequest& request, Callback<v1::AdminResponse> done) override {
    CallUnary<v1::AdminResponse>(
        in_flight_, [this](auto... a) { stub_->async()->Admin(a...); }, request, std::move(done),
        kAdminTimeout);
  }

  void ReportQuota(const v1::QuotaReport& report) override {
    // Fire and forget: a lost report is replaced by the next response's.
    CallUnary<v1::QuotaAck>(
        in_flight_, [this](auto... a) { stub_->async()->ReportQuota(a...); }, report,
        [](absl::StatusOr<v1::QuotaAck>) {}, kReportTimeout);
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
