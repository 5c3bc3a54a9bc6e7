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

TEST(ConfigTest, ConnectionProxy) {
  auto c = ParseConfig(
      "connections: [ { provider: openai, name: p, api_key: x, proxy: \"http://10.0.0.1:3128\" } ]");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->connections[0].proxy, "http://10.0.0.1:3128");
  c = ParseConfig("connections: [ { provider: openai, name: p, api_key: x, proxy: socks5://h:1 } ]");
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("connections[0].proxy"), std::string::npos);
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

TEST(ConfigTest, ProvidersEntryOverridesABuiltInBaseUrl) {
  auto c = ParseConfig(R"(
nodes: [ { id: local, format: openai, base_url: "http://127.0.0.1:8000/v1" } ]
providers:
  - { id: cc, base_url: "http://127.0.0.1:9999/api.anthropic.com/v1/" }
  - { id: codex, base_url: "http://127.0.0.1:9999/codex", routing: { strategy: p2c } }
)");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_EQ(c->provider_overrides.size(), 2u);
  EXPECT_EQ(c->provider_overrides[0].base_url, "http://127.0.0.1:9999/api.anthropic.com/v1");
  EXPECT_EQ(c->provider_overrides[1].routing.strategy, "p2c");
  auto reg = BuildRegistry(*c);
  ASSERT_TRUE(reg.ok()) << reg.status();
  // By prefix (cc) and by id (codex); the others keep the registry's.
  EXPECT_EQ((*reg)->Find("claude-code")->base_url, "http://127.0.0.1:9999/api.anthropic.com/v1");
  EXPECT_EQ((*reg)->Find("cc")->format, common::v1::FORMAT_ANTHROPIC);
  EXPECT_EQ((*reg)->Find("cx")->base_url, "http://127.0.0.1:9999/codex");
  EXPECT_EQ((*reg)->Find("openai")->base_url, "https://api.openai.com/v1");
  EXPECT_EQ((*reg)->Find("local")->base_url, "http://127.0.0.1:8000/v1");

  // A bad URL names its path; a node or an unknown provider takes no base_url here.
  auto bad = ParseConfig("providers: [ { id: cc, base_url: 'ftp://x' } ]");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("providers[0].base_url"), std::string::npos) << bad.status();
  auto node = ParseConfig(R"(
nodes: [ { id: local, format: openai, base_url: "http://127.0.0.1:8000/v1" } ]
providers: [ { id: local, base_url: "http://127.0.0.1:1/v1" } ]
)");
  ASSERT_TRUE(node.ok()) << node.status();
  EXPECT_FALSE(BuildRegistry(*node).ok());
  auto unknown = ParseConfig("providers: [ { id: nope, base_url: 'http://127.0.0.1:1' } ]");
  ASSERT_TRUE(unknown.ok()) << unknown.status();
  EXPECT_FALSE(BuildRegistry(*unknown).ok());
}

TEST(ConfigTest, RoutingSectionsFromTheIssue) {
  auto c = ParseConfig(R"(
routing: { strategy: fill-first, sticky_limit: 3, session_ttl_s: 1800 }
nodes:
  - { id: local, format: openai, base_url: "http://127.0.0.1:8000/v1", routing: { strategy: round-robin, sticky_limit: 1 } }
providers:
  - { id: openai, routing: { strategy: p2c } }
combos:
  - { name: premium-coding, strategy: priority, models: [cc/claude-opus-4-7, glm/glm-4.7] }
  - { name: spread, strategy: weighted, models: [ { model: glm/glm-4.7, weight: 3 }, { model: minimax/MiniMax-M2.1, weight: 1 } ] }
aliases:
  - { pattern: "claude-sonnet-*", target: cc/claude-sonnet-4-5-20250929 }
fallback_chains:
  - { name: production-fallback, models: [cc/claude-opus-4-7, gh/gpt-5.1-codex, glm/glm-4.7] }
resilience:
  cooldown: { base_ms: { api_key: 3000, oauth: 5000 }, max_ms: 120000, max_backoff_steps: { api_key: 5, oauth: 8 }, use_upstream_retry_hints: true }
  breaker:  { failure_threshold: { api_key: 12, oauth: 8 }, reset_timeout_ms: { api_key: 30000, oauth: 60000 } }
  queue:    { rpm: 0, min_gap_ms: 0, max_concurrent: 0 }
  wait_for_cooldown: { enabled: true, max_wait_ms: 30000 }
)");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->routing.strategy, "fill-first");
  EXPECT_EQ(c->routing.session_ttl_s, 1800);
  ASSERT_EQ(c->provider_overrides.size(), 2u);
  EXPECT_EQ(c->provider_overrides[0].id, "openai");
  EXPECT_EQ(c->provider_overrides[0].routing.strategy, "p2c");
  EXPECT_EQ(c->provider_overrides[1].id, "local");
  EXPECT_EQ(c->provider_overrides[1].routing.strategy, "round-robin");
  EXPECT_EQ(c->provider_overrides[1].routing.sticky_limit, 1);
  ASSERT_EQ(c->combos.size(), 2u);
  EXPECT_EQ(c->combos[0].models[1].model, "glm/glm-4.7");
  EXPECT_EQ(c->combos[1].strategy, "weighted");
  EXPECT_EQ(c->combos[1].models[0].weight, 3);
  EXPECT_EQ(c->combos[1].models[1].weight, 1);
  ASSERT_EQ(c->aliases.size(), 1u);
  EXPECT_EQ(c->aliases[0].pattern, "claude-sonnet-*");
  ASSERT_EQ(c->fallback_chains.size(), 1u);
  EXPECT_EQ(c->fallback_chains[0].models.size(), 3u);
  EXPECT_EQ(c->resilience.cooldown.base_ms.oauth, 5000);
  EXPECT_EQ(c->resilience.cooldown.max_backoff_steps.oauth, 8);
  EXPECT_EQ(c->resilience.breaker.failure_threshold.api_key, 12);
  EXPECT_EQ(c->resilience.breaker.reset_timeout_ms.oauth, 60000);
  EXPECT_TRUE(c->resilience.wait_for_cooldown.enabled);
}

