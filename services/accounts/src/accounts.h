#pragma once

#include <memory>
#include <string>

#include "common/callback.h"
#include "omniroute/accounts/v1/accounts.pb.h"

namespace omniroute::accounts {

// Owns client keys and provider credentials.
class Accounts {
 public:
  virtual ~Accounts() = default;

  // The client key presented by a caller; NOT_FOUND when unknown or disabled.
  virtual void ResolveClientKey(const std::string& key, Callback<v1::ClientKey> done) = 0;

  // Headers that authenticate upstream requests on a connection; NOT_FOUND when unknown.
  virtual void GetCredential(const std::string& connection_id, Callback<v1::Credential> done) = 0;
};

using AccountsPtr = std::shared_ptr<Accounts>;

}  // namespace omniroute::accounts
