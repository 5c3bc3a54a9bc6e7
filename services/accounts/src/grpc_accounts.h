#pragma once

#include <grpcpp/grpcpp.h>
#include <grpcpp/impl/service_type.h>

#include <memory>

#include "accounts.h"

namespace omniroute::accounts {

// The accounts.v1.Accounts gRPC service over an implementation (converts and delegates).
std::unique_ptr<grpc::Service> MakeAccountsGrpcService(AccountsPtr impl);

// Accounts that calls a remote accounts service over `channel`.
AccountsPtr MakeAccountsGrpcClient(std::shared_ptr<grpc::Channel> channel);

}  // namespace omniroute::accounts
