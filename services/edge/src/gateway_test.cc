#include "gateway.h"
#include "upstream.h"

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <chrono>
#include <map>
#include <set>
#include <thread>

namespace omniroute::edge {
namespace {

TEST(GatewayTest, ParseChatRequest) {
  auto ok = ParseChatRequest(R"({"model":"local/m","stream":true,"x_unknown":[1,2]})");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->model, "local/m");
  EXPECT_TRUE(ok->stream);
  EXPECT_FALSE(ParseChatRequest(R"({"model":"m"})")->stream);  // absent = false
  EXPECT_EQ(ParseChatRequest("{nope").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseChatRequest("[]").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(ParseChatRequest(R"({"messages":[]})").status().message().find("model"),
            std::string::npos);
  EXPECT_FALSE(ParseChatRequest(R"({"model":3})").ok());
  EXPECT_FALSE(ParseChatRequest(R"({"model":"m","stream":"yes"})").ok());
}

TEST(GatewayTest, ParseBaseUrlAndProxy) {
  auto ep = ParseBaseUrl("https://api.example.com/v1/");
  ASSERT_TRUE(ep.ok()) << ep.status();
  EXPECT_TRUE(ep->tls);
  EXPECT_EQ(ep->port, "443");
  EXPECT_EQ(ep->base_path, "/v1");
  EXPECT_EQ(ep->key, "https://api.example.com:443");
  const std::string direct_key = ep->key;

  // No proxy: unchanged.
  UpstreamEndpoint direct = *ep;
  ASSERT_TRUE(ApplyProxy(direct, "").ok());
  EXPECT_TRUE(direct.proxy_host.empty());
  EXPECT_EQ(direct.key, direct_key);

  UpstreamEndpoint a = *ep;
  ASSERT_TRUE(ApplyProxy(a, "http://10.0.0.1:3128").ok());
  EXPECT_EQ(a.proxy_host, "10.0.0.1");
  EXPECT_EQ(a.proxy_port, "3128");
  EXPECT_TRUE(a.proxy_authorization.empty());
  EXPECT_EQ(a.host, "api.example.com");  // the upstream stays the same
  UpstreamEndpoint b = *ep;
  ASSERT_TRUE(ApplyProxy(b, "HTTP://proxy.internal/").ok());
  EXPECT_EQ(b.proxy_host, "proxy.internal");
  EXPECT_EQ(b.proxy_port, "80");
  // Connections through different proxies never share a pool entry.
  EXPECT_NE(a.key, direct_key);
  EXPECT_NE(a.key, b.key);

  // user:password@ → Proxy-Authorization (percent-decoded); the key never holds the password.
  UpstreamEndpoint c = *ep;
  ASSERT_TRUE(ApplyProxy(c, "http://bob:s%40cret@[::1]:8080").ok());
  EXPECT_EQ(c.proxy_host, "::1");
  EXPECT_EQ(c.proxy_port, "8080");
  EXPECT_EQ(c.proxy_authorization, "Basic Ym9iOnNAY3JldA==");  // bob:s@cret
  EXPECT_EQ(c.key.find("s@cret"), std::string::npos);
  EXPECT_EQ(c.key.find("s%40cret"), std::string::npos);
  UpstreamEndpoint d = *ep;
  ASSERT_TRUE(ApplyProxy(d, "http://bob:other@[::1]:8080").ok());
  EXPECT_NE(c.key, d.key);  // another proxy user: another pool entry

  for (const char* bad : {"https://p:1", "socks5://p:1", "http://", "http://:8080", "http://p:0",
                          "http://p:99999", "http://p:x", "http://p:1/path", "http://u:%zz@p:1"}) {
    UpstreamEndpoint e = *ep;
    absl::Status s = ApplyProxy(e, bad);
    EXPECT_FALSE(s.ok()) << bad;
    EXPECT_EQ(s.message().find("%zz"), std::string::npos) << s.message();
  }
}

TEST(GatewayTest, RewriteModelKeepsUnknownFields) {
  auto info = ParseChatRequest(R"({"model":"local/m","x_unknown":{"a":[1,2]},"n":2})");
  ASSERT_TRUE(info.ok());
  auto v = boost::json::parse(RewriteModel(*info, "m"));
  EXPECT_EQ(v.at("model").as_string(), "m");
  EXPECT_EQ(v.at("x_unknown").at("a").as_array().size(), 2u);
  EXPECT_EQ(v.at("n").as_int64(), 2);
}

TEST(GatewayTest, ExtractUsageOpenAi) {
  TokenUsage u;
  ASSERT_TRUE(ExtractUsage(common::v1::FORMAT_OPENAI_CHAT,
                           R"({"usage":{"prompt_tokens":25,"completion_tokens":7,
                               "prompt_tokens_details":{"cached_tokens":5},
                               "completion_tokens_details":{"reasoning_tokens":2}}})",
                           &u));
  EXPECT_TRUE(u.present);
  EXPECT_EQ(u.input, 25);  // the provider's numbers, unchanged
  EXPECT_EQ(u.output, 7);
  EXPECT_EQ(u.cached, 5);
  EXPECT_EQ(u.reasoning, 2);
  TokenUsage none;
  ASSERT_TRUE(ExtractUsage(common::v1::FORMAT_OPENAI_CHAT, R"({"choices":[]})", &none));
  EXPECT_FALSE(none.present);
  EXPECT_FALSE(ExtractUsage(common::v1::FORMAT_OPENAI_CHAT, "{", &none));
}