TEST(ConfigTest, ResilienceDefaultsAndNumberForBothAuthTypes) {
  auto c = ParseConfig("");
  ASSERT_TRUE(c.ok());
  const ResilienceConfig& r = c->resilience;
  EXPECT_EQ(r.cooldown.base_ms.api_key, 3000);
  EXPECT_EQ(r.cooldown.base_ms.oauth, 5000);
  EXPECT_EQ(r.cooldown.max_ms, 120000);
  EXPECT_EQ(r.cooldown.max_backoff_steps.api_key, 5);
  EXPECT_EQ(r.cooldown.max_backoff_steps.oauth, 8);
  EXPECT_EQ(r.breaker.failure_threshold.oauth, 8);
  EXPECT_EQ(r.breaker.reset_timeout_ms.api_key, 30000);
  EXPECT_EQ(r.breaker.max_reset_multiplier, 16);
  EXPECT_EQ(r.lockout.base_ms, 120000);
  EXPECT_EQ(r.lockout.max_ms, 1800000);
  EXPECT_EQ(r.queue.rpm, 0);
  EXPECT_EQ(r.wait_for_cooldown.max_wait_ms, 30000);
  EXPECT_EQ(r.wait_for_cooldown.max_retries, 3);
  EXPECT_EQ(c->routing.sticky_limit, 3);

  c = ParseConfig("resilience: { cooldown: { base_ms: 1000, max_backoff_steps: 2 } }");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->resilience.cooldown.base_ms.api_key, 1000);
  EXPECT_EQ(c->resilience.cooldown.base_ms.oauth, 1000);
  EXPECT_EQ(c->resilience.cooldown.max_backoff_steps.oauth, 2);
}

TEST(ConfigTest, RoutingErrorsNameTheirPath) {
  struct Case {
    const char* yaml;
    const char* want;
  } cases[] = {
      {"routing: { strategy: fastest }", "routing.strategy: must be one of"},
      {"combos: [ { name: c, strategy: p2c, models: [a] } ]", "combos[0].strategy"},
      {"combos: [ { name: c, models: [] } ]", "combos[0].models"},
      {"combos: [ { name: c, models: [ { model: a, weight: -1 } ] } ]",
       "combos[0].models[0].weight"},
      {"combos: [ { name: c, models: [ { model: a, wieght: 1 } ] } ]",
       "combos[0].models[0].wieght: unknown key"},
      {"combos: [ { name: c, models: [a] }, { name: c, models: [b] } ]", "duplicate combo"},
      {"aliases: [ { pattern: 'a*' } ]", "aliases[0].target: required"},
      {"fallback_chains: [ { name: f, models: [] } ]", "fallback_chains[0].models"},
      {"resilience: { cooldown: { base_ms: { api_key: 1, oath: 2 } } }",
       "resilience.cooldown.base_ms.oath: unknown key"},
      {"resilience: { cooldown: { oauth_base_ms: 1 } }", "resilience.cooldown.oauth_base_ms"},
      {"resilience: { breaker: { failure_threshold: many } }",
       "resilience.breaker.failure_threshold"},
      {"providers: [ { id: openai, routing: { strategy: weighted } } ]",
       "providers[0].routing.strategy"},
  };
  for (const Case& tc : cases) {
    auto c = ParseConfig(tc.yaml);
    ASSERT_FALSE(c.ok()) << tc.yaml;
    EXPECT_NE(c.status().message().find(tc.want), std::string::npos)
        << tc.yaml << " → " << c.status();
  }
}

TEST(ConfigTest, SingleObjectParsersAndPatches) {
  auto combo = ParseComboSpec(R"({"name":"x","strategy":"least_used","models":["a/b",{"model":"c/d","cost":0.5}]})");
  ASSERT_TRUE(combo.ok()) << combo.status();
  EXPECT_EQ(combo->strategy, "least-used");
  EXPECT_DOUBLE_EQ(combo->models[1].cost, 0.5);
  EXPECT_FALSE(ParseComboSpec(R"({"name":"x"})").ok());
  EXPECT_FALSE(ParseComboSpec("[1]").ok());
  EXPECT_TRUE(ParseAliasSpec(R"({"pattern":"gpt-*","target":"gh/gpt-5.1-codex"})").ok());
  EXPECT_FALSE(ParseFallbackChainSpec(R"({"name":"f","models":"a"})").ok());

  RoutingSettings routing;
  ASSERT_TRUE(ApplyRoutingPatch(R"({"strategy":"power-of-two-choices"})", &routing).ok());
  EXPECT_EQ(routing.strategy, "p2c");
  EXPECT_EQ(routing.sticky_limit, 3);
  EXPECT_FALSE(ApplyRoutingPatch(R"({"strategy":"nope"})", &routing).ok());
  EXPECT_EQ(routing.strategy, "p2c");  // unchanged on error

  ResilienceConfig res;
  ASSERT_TRUE(ApplyResiliencePatch(R"({"breaker":{"failure_threshold":3}})", &res).ok());
  EXPECT_EQ(res.breaker.failure_threshold.api_key, 3);
  EXPECT_EQ(res.breaker.failure_threshold.oauth, 3);
  EXPECT_EQ(res.breaker.reset_timeout_ms.api_key, 30000);
  EXPECT_FALSE(ApplyResiliencePatch(R"({"breaker":{"bogus":1}})", &res).ok());
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
