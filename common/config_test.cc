#include "common/config.h"

#include <gtest/gtest.h>

namespace omniroute {
namespace {

TEST(ConfigTest, ParsesTheDocumentedKeys) {
  auto c = ParseConfig(R"(
server: { port: 8080, require_api_key: true }
nodes:
  - id: local
    format: openai
    base_url: http://127.0.0.1:8000/v1/
connections:
  - { provider: local, name: acct-a, api_key: sk-a, priority: 1 }
api_keys:
  - { name: team, key: sk-team-123 }
)");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->server.port, 8080);
  EXPECT_TRUE(c->server.require_api_key);
  ASSERT_EQ(c->nodes.size(), 1u);
  EXPECT_EQ(c->nodes[0].base_url, "http://127.0.0.1:8000/v1");
  EXPECT_EQ(c->nodes[0].prefixes.front(), "local");
  ASSERT_EQ(c->connections.size(), 1u);
  EXPECT_EQ(c->connections[0].id, "local:acct-a");
  EXPECT_EQ(c->connections[0].api_key, "sk-a");
  EXPECT_EQ(c->api_keys[0].key, "sk-team-123");
}

TEST(ConfigTest, RequireApiKeyDefaultsToFalse) {
  auto c = ParseConfig("server: { port: 1 }");
  ASSERT_TRUE(c.ok());
  EXPECT_FALSE(c->server.require_api_key);
  EXPECT_EQ(ParseConfig("")->server.port, 20128);
}

TEST(ConfigTest, UnknownKeyNamesItsPath) {
  auto c = ParseConfig("server: { port: 1, prot: 2 }");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("server.prot"), std::string::npos) << c.status();
  c = ParseConfig("connections:\n  - { provider: openai, name: a, api_kee: x }\n");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("connections[0].api_kee"), std::string::npos);
}

TEST(ConfigTest, WrongTypeNamesItsPath) {
  auto c = ParseConfig("server: { port: abc }");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("server.port: expected an integer"), std::string::npos);
  c = ParseConfig("server: { require_api_key: maybe }");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("server.require_api_key"), std::string::npos);
  c = ParseConfig("nodes: { id: x }");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("nodes: expected a list"), std::string::npos);
  c = ParseConfig("nodes: [ { id: x, format: soap, base_url: 'http://a' } ]");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("nodes[0].format"), std::string::npos);
}

TEST(ConfigTest, ApiKeyEnv) {
  setenv("OMNI_TEST_KEY_B", "sk-b", 1);
  auto c = ParseConfig("connections: [ { provider: openai, name: b, api_key_env: OMNI_TEST_KEY_B } ]");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->connections[0].api_key, "sk-b");
  c = ParseConfig("connections: [ { provider: openai, name: b, api_key_env: OMNI_TEST_UNSET_X } ]");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("OMNI_TEST_UNSET_X"), std::string::npos);
}

TEST(ConfigTest, RegistryKnowsBuiltInsAndNodes) {
  auto c = ParseConfig(R"(
nodes: [ { id: glm, format: anthropic, base_url: "http://127.0.0.1:9/v1" } ]
connections: [ { provider: cc, name: a, api_key: x } ]
)");
  ASSERT_TRUE(c.ok()) << c.status();
  auto reg = BuildRegistry(*c);
  ASSERT_TRUE(reg.ok()) << reg.status();
  ASSERT_NE((*reg)->Find("openai"), nullptr);
  EXPECT_EQ((*reg)->Find("openai")->base_url, "https://api.openai.com/v1");
  EXPECT_EQ((*reg)->Find("cc")->id, "claude-code");
  EXPECT_EQ((*reg)->Find("ds")->id, "deepseek");
  // The node shadows the built-in glm.
  EXPECT_EQ((*reg)->Find("glm")->format, common::v1::FORMAT_ANTHROPIC);
  EXPECT_EQ((*reg)->Find("nope"), nullptr);

  auto bad = ParseConfig("connections: [ { provider: nope, name: a, api_key: x } ]");
  ASSERT_TRUE(bad.ok());
  EXPECT_FALSE(BuildRegistry(*bad).ok());
}

TEST(ConfigTest, LoadConfigAppliesEnvironmentAndGeneratesSecrets) {
  char tmpl[] = "/tmp/omni-config-XXXXXX";
  std::string dir = mkdtemp(tmpl);
  setenv("DATA_DIR", dir.c_str(), 1);
  setenv("PORT", "31337", 1);
  setenv("REQUIRE_API_KEY", "true", 1);
  unsetenv("OMNIROUTE_CONFIG");
  unsetenv("OMNIROUTE_ADMIN_KEY");
  auto c = LoadConfig("");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ((*c)->server.port, 31337);
  EXPECT_TRUE((*c)->server.require_api_key);
  EXPECT_EQ((*c)->storage.sqlite_path, dir + "/omniroute.db");
  EXPECT_EQ((*c)->admin_key.rfind("sk-admin-", 0), 0u);
  EXPECT_GE((*c)->jwt_secret.size(), 32u);
  // The generated secrets are kept: a second load sees the same values.
  auto again = LoadConfig("");
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->admin_key, (*c)->admin_key);
  EXPECT_EQ((*again)->jwt_secret, (*c)->jwt_secret);
  setenv("PORT", "nope", 1);
  EXPECT_FALSE(LoadConfig("").ok());
  unsetenv("PORT");
  unsetenv("REQUIRE_API_KEY");
  EXPECT_FALSE(LoadConfig(dir + "/missing.yaml").ok());
  unsetenv("DATA_DIR");
}

}  // namespace
}  // namespace omniroute
