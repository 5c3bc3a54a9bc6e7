#include "local_accounts.h"

#include <gtest/gtest.h>

namespace omniroute::accounts {
namespace {

AccountsPtr Make() {
  auto c = ParseConfig(R"(
nodes: [ { id: local, format: openai, base_url: "http://127.0.0.1:9/v1" } ]
connections:
  - { provider: local, name: a, api_key: sk-a }
  - { provider: anthropic, name: c, api_key: sk-ant }
  - { provider: gemini, name: g, api_key: g-key }
api_keys: [ { name: team, key: sk-team-123 } ]
)");
  EXPECT_TRUE(c.ok()) << c.status();
  auto config = std::make_shared<const Config>(*c);
  return MakeLocalAccounts(config, *BuildRegistry(*config));
}

TEST(LocalAccountsTest, ResolvesConfiguredKeysOnly) {
  auto acc = Make();
  absl::StatusOr<v1::ClientKey> got = absl::UnknownError("");
  acc->ResolveClientKey("sk-team-123", [&](auto r) { got = std::move(r); });
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->name(), "team");
  EXPECT_EQ(got->id(), "cfg:team");
  acc->ResolveClientKey("sk-team-124", [&](auto r) { got = std::move(r); });
  EXPECT_EQ(got.status().code(), absl::StatusCode::kNotFound);
}

TEST(LocalAccountsTest, CredentialHeadersFollowTheProvider) {
  auto acc = Make();
  auto headers = [&](const std::string& id) {
    std::map<std::string, std::string> out;
    acc->GetCredential(id, [&](absl::StatusOr<v1::Credential> c) {
      ASSERT_TRUE(c.ok()) << c.status();
      for (const auto& h : c->headers()) out[h.name()] = h.value();
    });
    return out;
  };
  EXPECT_EQ(headers("local:a")["authorization"], "Bearer sk-a");
  auto ant = headers("anthropic:c");
  EXPECT_EQ(ant["x-api-key"], "sk-ant");
  EXPECT_EQ(ant["anthropic-version"], "2023-06-01");
  EXPECT_EQ(headers("gemini:g")["x-goog-api-key"], "g-key");
  absl::Status s;
  acc->GetCredential("nope:x", [&](auto c) { s = c.status(); });
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace omniroute::accounts
