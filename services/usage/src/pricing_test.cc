#include "pricing.h"

#include <gtest/gtest.h>

namespace omniroute::usage {
namespace {

v1::PricingEntry Entry(const std::string& provider, const std::string& model, double in,
                       double out) {
  v1::PricingEntry e;
  e.set_provider(provider);
  e.set_model(model);
  e.set_input(in);
  e.set_output(out);
  return e;
}

v1::UsageRecord Tokens(int64_t in, int64_t cached, int64_t creation, int64_t out,
                       int64_t reasoning) {
  v1::UsageRecord r;
  r.set_input_tokens(in);
  r.set_cached_tokens(cached);
  r.set_cache_creation_tokens(creation);
  r.set_output_tokens(out);
  r.set_reasoning_tokens(reasoning);
  return r;
}

TEST(CostTest, CachedTokensArePricedOnceAtTheCachedRate) {
  // Anthropic-like prices: input 3, cache read 0.30, cache write 3.75, output 15.
  v1::PricingEntry e = Entry("anthropic", "claude-sonnet-4*", 3, 15);
  e.set_cached_input(0.30);
  e.set_cache_creation(3.75);
  const Price p = ResolvePrice(e);
  // 10000 input of which 6000 cache reads and 2000 cache writes; 500 output.
  const double cost = ComputeCost(p, Tokens(10000, 6000, 2000, 500, 0));
  const double expected = (2000 * 3 + 6000 * 0.30 + 2000 * 3.75 + 500 * 15) / 1e6;
  EXPECT_NEAR(cost, expected, 1e-12);
  // Without caching it would have cost more: cached tokens are not double-counted.
  EXPECT_LT(cost, ComputeCost(p, Tokens(10000, 0, 0, 500, 0)) + 2000 * 0.75 / 1e6);
}

TEST(CostTest, OptionalPricesInheritInputAndOutput) {
  const Price p = ResolvePrice(Entry("*", "m", 2, 8));
  EXPECT_EQ(p.cached_input, 2);
  EXPECT_EQ(p.cache_creation, 2);
  EXPECT_EQ(p.reasoning, 8);
  // Every token at the plain rates.
  EXPECT_NEAR(ComputeCost(p, Tokens(1000, 400, 100, 300, 200)), (1000 * 2 + 300 * 8) / 1e6, 1e-12);
}

TEST(CostTest, ReasoningTokensArePartOfOutputUnlessPricedSeparately) {
  v1::PricingEntry e = Entry("*", "m", 1, 10);
  EXPECT_NEAR(ComputeCost(ResolvePrice(e), Tokens(0, 0, 0, 1000, 800)), 1000 * 10 / 1e6, 1e-12);
  e.set_reasoning(5);
  EXPECT_NEAR(ComputeCost(ResolvePrice(e), Tokens(0, 0, 0, 1000, 800)), (200 * 10 + 800 * 5) / 1e6,
              1e-12);
}

TEST(CostTest, InconsistentCountsAreClamped) {
  v1::PricingEntry e = Entry("*", "m", 1, 1);
  e.set_cached_input(0.1);
  const Price p = ResolvePrice(e);
  // More cached than input, negative output, reasoning above output.
  EXPECT_NEAR(ComputeCost(p, Tokens(100, 500, 50, -3, 0)), 100 * 0.1 / 1e6, 1e-12);
  EXPECT_NEAR(ComputeCost(p, Tokens(0, 0, 0, 10, 50)), 10 / 1e6, 1e-12);
  EXPECT_EQ(ComputeCost(p, Tokens(0, 0, 0, 0, 0)), 0);
}

TEST(CostTest, Estimate) {
  EXPECT_NEAR(EstimateCost(ResolvePrice(Entry("*", "m", 3, 15)), 1000, 4096),
              (3000 + 15 * 4096) / 1e6, 1e-12);
}

TEST(WildcardTest, Matches) {
  EXPECT_TRUE(GlobMatch("gpt-4o*", "gpt-4o-mini"));
  EXPECT_TRUE(GlobMatch("GPT-4O", "gpt-4o"));
  EXPECT_TRUE(GlobMatch("claude-?-haiku", "claude-3-haiku"));
  EXPECT_TRUE(GlobMatch("*", ""));
  EXPECT_TRUE(GlobMatch("gemini-3*-pro*", "gemini-3.1-pro-preview"));
  EXPECT_FALSE(GlobMatch("gpt-4o", "gpt-4o-mini"));
  EXPECT_FALSE(GlobMatch("claude-?-haiku", "claude-35-haiku"));
  EXPECT_FALSE(GlobMatch("a*b", "acd"));
}

class PricingTableTest : public ::testing::Test {
 protected:
  void SetUp() override {
    absl::StatusOr<std::vector<ProviderSpec>> builtins = ProviderRegistry::BuiltIns();
    ASSERT_TRUE(builtins.ok());
    table_ = std::make_unique<PricingTable>(*builtins);
    absl::StatusOr<std::vector<v1::PricingEntry>> defaults = DefaultPricing();
    ASSERT_TRUE(defaults.ok()) << defaults.status();
    table_->SetDefaults(*defaults);
  }
  std::unique_ptr<PricingTable> table_;
};

TEST_F(PricingTableTest, DefaultsPriceTheUserGuideModels) {
  for (const auto& [provider, model] : std::vector<std::pair<std::string, std::string>>{
           {"openai", "gpt-4o"},
           {"openai", "gpt-4o-mini"},
           {"openai", "gpt-5.1"},
           {"anthropic", "claude-sonnet-4-5-20250929"},
           {"anthropic", "claude-opus-4-7"},
           {"anthropic", "claude-haiku-4-5-20251001"},
           {"gemini", "gemini-2.5-pro"},
           {"gemini", "gemini-3-flash-preview"},
           {"deepseek", "deepseek-chat"},
           {"glm", "glm-4.7"},
           {"minimax", "MiniMax-M2.1"},
           {"kimi", "kimi-k2-thinking"},
           {"xai", "grok-4"},
           {"openrouter", "anthropic/claude-sonnet-4.5"}}) {
    std::optional<Price> p = table_->Find(provider, model);
    ASSERT_TRUE(p.has_value()) << provider << "/" << model;
    EXPECT_GT(p->input, 0) << provider << "/" << model;
  }
  EXPECT_EQ(table_->Find("openai", "gpt-4o-mini")->input, 0.15);
  EXPECT_EQ(table_->Find("openai", "gpt-4o")->input, 2.5);
  EXPECT_EQ(table_->Find("anthropic", "claude-sonnet-4-5-20250929")->cached_input, 0.30);
  EXPECT_FALSE(table_->Find("openai", "no-such-model").has_value());
}

TEST_F(PricingTableTest, ProviderEntriesBeatWildcardProviders) {
  // Subscription providers are free even for models priced for "*".
  std::optional<Price> cc = table_->Find("claude-code", "claude-sonnet-4-5-20250929");
  ASSERT_TRUE(cc.has_value());
  EXPECT_EQ(cc->input, 0);
  // A prefix names the provider too.
  EXPECT_EQ(table_->Find("cc", "claude-sonnet-4-5-20250929")->input, 0);
  auto [provider, model] = table_->SplitModel("cc/claude-opus-4-7");
  EXPECT_EQ(provider, "claude-code");
  EXPECT_EQ(model, "claude-opus-4-7");
  EXPECT_EQ(table_->SplitModel("my-combo").first, "");
}

TEST_F(PricingTableTest, MostSpecificPatternWins) {
  table_->SetRuntime(
      {Entry("*", "foo*", 1, 1), Entry("*", "foo-bar*", 2, 2), Entry("*", "foo-bar-baz", 3, 3)});
  EXPECT_EQ(table_->Find("x", "foo-q")->input, 1);
  EXPECT_EQ(table_->Find("x", "foo-bar-q")->input, 2);
  EXPECT_EQ(table_->Find("x", "foo-bar-baz")->input, 3);
}

TEST_F(PricingTableTest, RuntimeEntriesOverrideDefaultsAndConfigIsReadOnly) {
  absl::StatusOr<v1::PricingEntry> up = table_->Upsert(Entry("openai", "gpt-4o", 1, 2), 5);
  ASSERT_TRUE(up.ok()) << up.status();
  EXPECT_EQ(up->source(), "api");
  EXPECT_EQ(up->updated_ms(), 5);
  EXPECT_EQ(table_->Find("openai", "gpt-4o")->input, 1);
  ASSERT_TRUE(table_->Remove("openai", "GPT-4O").ok());
  EXPECT_EQ(table_->Find("openai", "gpt-4o")->input, 2.5);  // the default again
  EXPECT_EQ(table_->Remove("openai", "gpt-4o").code(), absl::StatusCode::kNotFound);

  table_->SetConfig({Entry("openai", "gpt-4o", 9, 9)});
  EXPECT_EQ(table_->Find("openai", "gpt-4o")->input, 9);
  EXPECT_EQ(table_->Upsert(Entry("openai", "gpt-4o", 1, 1), 0).status().code(),
            absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(table_->Remove("openai", "gpt-4o").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(table_->Upsert(Entry("openai", "", 1, 1), 0).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(table_->Upsert(Entry("openai", "m", -1, 1), 0).status().code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(PricingConfigTest, ParsesEntries) {
  absl::StatusOr<PricingSpec> spec = ParsePricingSpec(
      R"({"provider": "openai", "model": "gpt-x*", "input": 1.5, "output": 6, "cached_input": 0.1})");
  ASSERT_TRUE(spec.ok()) << spec.status();
  const v1::PricingEntry e = ToEntry(*spec, "api");
  EXPECT_EQ(e.model(), "gpt-x*");
  EXPECT_TRUE(e.has_cached_input());
  EXPECT_FALSE(e.has_reasoning());
  EXPECT_FALSE(ParsePricingSpec(R"({"model": "m", "inptu": 1})").ok());
  EXPECT_FALSE(ParsePricingSpec(R"({"provider": "openai"})").ok());

  absl::StatusOr<Config> c = ParseConfig(R"(
usage: { budget_reset_utc: "10:30", budget_warn_at: 0.9, spool_max_bytes: 10485760 }
pricing:
  - { provider: openai, model: "gpt-4o", input: 2, output: 8 }
budgets:
  - { key: alice, daily: 5, monthly: 50 }
  - { team: research, weekly: 100, warn_at: 0.5 }
)");
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->usage.budget_reset_offset_ms, (10 * 60 + 30) * 60000);
  EXPECT_EQ(c->usage.budget_warn_at, 0.9);
  ASSERT_EQ(c->pricing.size(), 1u);
  ASSERT_EQ(c->budgets.size(), 2u);
  EXPECT_EQ(c->budgets[0].key_id, "cfg:alice");
  EXPECT_EQ(c->budgets[1].team, "research");
  EXPECT_FALSE(ParseConfig("usage: { budget_reset_utc: \"25:00\" }").ok());
  EXPECT_FALSE(ParseConfig("budgets: [{ key: a, team: b, daily: 1 }]").ok());
  EXPECT_FALSE(ParseConfig("budgets: [{ key: a, daily: -1 }]").ok());
  EXPECT_FALSE(ParseConfig("usage: { unknown: 1 }").ok());
}

}  // namespace
}  // namespace omniroute::usage