TEST(GatewayTest, ExtractUsageAnthropicCountsCacheOnce) {
  TokenUsage u;
  ExtractUsage(common::v1::FORMAT_ANTHROPIC,
               R"({"type":"message_start","message":{"usage":{"input_tokens":10,
                   "cache_read_input_tokens":100,"cache_creation_input_tokens":5,
                   "output_tokens":1}}})",
               &u);
  ExtractUsage(common::v1::FORMAT_ANTHROPIC,
               R"({"type":"message_delta","usage":{"output_tokens":42}})", &u);
  EXPECT_EQ(u.input, 115);
  EXPECT_EQ(u.cached, 100);
  EXPECT_EQ(u.cache_creation, 5);
  EXPECT_EQ(u.output, 42);
}

TEST(GatewayTest, ExtractUsageFindsOnlyTheRealUsageObject) {
  const auto openai = common::v1::FORMAT_OPENAI_CHAT;
  // Text that looks like a usage member inside strings, and usage-named members deeper in
  // the answer, are not the answer's usage.
  TokenUsage u;
  ASSERT_TRUE(ExtractUsage(openai,
                           R"({"choices":[{"message":{"content":"{\"usage\": {\"prompt_tokens\": 9}}",
                               "usage":{"prompt_tokens":8}}}],"x":{"usage":{"prompt_tokens":7}},
                               "note":"usage", "usage" : {"prompt_tokens":3,"completion_tokens":4,
                               "prompt_tokens_details":{"cached_tokens":1}}})",
                           &u));
  EXPECT_TRUE(u.present);
  EXPECT_EQ(u.input, 3);
  EXPECT_EQ(u.output, 4);
  EXPECT_EQ(u.cached, 1);
  TokenUsage none;
  ASSERT_TRUE(ExtractUsage(openai, R"({"x":{"usage":{"prompt_tokens":7}},"usage":null})", &none));
  EXPECT_FALSE(none.present);
  ASSERT_TRUE(ExtractUsage(openai, R"([{"usage":{"prompt_tokens":7}}])", &none));
  EXPECT_FALSE(none.present);
  EXPECT_FALSE(ExtractUsage(openai, R"({"usage":{"prompt_tokens":7})", &none));
  EXPECT_FALSE(ExtractUsage(openai, R"({"a":"unterminated})", &none));
  EXPECT_FALSE(ExtractUsage(openai, R"({"usage":{"prompt_tokens":}})", &none));
  EXPECT_FALSE(none.present);

  // Responses: the top-level usage, or the one in "response".
  TokenUsage r;
  ASSERT_TRUE(ExtractUsage(common::v1::FORMAT_OPENAI_RESPONSES,
                           R"({"type":"response.completed","response":{"id":"r","output":[
                               {"usage":{"input_tokens":1}}],"usage":{"input_tokens":11,
                               "output_tokens":12,"output_tokens_details":{"reasoning_tokens":2}}}})",
                           &r));
  EXPECT_EQ(r.input, 11);
  EXPECT_EQ(r.output, 12);
  EXPECT_EQ(r.reasoning, 2);
  // Anthropic: not a "usage" under another member than "message".
  TokenUsage a;
  ASSERT_TRUE(ExtractUsage(common::v1::FORMAT_ANTHROPIC,
                           R"({"type":"x","delta":{"usage":{"output_tokens":5}}})", &a));
  EXPECT_FALSE(a.present);
  // Gemini: usageMetadata at the top level.
  TokenUsage g;
  ASSERT_TRUE(ExtractUsage(common::v1::FORMAT_GEMINI,
                           R"({"candidates":[{"content":{"parts":[{"text":"usageMetadata"}]}}],
                               "usageMetadata":{"promptTokenCount":6,"candidatesTokenCount":2,
                               "thoughtsTokenCount":1,"cachedContentTokenCount":4}})",
                           &g));
  EXPECT_EQ(g.input, 6);
  EXPECT_EQ(g.output, 3);
  EXPECT_EQ(g.cached, 4);
}

