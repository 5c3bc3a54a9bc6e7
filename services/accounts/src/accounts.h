#pragma once

#include <cstdint>
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
  // With `refresh`, the token identified by `failed_token_sha256` was refused upstream.
  virtual void GetCredential(const v1::GetCredentialRequest& request,
                             Callback<v1::Credential> done) = 0;

  // Nodes, connections, custom models and access settings; only the version (not_modified)
  // when nothing changed since `known_version`.
  virtual void GetCatalog(int64_t known_version, Callback<v1::Catalog> done) = 0;

  // The accounts admin API (keys, providers, nodes, models, OAuth, login, security).
  virtual void Admin(const v1::AdminRequest& request, Callback<v1::AdminResponse> done) = 0;

  // The quota windows a provider announced on a connection. Returns at once, without an
  // answer (callers on an event loop fire and forget); reports of unknown connections are
  // ignored.
  virtual void ReportQuota(const v1::QuotaReport& /*report*/) {}
};

using AccountsPtr = std::shared_ptr<Accounts>;

}  // namespace omniroute::accounts
