#include "local_accounts.h"

#include <unordered_map>

#include "absl/strings/str_cat.h"
#include "common/secrets.h"

namespace omniroute::accounts {
namespace {

class LocalAccounts final : public Accounts {
 public:
  LocalAccounts(ConfigPtr config, std::shared_ptr<const ProviderRegistry> registry)
      : config_(std::move(config)) {
    for (const auto& k : config_->api_keys) {
      v1::ClientKey key;
      key.set_id(absl::StrCat("cfg:", k.name));
      key.set_name(k.name);
      key.set_cache_ttl_s(60);
      keys_by_hash_[Sha256Hex(k.key)] = std::move(key);
    }
    for (const auto& c : config_->connections) {
      const ProviderSpec* p = registry->Find(c.provider);
      if (!p) continue;
      v1::Credential cred;
      auto add = [&cred](std::string name, std::string value) {
        auto* h = cred.add_headers();
        h->set_name(std::move(name));
        h->set_value(std::move(value));
      };
      switch (p->auth) {
        case common::v1::AUTH_STYLE_BEARER:
          if (!c.api_key.empty()) add("authorization", absl::StrCat("Bearer ", c.api_key));
          break;
        case common::v1::AUTH_STYLE_X_API_KEY:
          add("x-api-key", c.api_key);
          break;
        case common::v1::AUTH_STYLE_GOOG_API_KEY:
          add("x-goog-api-key", c.api_key);
          break;
        default:
          break;
      }
      if (p->format == common::v1::FORMAT_ANTHROPIC) add("anthropic-version", "2023-06-01");
      credentials_[c.id] = std::move(cred);
    }
  }

  // Interface
  void ResolveClientKey(const std::string& key, Callback<v1::ClientKey> done) override {
    auto it = keys_by_hash_.find(Sha256Hex(key));
    if (it == keys_by_hash_.end()) {
      done(absl::NotFoundError("Incorrect API key provided"));
      return;
    }
    done(it->second);
  }

  void GetCredential(const std::string& connection_id, Callback<v1::Credential> done) override {
    auto it = credentials_.find(connection_id);
    if (it == credentials_.end()) {
      done(absl::NotFoundError(absl::StrCat("unknown connection '", connection_id, "'")));
      return;
    }
    done(it->second);
  }

 private:
  ConfigPtr config_;
  std::unordered_map<std::string, v1::ClientKey> keys_by_hash_;
  std::unordered_map<std::string, v1::Credential> credentials_;
};

}  // namespace

AccountsPtr MakeLocalAccounts(ConfigPtr config, std::shared_ptr<const ProviderRegistry> registry) {
  return std::make_shared<LocalAccounts>(std::move(config), std::move(registry));
}

}  // namespace omniroute::accounts