TEST(GatewayTest, MaxOutputTokensInEveryFormat) {
  EXPECT_EQ(MaxOutputTokens(*ParseChatRequest(R"({"model":"m","max_tokens":100})")), 100);
  EXPECT_EQ(MaxOutputTokens(*ParseChatRequest(R"({"model":"m","max_completion_tokens":7})")), 7);
  EXPECT_EQ(MaxOutputTokens(*ParseChatRequest(R"({"model":"m","max_output_tokens":9})")), 9);
  EXPECT_EQ(MaxOutputTokens(*ParseGeminiRequest(
                R"({"generationConfig":{"maxOutputTokens":11}})", "m", false)),
            11);
  EXPECT_EQ(MaxOutputTokens(*ParseChatRequest(R"({"model":"m"})")), 0);
}

TEST(GatewayTest, UpstreamErrorMessageInEveryShape) {
  EXPECT_EQ(UpstreamErrorMessage(R"({"error":{"message":"bad key","type":"x"}})"), "bad key");
  EXPECT_EQ(UpstreamErrorMessage(
                R"({"type":"error","error":{"type":"invalid_request_error","message":"max_tokens"}})"),
            "max_tokens");
  EXPECT_EQ(UpstreamErrorMessage(R"([{"error":{"code":400,"message":"g","status":"X"}}])"), "g");
  EXPECT_EQ(UpstreamErrorMessage("<html>"), "");
  EXPECT_EQ(UpstreamErrorMessage(R"({"error":"string"})"), "");
}

TEST(GatewayTest, LegacyCompletionsRideOnChat) {
  auto req = CompletionsRequestToChat(
      R"({"model":"m","prompt":["Say ","hi"],"max_tokens":5,"echo":false,"stream":true})");
  ASSERT_TRUE(req.ok()) << req.status();
  auto v = boost::json::parse(*req);
  EXPECT_EQ(v.at("messages").at(0).at("content").as_string(), "Say hi");
  EXPECT_EQ(v.at("messages").at(0).at("role").as_string(), "user");
  EXPECT_EQ(v.at("max_tokens").as_int64(), 5);
  EXPECT_TRUE(v.at("stream").as_bool());
  EXPECT_FALSE(v.as_object().contains("prompt"));
  EXPECT_FALSE(v.as_object().contains("echo"));
  EXPECT_FALSE(CompletionsRequestToChat(R"({"model":"m","prompt":[1,2]})").ok());
  EXPECT_FALSE(CompletionsRequestToChat("{").ok());

  auto res = boost::json::parse(ChatResponseToCompletions(
      R"({"id":"chatcmpl-abc","object":"chat.completion","created":7,"model":"m",
          "choices":[{"index":0,"message":{"role":"assistant","content":"hi!"},
          "finish_reason":"stop"}],"usage":{"prompt_tokens":3,"completion_tokens":1}})"));
  EXPECT_EQ(res.at("id").as_string(), "cmpl-abc");
  EXPECT_EQ(res.at("object").as_string(), "text_completion");
  EXPECT_EQ(res.at("choices").at(0).at("text").as_string(), "hi!");
  EXPECT_EQ(res.at("choices").at(0).at("finish_reason").as_string(), "stop");
  EXPECT_EQ(res.at("usage").at("prompt_tokens").as_int64(), 3);

  auto chunk = boost::json::parse(ChatChunkToCompletions(
      R"({"id":"chatcmpl-abc","object":"chat.completion.chunk","created":7,"model":"m",
          "choices":[{"index":0,"delta":{"content":"h"},"finish_reason":null}]})"));
  EXPECT_EQ(chunk.at("choices").at(0).at("text").as_string(), "h");
  EXPECT_TRUE(chunk.at("choices").at(0).at("finish_reason").is_null());
  EXPECT_EQ(ChatChunkToCompletions(R"({"error":{"message":"x"}})"), R"({"error":{"message":"x"}})");
}

TEST(GatewayTest, PresentedKey) {
  EXPECT_EQ(PresentedKey("Bearer sk-1", "", "", ""), "sk-1");
  EXPECT_EQ(PresentedKey("bearer  sk-1 ", "", "", ""), "sk-1");
  EXPECT_EQ(PresentedKey("", "sk-2", "", ""), "sk-2");
  EXPECT_EQ(PresentedKey("", "", "g-3", ""), "g-3");
  EXPECT_EQ(PresentedKey("", "", "", "/v1beta/models?alt=sse&key=k4"), "k4");
  EXPECT_EQ(PresentedKey("Basic abc", "", "", "/x"), "");
}

TEST(GatewayTest, NormalizePath) {
  EXPECT_EQ(NormalizePath("/v1/chat/completions?x=1"), "/v1/chat/completions");
  EXPECT_EQ(NormalizePath("/v1/v1/chat/completions"), "/v1/chat/completions");
  EXPECT_EQ(NormalizePath("/chat/completions"), "/v1/chat/completions");
  EXPECT_EQ(NormalizePath("/models"), "/v1/models");
  EXPECT_EQ(NormalizePath("/v1/models/"), "/v1/models");
  EXPECT_EQ(NormalizePath("/healthz"), "/healthz");
}

TEST(GatewayTest, TraceparentKeepsTheTraceWithANewSpan) {
  const std::string in = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
  const std::string out = ChildTraceparent(in);
  ASSERT_EQ(out.size(), 55u);
  EXPECT_EQ(out.substr(0, 36), in.substr(0, 36));
  EXPECT_NE(out.substr(36, 16), in.substr(36, 16));
  EXPECT_EQ(out.substr(52), "-01");
  for (std::string_view bad : {"", "garbage", "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                               "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01"}) {
    const std::string fresh = ChildTraceparent(bad);
    ASSERT_EQ(fresh.size(), 55u) << bad;
    EXPECT_EQ(fresh.substr(0, 3), "00-");
    EXPECT_NE(fresh.substr(3, 32), std::string(32, '0'));
    EXPECT_EQ(fresh.substr(52), "-01");
  }
}

TEST(GatewayTest, RequestIdsAreUnique) {
  std::set<std::string> ids;
  for (int i = 0; i < 10000; ++i) ids.insert(NewRequestId());
  EXPECT_EQ(ids.size(), 10000u);
  EXPECT_EQ(NewRequestId().size(), 28u);
  // Ordered by time: an id made later sorts after (the millisecond prefix moved on).
  const std::string first = NewRequestId();
  std::this_thread::sleep_for(std::chrono::milliseconds(2));
  EXPECT_LT(first, NewRequestId());
}

TEST(GatewayTest, FormatForPathBeforeTheRouteIsKnown) {
  EXPECT_EQ(FormatForPath("/v1/chat/completions", false), common::v1::FORMAT_OPENAI_CHAT);
  EXPECT_EQ(FormatForPath("/v1/responses", false), common::v1::FORMAT_OPENAI_RESPONSES);
  EXPECT_EQ(FormatForPath("/v1/messages", false), common::v1::FORMAT_ANTHROPIC);
  EXPECT_EQ(FormatForPath("/v1/messages/count_tokens", false), common::v1::FORMAT_ANTHROPIC);
  EXPECT_EQ(FormatForPath("/v1beta/models/gemini-2.5-pro:generateContent", false),
            common::v1::FORMAT_GEMINI);
  EXPECT_EQ(FormatForPath("/v1/models/g:streamGenerateContent", false),
            common::v1::FORMAT_GEMINI);
  EXPECT_EQ(FormatForPath("/nowhere", true), common::v1::FORMAT_ANTHROPIC);
  EXPECT_EQ(FormatForPath("/api/keys", false), common::v1::FORMAT_OPENAI_CHAT);
}

TEST(GatewayTest, CookieValue) {
  EXPECT_EQ(CookieValue("auth_token=abc.def.ghi", "auth_token"), "abc.def.ghi");
  EXPECT_EQ(CookieValue("theme=dark; auth_token=x1;other=2", "auth_token"), "x1");
  EXPECT_EQ(CookieValue("a=1;  auth_token = \"q\" ", "auth_token"), "q");
  EXPECT_EQ(CookieValue("xauth_token=1; auth_token_old=2", "auth_token"), "");
  EXPECT_EQ(CookieValue("", "auth_token"), "");
  EXPECT_EQ(CookieValue("auth_token", "auth_token"), "");
}

TEST(GatewayTest, JwtSubject) {
  EXPECT_EQ(JwtSubject(R"({"sub":"admin","exp":1})"), "admin");
  EXPECT_EQ(JwtSubject(R"({"sub":42})"), "42");
  EXPECT_EQ(JwtSubject(R"({"exp":1})"), "");
  EXPECT_EQ(JwtSubject(R"({"sub":{"a":1}})"), "");
  EXPECT_EQ(JwtSubject("not json"), "");
}

TEST(GatewayTest, AdminRoutesBelongToTheirService) {
  for (std::string_view p :
       {"/api/keys", "/api/keys/k1", "/api/keys/k1/reveal", "/api/providers",
        "/api/providers/openai:main", "/api/providers/openai:main/test", "/api/provider-nodes",
        "/api/provider-nodes/n1", "/api/provider-models", "/api/provider-models/openai",
        "/api/oauth/claude/start", "/api/oauth/callback", "/api/auth/login", "/api/auth/logout",
        "/api/settings/security"}) {
    EXPECT_TRUE(IsAccountsAdminPath(p)) << p;
    EXPECT_FALSE(IsRouterAdminPath(p)) << p;
  }
  for (std::string_view p : {"/api/providers/openai/routing", "/api/combos", "/api/combos/c1",
                             "/api/aliases", "/api/settings/routing", "/api/health"}) {
    EXPECT_TRUE(IsRouterAdminPath(p)) << p;
    EXPECT_FALSE(IsAccountsAdminPath(p)) << p;
  }
  for (std::string_view p : {"/api/keysx", "/api/usage/self", "/api/pricing", "/api/settings",
                             "/api/providersx", "/api/settings/securityx"}) {
    EXPECT_FALSE(IsAccountsAdminPath(p)) << p;
  }
  EXPECT_TRUE(IsUnauthenticatedAdminRoute("POST", "/api/auth/login"));
  EXPECT_TRUE(IsUnauthenticatedAdminRoute("GET", "/api/oauth/callback"));
  EXPECT_FALSE(IsUnauthenticatedAdminRoute("GET", "/api/auth/login"));
  EXPECT_FALSE(IsUnauthenticatedAdminRoute("POST", "/api/auth/logout"));
  EXPECT_FALSE(IsUnauthenticatedAdminRoute("GET", "/api/oauth/claude/start"));
}

TEST(GatewayTest, ModelAllowedByPatterns) {
  const std::vector<std::string> none;
  EXPECT_TRUE(ModelAllowed(none, "anything"));
  const std::vector<std::string> patterns = {"gpt-4o*", "anthropic/claude-?-haiku", "glm/*"};
  EXPECT_TRUE(ModelAllowed(patterns, "gpt-4o-mini"));
  EXPECT_TRUE(ModelAllowed(patterns, "GPT-4O"));
  EXPECT_TRUE(ModelAllowed(patterns, "anthropic/claude-3-haiku"));
  EXPECT_TRUE(ModelAllowed(patterns, "glm/glm-4.7"));
  EXPECT_FALSE(ModelAllowed(patterns, "openai/gpt-4o"));
  EXPECT_FALSE(ModelAllowed(patterns, "anthropic/claude-3-opus"));
  EXPECT_FALSE(ModelAllowed(patterns, "o3"));
}

TEST(GatewayTest, CredentialCacheTtlStopsAMinuteBeforeExpiry) {
  using std::chrono::milliseconds;
  const milliseconds def(30000);
  EXPECT_EQ(CredentialCacheTtl(0, 1000000, def), def);
  EXPECT_EQ(CredentialCacheTtl(1000000 + 3600000, 1000000, def), milliseconds(3540000));
  EXPECT_EQ(CredentialCacheTtl(1000000 + 30000, 1000000, def), milliseconds(0));
  EXPECT_EQ(CredentialCacheTtl(500, 1000000, def), milliseconds(0));
}

TEST(GatewayTest, ParseIpAddress) {
  auto v4 = ParseIpAddress("192.0.2.7");
  ASSERT_TRUE(v4);
  EXPECT_TRUE(v4->v4);
  EXPECT_EQ(v4->bytes[0], 192);
  EXPECT_EQ(v4->bytes[3], 7);
  auto mapped = ParseIpAddress("::ffff:192.0.2.7");
  ASSERT_TRUE(mapped);
  EXPECT_TRUE(mapped->v4);
  EXPECT_EQ(mapped->bytes, v4->bytes);
  auto v6 = ParseIpAddress("[fe80::1%eth0]");
  ASSERT_TRUE(v6);
  EXPECT_FALSE(v6->v4);
  EXPECT_EQ(v6->bytes[0], 0xfe);
  EXPECT_EQ(v6->bytes[15], 1);
  for (std::string_view bad : {"", "1.2.3", "1.2.3.256", "example.com", "1.2.3.4/8", "::g", ":"}) {
    EXPECT_FALSE(ParseIpAddress(bad)) << bad;
  }
}

TEST(GatewayTest, ParseIpNetwork) {
  auto net = ParseIpNetwork("10.1.2.3/8");
  ASSERT_TRUE(net);
  EXPECT_EQ(net->prefix, 8);
  EXPECT_EQ(net->base.bytes[1], 0);  // host bits cleared
  EXPECT_TRUE(net->Contains(*ParseIpAddress("10.200.0.1")));
  EXPECT_FALSE(net->Contains(*ParseIpAddress("11.0.0.1")));
  EXPECT_FALSE(net->Contains(*ParseIpAddress("::a00:1")));  // IPv6 never matches IPv4 rules
  auto host = ParseIpNetwork("192.0.2.7");
  ASSERT_TRUE(host);
  EXPECT_EQ(host->prefix, 32);
  EXPECT_TRUE(host->Contains(*ParseIpAddress("192.0.2.7")));
  EXPECT_FALSE(host->Contains(*ParseIpAddress("192.0.2.8")));
  auto odd = ParseIpNetwork("172.16.0.0/12");
  ASSERT_TRUE(odd);
  EXPECT_TRUE(odd->Contains(*ParseIpAddress("172.31.255.255")));
  EXPECT_FALSE(odd->Contains(*ParseIpAddress("172.32.0.0")));
  auto v6 = ParseIpNetwork("2001:db8::/32");
  ASSERT_TRUE(v6);
  EXPECT_TRUE(v6->Contains(*ParseIpAddress("2001:db8:ffff::1")));
  EXPECT_FALSE(v6->Contains(*ParseIpAddress("2001:db9::1")));
  auto v6host = ParseIpNetwork("2001:db8::1");
  ASSERT_TRUE(v6host);
  EXPECT_EQ(v6host->prefix, 128);
  auto mapped = ParseIpNetwork("::ffff:10.0.0.0/104");
  ASSERT_TRUE(mapped);
  EXPECT_TRUE(mapped->base.v4);
  EXPECT_EQ(mapped->prefix, 8);
  EXPECT_TRUE(mapped->Contains(*ParseIpAddress("10.9.9.9")));
  auto all = ParseIpNetwork("0.0.0.0/0");
  ASSERT_TRUE(all);
  EXPECT_TRUE(all->Contains(*ParseIpAddress("203.0.113.1")));
  for (std::string_view bad : {"10.0.0.0/33", "2001:db8::/129", "10.0.0.0/", "10.0.0.0/x",
                               "10.0.0.0/-1", "nonsense", "10.0.0.0/8/9"}) {
    EXPECT_FALSE(ParseIpNetwork(bad)) << bad;
  }
}

TEST(GatewayTest, IpAccessRules) {
  std::vector<std::string> invalid;
  IpAccessRules rules = IpAccessRules::Parse({"10.0.0.0/8", "2001:db8::/32", "bogus"},
                                             {"10.6.6.6", "2001:db8:bad::/48"}, &invalid);
  EXPECT_EQ(invalid, std::vector<std::string>{"bogus"});
  EXPECT_FALSE(rules.empty());
  EXPECT_TRUE(rules.Allowed(ParseIpAddress("10.1.1.1")));
  EXPECT_TRUE(rules.Allowed(ParseIpAddress("::ffff:10.1.1.1")));  // mapped client, IPv4 rule
  EXPECT_FALSE(rules.Allowed(ParseIpAddress("10.6.6.6")));         // denied wins
  EXPECT_FALSE(rules.Allowed(ParseIpAddress("::ffff:10.6.6.6")));
  EXPECT_FALSE(rules.Allowed(ParseIpAddress("192.168.1.1")));      // not in the allowlist
  EXPECT_TRUE(rules.Allowed(ParseIpAddress("2001:db8:1::1")));
  EXPECT_FALSE(rules.Allowed(ParseIpAddress("2001:db8:bad::1")));
  EXPECT_FALSE(rules.Allowed(std::nullopt));

  IpAccessRules deny_only = IpAccessRules::Parse({}, {"203.0.113.0/24"}, nullptr);
  EXPECT_TRUE(deny_only.Allowed(ParseIpAddress("198.51.100.1")));
  EXPECT_FALSE(deny_only.Allowed(ParseIpAddress("203.0.113.9")));
  EXPECT_TRUE(deny_only.Allowed(std::nullopt));
  EXPECT_TRUE(IpAccessRules::Parse({}, {}, nullptr).empty());
}

// Response headers as the upstream client exposes them (lower-case names).
struct FakeHeaders {
  std::map<std::string, std::string, std::less<>> values;
  std::string_view operator()(std::string_view name) const {
    auto it = values.find(name);
    return it == values.end() ? std::string_view() : std::string_view(it->second);
  }
};

const accounts::v1::QuotaWindow* FindWindow(const accounts::v1::QuotaReport& r,
                                            std::string_view name) {
  for (const auto& w : r.windows()) {
    if (w.name() == name) return &w;
  }
  return nullptr;
}

constexpr int64_t kNowMs = 1750000000000;

TEST(GatewayTest, ExtractQuotaClaude) {
  FakeHeaders h{{{"anthropic-ratelimit-unified-5h-utilization", "0.42"},
                 {"anthropic-ratelimit-unified-5h-reset", "1750003600"},
                 {"anthropic-ratelimit-unified-7d-utilization", " 0.9 "},
                 {"anthropic-ratelimit-unified-7d-reset", "1750500000"},
                 {"anthropic-ratelimit-unified-status", "allowed"}}};
  auto q = ExtractQuota(h, kNowMs);
  ASSERT_TRUE(q);
  EXPECT_EQ(q->reported_at_ms(), kNowMs);
  EXPECT_TRUE(q->connection_id().empty());  // the caller's to set
  ASSERT_EQ(q->windows_size(), 2);
  const auto* five = FindWindow(*q, "5h");
  ASSERT_NE(five, nullptr);
  EXPECT_DOUBLE_EQ(five->used_percent(), 42);
  EXPECT_EQ(five->resets_at_ms(), 1750003600000);
  EXPECT_EQ(five->window_minutes(), 300);
  const auto* week = FindWindow(*q, "7d");
  ASSERT_NE(week, nullptr);
  EXPECT_DOUBLE_EQ(week->used_percent(), 90);
  EXPECT_EQ(week->resets_at_ms(), 1750500000000);
  EXPECT_EQ(week->window_minutes(), 10080);

  // A refusal spends the window it names; utilization above 1 is clamped.
  h.values["anthropic-ratelimit-unified-status"] = "rejected";
  h.values["anthropic-ratelimit-unified-representative-claim"] = "five_hour";
  h.values["anthropic-ratelimit-unified-7d-utilization"] = "1.7";
  q = ExtractQuota(h, kNowMs);
  ASSERT_TRUE(q);
  EXPECT_DOUBLE_EQ(FindWindow(*q, "5h")->used_percent(), 100);
  EXPECT_DOUBLE_EQ(FindWindow(*q, "7d")->used_percent(), 100);
}

TEST(GatewayTest, ExtractQuotaCodex) {
  FakeHeaders h{{{"x-codex-primary-used-percent", "12.5"},
                 {"x-codex-primary-window-minutes", "300"},
                 {"x-codex-primary-reset-after-seconds", "600"},
                 {"x-codex-secondary-used-percent", "150"},
                 {"x-codex-secondary-window-minutes", "10080"},
                 {"x-codex-secondary-reset-at", "1750300000"}}};
  auto q = ExtractQuota(h, kNowMs);
  ASSERT_TRUE(q);
  ASSERT_EQ(q->windows_size(), 2);
  const auto* primary = FindWindow(*q, "primary");
  ASSERT_NE(primary, nullptr);
  EXPECT_DOUBLE_EQ(primary->used_percent(), 12.5);
  EXPECT_EQ(primary->resets_at_ms(), kNowMs + 600000);
  EXPECT_EQ(primary->window_minutes(), 300);
  const auto* secondary = FindWindow(*q, "secondary");
  ASSERT_NE(secondary, nullptr);
  EXPECT_DOUBLE_EQ(secondary->used_percent(), 100);  // clamped
  EXPECT_EQ(secondary->resets_at_ms(), 1750300000000);
  EXPECT_EQ(secondary->window_minutes(), 10080);
}

TEST(GatewayTest, ExtractQuotaIgnoresGarbageAndPlainRateLimits) {
  // Plain API providers: their request/token budgets are no subscription windows.
  FakeHeaders plain{{{"x-ratelimit-remaining-requests", "9"},
                     {"x-ratelimit-limit-requests", "10"},
                     {"anthropic-ratelimit-requests-remaining", "3"}}};
  EXPECT_FALSE(ExtractQuota(plain, kNowMs));
  EXPECT_FALSE(ExtractQuota(FakeHeaders{}, kNowMs));

  FakeHeaders bad{{{"anthropic-ratelimit-unified-5h-utilization", "lots"},
                   {"anthropic-ratelimit-unified-7d-utilization", "-0.2"},
                   {"x-codex-primary-used-percent", "nan"},
                   {"x-codex-secondary-used-percent", ""}}};
  EXPECT_FALSE(ExtractQuota(bad, kNowMs));

  // A usable used percent with unusable details: the window stays, the details are unknown.
  FakeHeaders partial{{{"x-codex-primary-used-percent", "30"},
                       {"x-codex-primary-window-minutes", "garbage"},
                       {"x-codex-primary-reset-after-seconds", "-5"},
                       {"anthropic-ratelimit-unified-5h-utilization", "0.5"},
                       {"anthropic-ratelimit-unified-5h-reset", "soon"}}};
  auto q = ExtractQuota(partial, kNowMs);
  ASSERT_TRUE(q);
  ASSERT_EQ(q->windows_size(), 2);
  EXPECT_EQ(FindWindow(*q, "primary")->resets_at_ms(), 0);
  EXPECT_EQ(FindWindow(*q, "primary")->window_minutes(), 0);
  EXPECT_DOUBLE_EQ(FindWindow(*q, "5h")->used_percent(), 50);
  EXPECT_EQ(FindWindow(*q, "5h")->resets_at_ms(), 0);
}

TEST(GatewayTest, QuotaReportDue) {
  auto report = [](int64_t at, double used, int64_t reset) {
    accounts::v1::QuotaReport r;
    r.set_reported_at_ms(at);
    auto* w = r.add_windows();
    w->set_name("primary");
    w->set_used_percent(used);
    w->set_resets_at_ms(reset);
    return r;
  };
  const auto last = report(kNowMs, 40, kNowMs + 3600000);
  EXPECT_FALSE(QuotaReportDue(last, report(kNowMs + 1000, 40.5, kNowMs + 3601000)));
  EXPECT_TRUE(QuotaReportDue(last, report(kNowMs + 1000, 41, kNowMs + 3600000)));   // 1 point
  EXPECT_TRUE(QuotaReportDue(last, report(kNowMs + 1000, 39, kNowMs + 3600000)));
  EXPECT_TRUE(QuotaReportDue(last, report(kNowMs + 30000, 40, kNowMs + 3600000)));  // 30 s
  EXPECT_TRUE(QuotaReportDue(last, report(kNowMs + 1000, 40, kNowMs + 9000000)));   // new reset
  auto more = report(kNowMs + 1000, 40, kNowMs + 3600000);
  more.add_windows()->set_name("secondary");
  EXPECT_TRUE(QuotaReportDue(last, more));
}

}  // namespace
}  // namespace omniroute::edge
