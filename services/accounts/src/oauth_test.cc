#include "oauth.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/sha.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cstdlib>
#include <functional>
#include <map>
#include <thread>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/crypto.h"
#include "http_fetch.h"

namespace omniroute::accounts {
namespace {

namespace json = boost::json;

// ---- helpers ----

std::string Decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%' && i + 2 < s.size()) {
      out.push_back(static_cast<char>(std::stoi(std::string(s.substr(i + 1, 2)), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

std::map<std::string, std::string> Params(std::string_view s) {
  std::map<std::string, std::string> out;
  for (absl::string_view pair : absl::StrSplit(absl::string_view(s.data(), s.size()), '&')) {
    if (pair.empty()) continue;
    size_t eq = pair.find('=');
    out[Decode({pair.data(), std::min(eq, pair.size())})] =
        eq == absl::string_view::npos ? "" : Decode({pair.data() + eq + 1, pair.size() - eq - 1});
  }
  return out;
}

std::string UrlWithoutQuery(const std::string& url) { return url.substr(0, url.find('?')); }

std::map<std::string, std::string> QueryOf(const std::string& url) {
  size_t q = url.find('?');
  return q == std::string::npos ? std::map<std::string, std::string>{} : Params(url.substr(q + 1));
}

std::string Header(const HttpRequest& r, std::string_view name) {
  for (const auto& [k, v] : r.headers) {
    if (absl::EqualsIgnoreCase(k, absl::string_view(name.data(), name.size()))) return v;
  }
  return "";
}

json::object JsonOf(const HttpRequest& r) { return json::parse(r.body).as_object(); }

std::string S(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(json::string_view(key.data(), key.size()));
  return v != nullptr && v->is_string() ? std::string(v->as_string()) : "";
}

// base64url(SHA-256(verifier)) computed here, independently of common/crypto.
std::string S256(const std::string& verifier) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(verifier.data()), verifier.size(), digest);
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : digest) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      out.push_back(kAlphabet[(acc >> (bits - 6)) & 63]);
      bits -= 6;
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(acc << (6 - bits)) & 63]);
  return out;
}

HttpResponse Reply(int status, std::string body) {
  HttpResponse r;
  r.status = status;
  r.headers = {{"content-type", "application/json"}};
  r.body = std::move(body);
  return r;
}

std::string Jwt(const std::string& claims_json) {
  return absl::StrCat(crypto::Base64UrlEncode(R"({"alg":"RS256"})"), ".",
                      crypto::Base64UrlEncode(claims_json), ".sig");
}

// A fake of the provider endpoints: a handler per "METHOD url-without-query"; records requests.
class FakeHttp : public HttpFetcher {
 public:
  using Handler = std::function<absl::StatusOr<HttpResponse>(const HttpRequest&)>;

  void On(const std::string& method, const std::string& url, Handler handler) {
    handlers_[method + " " + url] = std::move(handler);
  }

  // Interface
  absl::StatusOr<HttpResponse> Fetch(const HttpRequest& request) override {
    requests.push_back(request);
    auto it = handlers_.find(request.method + " " + UrlWithoutQuery(request.url));
    if (it == handlers_.end()) {
      ADD_FAILURE() << "unexpected request " << request.method << " " << request.url;
      return Reply(404, R"({"error":"not_found"})");
    }
    return it->second(request);
  }

  int Count(const std::string& url) const {
    int n = 0;
    for (const auto& r : requests) n += UrlWithoutQuery(r.url) == url;
    return n;
  }

  std::vector<HttpRequest> requests;

 private:
  std::map<std::string, Handler> handlers_;
};

constexpr int64_t kNow = 1'700'000'000'000;

class OAuthTest : public ::testing::Test {
 protected:
  OAuthClient Client(std::string override_base = "") {
    OAuthClientOptions options;
    options.url_base_override = std::move(override_base);
    options.now_ms = [this] { return now_; };
    options.sleep_ms = [this](int64_t ms) { slept_ms_ += ms; };
    return OAuthClient(&http_, std::move(options));
  }

  FakeHttp http_;
  int64_t now_ = kNow;
  int64_t slept_ms_ = 0;
};

// ---- registry ----

TEST_F(OAuthTest, ProvidersAndFlowKinds) {
  EXPECT_EQ(OAuthClient::Providers(),
            (std::vector<std::string>{"claude-code", "codex", "gemini-cli", "copilot", "qwen",
                                      "kiro", "iflow"}));
  EXPECT_TRUE(OAuthClient::Supports("kiro"));
  EXPECT_FALSE(OAuthClient::Supports("openai"));
  EXPECT_EQ(OAuthClient::FlowKind("copilot"), OAuthFlowKind::kDeviceCode);
  EXPECT_EQ(OAuthClient::FlowKind("codex"), OAuthFlowKind::kAuthCode);
  auto flow = Client().Start("openai", "");
  EXPECT_EQ(flow.status().code(), absl::StatusCode::kNotFound);
  EXPECT_TRUE(http_.requests.empty());
}

// ---- claude-code ----

TEST_F(OAuthTest, ClaudeCodeLoginRefreshAndHeaders) {
  OAuthClient client = Client();
  auto flow = client.Start("claude-code", "");
  ASSERT_TRUE(flow.ok()) << flow.status();
  EXPECT_EQ(flow->kind, OAuthFlowKind::kAuthCode);
  EXPECT_EQ(UrlWithoutQuery(flow->auth_url), "https://claude.ai/oauth/authorize");
  auto q = QueryOf(flow->auth_url);
  EXPECT_EQ(q["client_id"], "9d1c250a-e61b-44d9-88ed-5944d1962f5e");
  EXPECT_EQ(q["response_type"], "code");
  EXPECT_EQ(q["code"], "true");
  EXPECT_EQ(q["redirect_uri"], "https://platform.claude.com/oauth/code/callback");
  EXPECT_TRUE(absl::StrContains(q["scope"], "user:inference"));
  EXPECT_EQ(q["code_challenge_method"], "S256");
  EXPECT_GE(flow->code_verifier.size(), 43u);
  EXPECT_EQ(q["code_challenge"], S256(flow->code_verifier));
  EXPECT_EQ(q["state"], flow->state);
  EXPECT_TRUE(http_.requests.empty());

  http_.On("POST", "https://platform.claude.com/v1/oauth/token", [&](const HttpRequest& r) {
    EXPECT_EQ(Header(r, "content-type"), "application/json");
    json::object body = JsonOf(r);
    if (S(body, "grant_type") == "refresh_token") {
      EXPECT_EQ(S(body, "refresh_token"), "rt-1");
      EXPECT_EQ(S(body, "client_id"), "9d1c250a-e61b-44d9-88ed-5944d1962f5e");
      return Reply(200, R"({"access_token":"at-2","refresh_token":"rt-2","expires_in":3600})");
    }
    EXPECT_EQ(S(body, "grant_type"), "authorization_code");
    EXPECT_EQ(S(body, "code"), "the-code");
    EXPECT_EQ(S(body, "state"), flow->state);
    EXPECT_EQ(S(body, "code_verifier"), flow->code_verifier);
    EXPECT_EQ(S(body, "redirect_uri"), flow->redirect_uri);
    EXPECT_EQ(S(body, "client_id"), "9d1c250a-e61b-44d9-88ed-5944d1962f5e");
    return Reply(200, R"({"access_token":"at-1","refresh_token":"rt-1","expires_in":28800,
        "token_type":"Bearer","account":{"uuid":"acc-uuid","email_address":"me@example.com"},
        "organization":{"uuid":"org","name":"Org"}})");
  });
  // Claude's page shows "code#state".
  auto tokens = client.Exchange(*flow, "the-code#" + flow->state);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_EQ(tokens->access_token, "at-1");
  EXPECT_EQ(tokens->refresh_token, "rt-1");
  EXPECT_EQ(tokens->expires_at_ms, kNow + 28800 * 1000);
  EXPECT_EQ(tokens->email, "me@example.com");

  now_ += 8 * 3600 * 1000 - 60 * 1000;
  EXPECT_TRUE(OAuthClient::NeedsRefresh(*tokens, now_));
  auto refreshed = client.Refresh("claude-code", *tokens);
  ASSERT_TRUE(refreshed.ok()) << refreshed.status();
  EXPECT_EQ(refreshed->access_token, "at-2");
  EXPECT_EQ(refreshed->refresh_token, "rt-2");    // rotated
  EXPECT_EQ(refreshed->email, "me@example.com");  // kept
  EXPECT_EQ(refreshed->expires_at_ms, now_ + 3600 * 1000);
  EXPECT_FALSE(OAuthClient::NeedsRefresh(*refreshed, now_));

  auto headers = OAuthClient::UpstreamHeaders("claude-code", *refreshed);
  EXPECT_EQ(headers, (std::vector<std::pair<std::string, std::string>>{
                         {"authorization", "Bearer at-2"},
                         {"anthropic-beta", "oauth-2025-04-20"},
                         {"anthropic-version", "2023-06-01"}}));
  EXPECT_EQ(OAuthClient::UpstreamBaseUrl("claude-code", *refreshed), "");
}

TEST_F(OAuthTest, RefreshInvalidGrantNeedsRelogin) {
  http_.On("POST", "https://platform.claude.com/v1/oauth/token", [](const HttpRequest&) {
    return Reply(400, R"({"error":"invalid_grant","error_description":"Refresh token revoked"})");
  });
  OAuthTokens t;
  t.access_token = "secret-access";
  t.refresh_token = "secret-refresh";
  auto r = Client().Refresh("claude-code", t);
  ASSERT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "invalid_grant"));
  EXPECT_TRUE(absl::StrContains(r.status().message(), "Refresh token revoked"));
  EXPECT_FALSE(absl::StrContains(r.status().message(), "secret"));
}

TEST_F(OAuthTest, ExchangeErrorsMapToStatuses) {
  OAuthClient client = Client();
  auto flow = client.Start("claude-code", "");
  ASSERT_TRUE(flow.ok());
  int calls = 0;
  http_.On("POST", "https://platform.claude.com/v1/oauth/token", [&](const HttpRequest&) {
    ++calls;
    if (calls == 1) return absl::StatusOr<HttpResponse>(Reply(400, R"({"error":"invalid_grant"})"));
    if (calls == 2) return absl::StatusOr<HttpResponse>(Reply(503, "<html>down</html>"));
    return absl::StatusOr<HttpResponse>(absl::UnavailableError("connection refused"));
  });
  EXPECT_EQ(client.Exchange(*flow, "c").status().code(), absl::StatusCode::kInvalidArgument);
  auto down = client.Exchange(*flow, "c");
  EXPECT_EQ(down.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(down.status().message(), "503"));
  EXPECT_EQ(client.Exchange(*flow, "c").status().code(), absl::StatusCode::kUnavailable);
  // Expired login: no call.
  now_ += 16 * 60 * 1000;
  EXPECT_EQ(client.Exchange(*flow, "c").status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(calls, 3);
}

// ---- codex ----

TEST_F(OAuthTest, CodexLoginWithCallbackUrlAndRefresh) {
  OAuthClient client = Client();
  auto flow = client.Start("codex", "");
  ASSERT_TRUE(flow.ok()) << flow.status();
  EXPECT_EQ(flow->redirect_uri, "http://localhost:1455/auth/callback");
  EXPECT_EQ(UrlWithoutQuery(flow->auth_url), "https://auth.openai.com/oauth/authorize");
  auto q = QueryOf(flow->auth_url);
  EXPECT_EQ(q["client_id"], "app_EMoamEEZ73f0CkXaXp7hrann");
  EXPECT_EQ(q["scope"], "openid profile email offline_access");
  EXPECT_EQ(q["code_challenge"], S256(flow->code_verifier));
  EXPECT_EQ(q["id_token_add_organizations"], "true");
  EXPECT_EQ(q["codex_cli_simplified_flow"], "true");
  EXPECT_EQ(q["originator"], "codex_cli_rs");
  EXPECT_EQ(q["redirect_uri"], "http://localhost:1455/auth/callback");

  const std::string id_token = Jwt(
      R"({"email":"dev@example.com","https://api.openai.com/auth":)"
      R"({"chatgpt_account_id":"acct-42","chatgpt_plan_type":"plus"}})");
  http_.On("POST", "https://auth.openai.com/oauth/token", [&](const HttpRequest& r) {
    if (Header(r, "content-type") == "application/json") {  // refresh, as codex-rs sends it
      json::object body = JsonOf(r);
      EXPECT_EQ(S(body, "grant_type"), "refresh_token");
      EXPECT_EQ(S(body, "refresh_token"), "rt-1");
      EXPECT_EQ(S(body, "client_id"), "app_EMoamEEZ73f0CkXaXp7hrann");
      EXPECT_EQ(S(body, "scope"), "openid profile email");
      return Reply(200, absl::StrCat(R"({"access_token":"at-2","id_token":")", id_token,
                                     R"(","expires_in":864000})"));
    }
    EXPECT_EQ(Header(r, "content-type"), "application/x-www-form-urlencoded");
    auto form = Params(r.body);
    EXPECT_EQ(form["grant_type"], "authorization_code");
    EXPECT_EQ(form["client_id"], "app_EMoamEEZ73f0CkXaXp7hrann");
    EXPECT_EQ(form["code"], "ac_123");
    EXPECT_EQ(form["redirect_uri"], "http://localhost:1455/auth/callback");
    EXPECT_EQ(form["code_verifier"], flow->code_verifier);
    return Reply(200, absl::StrCat(R"({"access_token":"at-1","refresh_token":"rt-1","id_token":")",
                                   id_token, R"(","expires_in":864000})"));
  });

  // A state from another login is refused before any call.
  auto wrong =
      client.Exchange(*flow, "http://localhost:1455/auth/callback?code=ac_123&state=someone-else");
  EXPECT_EQ(wrong.status().code(), absl::StatusCode::kInvalidArgument);
  auto denied = client.Exchange(*flow, "http://localhost:1455/auth/callback?error=access_denied");
  EXPECT_EQ(denied.status().code(), absl::StatusCode::kPermissionDenied);
  EXPECT_TRUE(http_.requests.empty());

  auto tokens =
      client.Exchange(*flow, absl::StrCat("http://localhost:1455/auth/callback?code=ac_123",
                                          "&scope=openid&state=", flow->state));
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_EQ(tokens->account_id, "acct-42");
  EXPECT_EQ(tokens->email, "dev@example.com");
  EXPECT_EQ(tokens->id_token, id_token);

  auto refreshed = client.Refresh("codex", *tokens);
  ASSERT_TRUE(refreshed.ok()) << refreshed.status();
  EXPECT_EQ(refreshed->access_token, "at-2");
  EXPECT_EQ(refreshed->refresh_token, "rt-1");  // not resent: kept
  EXPECT_EQ(refreshed->account_id, "acct-42");

  auto headers = OAuthClient::UpstreamHeaders("codex", *refreshed);
  auto has = [&](const std::string& k, const std::string& v) {
    return std::find(headers.begin(), headers.end(), std::make_pair(k, v)) != headers.end();
  };
  EXPECT_TRUE(has("authorization", "Bearer at-2"));
  EXPECT_TRUE(has("chatgpt-account-id", "acct-42"));
  EXPECT_TRUE(has("openai-beta", "responses=experimental"));
  EXPECT_TRUE(has("originator", "codex_cli_rs"));
}

// ---- gemini-cli ----

TEST_F(OAuthTest, GeminiCliLoginOnboardsFreeTierProject) {
  OAuthClient client = Client();
  auto flow = client.Start("gemini-cli", "");
  ASSERT_TRUE(flow.ok()) << flow.status();
  EXPECT_EQ(UrlWithoutQuery(flow->auth_url), "https://accounts.google.com/o/oauth2/v2/auth");
  auto q = QueryOf(flow->auth_url);
  EXPECT_EQ(q["client_id"],
            "681255809395-oo8ft2oprdrnp9e3aqf6av3hmdib135j.apps.googleusercontent.com");
  EXPECT_EQ(q["access_type"], "offline");
  EXPECT_EQ(q["redirect_uri"], "https://codeassist.google.com/authcode");
  EXPECT_TRUE(absl::StrContains(q["scope"], "https://www.googleapis.com/auth/cloud-platform"));
  EXPECT_EQ(q["code_challenge"], S256(flow->code_verifier));

  http_.On("POST", "https://oauth2.googleapis.com/token", [&](const HttpRequest& r) {
    auto form = Params(r.body);
    EXPECT_EQ(form["client_secret"], "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");
    if (form["grant_type"] == "refresh_token") {
      EXPECT_EQ(form["refresh_token"], "1//rt");
      return Reply(200, R"({"access_token":"ya29.b","expires_in":3599,"token_type":"Bearer"})");
    }
    EXPECT_EQ(form["grant_type"], "authorization_code");
    EXPECT_EQ(form["code"], "4/0Ab");
    EXPECT_EQ(form["code_verifier"], flow->code_verifier);
    EXPECT_EQ(form["redirect_uri"], "https://codeassist.google.com/authcode");
    return Reply(200,
                 R"({"access_token":"ya29.a","refresh_token":"1//rt","expires_in":3599,
                     "scope":"openid","token_type":"Bearer","id_token":"x.y.z"})");
  });
  http_.On("GET", "https://www.googleapis.com/oauth2/v2/userinfo", [](const HttpRequest& r) {
    EXPECT_EQ(Header(r, "authorization"), "Bearer ya29.a");
    return Reply(200, R"({"id":"1","email":"g@example.com","verified_email":true})");
  });
  http_.On("POST", "https://cloudcode-pa.googleapis.com/v1internal:loadCodeAssist",
           [](const HttpRequest& r) {
             json::object body = JsonOf(r);
             EXPECT_EQ(S(body.at("metadata").as_object(), "pluginType"), "GEMINI");
             return Reply(200, R"({"allowedTiers":[{"id":"legacy-tier"},
                 {"id":"free-tier","isDefault":true}]})");
           });
  int onboard_calls = 0;
  http_.On("POST", "https://cloudcode-pa.googleapis.com/v1internal:onboardUser",
           [&](const HttpRequest& r) {
             json::object body = JsonOf(r);
             EXPECT_EQ(S(body, "tierId"), "free-tier");
             EXPECT_FALSE(body.contains("cloudaicompanionProject"));
             if (++onboard_calls == 1) return Reply(200, R"({"name":"operations/1","done":false})");
             return Reply(200, R"({"name":"operations/1","done":true,
                 "response":{"cloudaicompanionProject":{"id":"wise-fox-123","name":"p"}}})");
           });
  auto tokens = client.Exchange(*flow, "4/0Ab");
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_EQ(tokens->email, "g@example.com");
  EXPECT_EQ(tokens->project_id, "wise-fox-123");
  EXPECT_EQ(onboard_calls, 2);
  EXPECT_EQ(slept_ms_, 5000);

  auto refreshed = client.Refresh("gemini-cli", *tokens);
  ASSERT_TRUE(refreshed.ok()) << refreshed.status();
  EXPECT_EQ(refreshed->access_token, "ya29.b");
  EXPECT_EQ(refreshed->refresh_token, "1//rt");  // Google does not resend it
  EXPECT_EQ(refreshed->project_id, "wise-fox-123");
  EXPECT_EQ(http_.Count("https://cloudcode-pa.googleapis.com/v1internal:loadCodeAssist"), 1);
  EXPECT_EQ(OAuthClient::UpstreamHeaders("gemini-cli", *refreshed).front().second, "Bearer ya29.b");
}

TEST_F(OAuthTest, GeminiCliExistingProjectAndIneligibleAccount) {
  OAuthClient client = Client();
  auto flow = client.Start("gemini-cli", "http://127.0.0.1:8085/oauth2callback");
  ASSERT_TRUE(flow.ok());
  EXPECT_EQ(QueryOf(flow->auth_url)["redirect_uri"], "http://127.0.0.1:8085/oauth2callback");
  http_.On("POST", "https://oauth2.googleapis.com/token", [](const HttpRequest&) {
    return Reply(200, R"({"access_token":"ya29.a","refresh_token":"1//rt","expires_in":3599})");
  });
  http_.On("GET", "https://www.googleapis.com/oauth2/v2/userinfo",
           [](const HttpRequest&) { return Reply(200, R"({"email":"g@example.com"})"); });
  bool ineligible = false;
  http_.On("POST", "https://cloudcode-pa.googleapis.com/v1internal:loadCodeAssist",
           [&](const HttpRequest&) {
             if (ineligible) {
               return Reply(200, R"({"allowedTiers":[{"id":"standard-tier","isDefault":true}],
                   "ineligibleTiers":[{"reasonCode":"INELIGIBLE_ACCOUNT",
                   "reasonMessage":"Not available in your country"}]})");
             }
             return Reply(200, R"({"currentTier":{"id":"free-tier"},
                 "cloudaicompanionProject":"proj-7"})");
           });
  auto tokens =
      client.Exchange(*flow, "http://127.0.0.1:8085/oauth2callback?code=c&state=" + flow->state);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_EQ(tokens->project_id, "proj-7");

  ineligible = true;
  auto refused = client.Exchange(*flow, "c");
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(absl::StrContains(refused.status().message(), "Not available in your country"));
}

// ---- copilot ----

TEST_F(OAuthTest, CopilotDeviceFlowAndTokenExchange) {
  OAuthClient client = Client();
  http_.On("POST", "https://github.com/login/device/code", [](const HttpRequest& r) {
    EXPECT_EQ(Header(r, "accept"), "application/json");
    auto form = Params(r.body);
    EXPECT_EQ(form["client_id"], "Iv1.b507a08c87ecfe98");
    EXPECT_EQ(form["scope"], "read:user");
    return Reply(200, R"({"device_code":"dc-1","user_code":"ABCD-1234",
        "verification_uri":"https://github.com/login/device","expires_in":899,"interval":5})");
  });
  auto flow = client.Start("copilot", "");
  ASSERT_TRUE(flow.ok()) << flow.status();
  EXPECT_EQ(flow->kind, OAuthFlowKind::kDeviceCode);
  EXPECT_EQ(flow->user_code, "ABCD-1234");
  EXPECT_EQ(flow->verification_uri, "https://github.com/login/device");
  EXPECT_EQ(flow->interval_s, 5);
  EXPECT_EQ(flow->expires_at_ms, kNow + 899 * 1000);

  int polls = 0;
  http_.On("POST", "https://github.com/login/oauth/access_token", [&](const HttpRequest& r) {
    auto form = Params(r.body);
    EXPECT_EQ(form["client_id"], "Iv1.b507a08c87ecfe98");
    EXPECT_EQ(form["device_code"], "dc-1");
    EXPECT_EQ(form["grant_type"], "urn:ietf:params:oauth:grant-type:device_code");
    ++polls;
    // GitHub answers the pending states with 200.
    if (polls == 1) return Reply(200, R"({"error":"authorization_pending"})");
    if (polls == 2) return Reply(200, R"({"error":"slow_down","interval":10})");
    return Reply(200, R"({"access_token":"gho_abc","token_type":"bearer","scope":"read:user"})");
  });
  int64_t copilot_expiry_s = kNow / 1000 + 1500;
  http_.On("GET", "https://api.github.com/copilot_internal/v2/token", [&](const HttpRequest& r) {
    EXPECT_EQ(Header(r, "authorization"), "token gho_abc");
    EXPECT_FALSE(Header(r, "editor-version").empty());
    return Reply(200, absl::StrCat(R"({"token":"tid=1;exp=2:mac","expires_at":)", copilot_expiry_s,
                                   R"(,"refresh_in":1500,
        "endpoints":{"api":"https://api.individual.githubcopilot.com"}})"));
  });
  http_.On("GET", "https://api.github.com/user", [](const HttpRequest& r) {
    EXPECT_EQ(Header(r, "authorization"), "token gho_abc");
    return Reply(200, R"({"login":"octocat","email":null})");
  });

  auto first = client.Poll(*flow);
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_FALSE(first->has_value());
  auto second = client.Poll(*flow);
  ASSERT_TRUE(second.ok()) << second.status();
  EXPECT_FALSE(second->has_value());
  EXPECT_EQ(flow->interval_s, 10);
  auto third = client.Poll(*flow);
  ASSERT_TRUE(third.ok()) << third.status();
  ASSERT_TRUE(third->has_value());
  const OAuthTokens& t = **third;
  EXPECT_EQ(t.access_token, "gho_abc");
  EXPECT_EQ(t.expires_at_ms, 0);
  EXPECT_EQ(t.api_key, "tid=1;exp=2:mac");
  EXPECT_EQ(t.api_key_expires_at_ms, copilot_expiry_s * 1000);
  EXPECT_EQ(t.api_base, "https://api.individual.githubcopilot.com");
  EXPECT_EQ(t.email, "octocat");

  EXPECT_FALSE(OAuthClient::NeedsRefresh(t, kNow));
  EXPECT_TRUE(OAuthClient::NeedsRefresh(t, kNow + 1300 * 1000));
  EXPECT_EQ(OAuthClient::UpstreamBaseUrl("copilot", t), "https://api.individual.githubcopilot.com");
  auto headers = OAuthClient::UpstreamHeaders("copilot", t);
  EXPECT_EQ(headers.front(),
            std::make_pair(std::string("authorization"), std::string("Bearer tid=1;exp=2:mac")));
  bool integration = false;
  for (const auto& [k, v] : headers) integration |= k == "copilot-integration-id";
  EXPECT_TRUE(integration);

  copilot_expiry_s += 1800;
  auto refreshed = client.Refresh("copilot", t);
  ASSERT_TRUE(refreshed.ok()) << refreshed.status();
  EXPECT_EQ(refreshed->api_key_expires_at_ms, copilot_expiry_s * 1000);
  EXPECT_EQ(refreshed->access_token, "gho_abc");
}

TEST_F(OAuthTest, CopilotRefreshWithRevokedGithubTokenNeedsRelogin) {
  http_.On("GET", "https://api.github.com/copilot_internal/v2/token",
           [](const HttpRequest&) { return Reply(401, R"({"message":"Bad credentials"})"); });
  OAuthTokens t;
  t.access_token = "gho_revoked";
  auto r = Client().Refresh("copilot", t);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition) << r.status();
  EXPECT_TRUE(absl::StrContains(r.status().message(), "Bad credentials"));
}

// ---- qwen ----

TEST_F(OAuthTest, QwenDeviceFlowWithPkce) {
  OAuthClient client = Client();
  std::string challenge;
  http_.On("POST", "https://chat.qwen.ai/api/v1/oauth2/device/code", [&](const HttpRequest& r) {
    EXPECT_EQ(Header(r, "content-type"), "application/x-www-form-urlencoded");
    auto form = Params(r.body);
    EXPECT_EQ(form["client_id"], "f0304373b74a44d2b584a3fb70ca9e56");
    EXPECT_EQ(form["scope"], "openid profile email model.completion");
    EXPECT_EQ(form["code_challenge_method"], "S256");
    challenge = form["code_challenge"];
    return Reply(200, R"({"device_code":"qdc","user_code":"QW-1",
        "verification_uri":"https://chat.qwen.ai/authorize",
        "verification_uri_complete":)"
                      R"("https://chat.qwen.ai/authorize?user_code=QW-1&client=qwen-code",
        "expires_in":600})");
  });
  auto flow = client.Start("qwen", "");
  ASSERT_TRUE(flow.ok()) << flow.status();
  EXPECT_EQ(challenge, S256(flow->code_verifier));
  EXPECT_EQ(flow->verification_uri_complete,
            "https://chat.qwen.ai/authorize?user_code=QW-1&client=qwen-code");

  int polls = 0;
  http_.On("POST", "https://chat.qwen.ai/api/v1/oauth2/token", [&](const HttpRequest& r) {
    auto form = Params(r.body);
    if (form["grant_type"] == "refresh_token") {
      EXPECT_EQ(form["refresh_token"], "q-rt");
      EXPECT_EQ(form["client_id"], "f0304373b74a44d2b584a3fb70ca9e56");
      return Reply(200, R"({"access_token":"q-at-2","refresh_token":"q-rt-2","expires_in":21600,
          "resource_url":"portal.qwen.ai"})");
    }
    EXPECT_EQ(form["grant_type"], "urn:ietf:params:oauth:grant-type:device_code");
    EXPECT_EQ(form["device_code"], "qdc");
    EXPECT_EQ(form["code_verifier"], flow->code_verifier);
    ++polls;
    if (polls == 1) return Reply(400, R"({"error":"authorization_pending"})");
    if (polls == 2) return Reply(429, R"({"error":"slow_down"})");
    return Reply(200, R"({"access_token":"q-at","refresh_token":"q-rt","token_type":"Bearer",
        "expires_in":21600,"resource_url":"portal.qwen.ai"})");
  });
  EXPECT_FALSE(client.Poll(*flow)->has_value());
  EXPECT_FALSE(client.Poll(*flow)->has_value());
  EXPECT_EQ(flow->interval_s, 10);
  auto done = client.Poll(*flow);
  ASSERT_TRUE(done.ok() && done->has_value()) << done.status();
  EXPECT_EQ((*done)->resource_url, "portal.qwen.ai");
  EXPECT_EQ(OAuthClient::UpstreamBaseUrl("qwen", **done), "https://portal.qwen.ai/v1");
  EXPECT_EQ(OAuthClient::UpstreamHeaders("qwen", **done).front().second, "Bearer q-at");

  auto refreshed = client.Refresh("qwen", **done);
  ASSERT_TRUE(refreshed.ok()) << refreshed.status();
  EXPECT_EQ(refreshed->refresh_token, "q-rt-2");

  OAuthTokens with_scheme;
  with_scheme.resource_url = "https://dashscope.aliyuncs.com/compatible-mode/v1/";
  EXPECT_EQ(OAuthClient::UpstreamBaseUrl("qwen", with_scheme),
            "https://dashscope.aliyuncs.com/compatible-mode/v1");
}

TEST_F(OAuthTest, DeviceFlowDeniedExpiredAndTimedOut) {
  OAuthClient client = Client();
  http_.On("POST", "https://chat.qwen.ai/api/v1/oauth2/device/code", [](const HttpRequest&) {
    return Reply(200, R"({"device_code":"qdc","user_code":"U","verification_uri":"https://v",
        "expires_in":300,"interval":2})");
  });
  auto flow = client.Start("qwen", "");
  ASSERT_TRUE(flow.ok());
  EXPECT_EQ(flow->interval_s, 2);
  std::string answer = R"({"error":"access_denied"})";
  http_.On("POST", "https://chat.qwen.ai/api/v1/oauth2/token",
           [&](const HttpRequest&) { return Reply(400, answer); });
  EXPECT_EQ(client.Poll(*flow).status().code(), absl::StatusCode::kPermissionDenied);
  answer = R"({"error":"expired_token","error_description":"Device code expired"})";
  EXPECT_EQ(client.Poll(*flow).status().code(), absl::StatusCode::kFailedPrecondition);
  answer = R"({"error":"invalid_request","error_description":"bad device code"})";
  auto bad = client.Poll(*flow);
  EXPECT_EQ(bad.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_TRUE(absl::StrContains(bad.status().message(), "bad device code"));
  // Past expires_in: refused locally.
  const size_t before = http_.requests.size();
  now_ += 301 * 1000;
  EXPECT_EQ(client.Poll(*flow).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(http_.requests.size(), before);
  // Device flows are polled, not exchanged.
  EXPECT_EQ(client.Exchange(*flow, "x").status().code(), absl::StatusCode::kFailedPrecondition);
}

// ---- kiro ----

TEST_F(OAuthTest, KiroAwsOidcDeviceFlowFinishedByAnotherReplica) {
  http_.On(
      "POST", "https://oidc.us-east-1.amazonaws.com/client/register", [](const HttpRequest& r) {
        EXPECT_EQ(Header(r, "content-type"), "application/json");
        json::object body = JsonOf(r);
        EXPECT_EQ(S(body, "clientType"), "public");
        EXPECT_FALSE(S(body, "clientName").empty());
        const json::array& grants = body.at("grantTypes").as_array();
        EXPECT_NE(std::find(grants.begin(), grants.end(),
                            json::value("urn:ietf:params:oauth:grant-type:device_code")),
                  grants.end());
        const json::array& scopes = body.at("scopes").as_array();
        EXPECT_NE(std::find(scopes.begin(), scopes.end(), json::value("codewhisperer:completions")),
                  scopes.end());
        return Reply(200, R"({"clientId":"cid","clientSecret":"csecret",
                 "clientIdIssuedAt":1700000000,"clientSecretExpiresAt":1707776000})");
      });
  http_.On("POST", "https://oidc.us-east-1.amazonaws.com/device_authorization",
           [](const HttpRequest& r) {
             json::object body = JsonOf(r);
             EXPECT_EQ(S(body, "clientId"), "cid");
             EXPECT_EQ(S(body, "clientSecret"), "csecret");
             EXPECT_EQ(S(body, "startUrl"), "https://view.awsapps.com/start");
             return Reply(200, R"({"deviceCode":"kdc","userCode":"KIRO-1",
                 "verificationUri":"https://device.sso.us-east-1.amazonaws.com/",
                 "verificationUriComplete":)"
                               R"("https://device.sso.us-east-1.amazonaws.com/?user_code=KIRO-1",
                 "expiresIn":600,"interval":1})");
           });
  auto started = Client().Start("kiro", "");
  ASSERT_TRUE(started.ok()) << started.status();
  EXPECT_EQ(started->user_code, "KIRO-1");
  EXPECT_EQ(started->interval_s, 1);

  // Stored as JSON and finished elsewhere.
  auto flow = PendingFlow::FromJson(started->ToJson());
  ASSERT_TRUE(flow.ok()) << flow.status();
  int polls = 0;
  http_.On("POST", "https://oidc.us-east-1.amazonaws.com/token", [&](const HttpRequest& r) {
    json::object body = JsonOf(r);
    EXPECT_EQ(S(body, "clientId"), "cid");
    EXPECT_EQ(S(body, "clientSecret"), "csecret");
    if (S(body, "grantType") == "refresh_token") {
      if (S(body, "refreshToken") == "revoked") {
        return Reply(
            400,
            R"({"error":"invalid_grant","error_description":"Invalid refresh token provided"})");
      }
      EXPECT_EQ(S(body, "refreshToken"), "k-rt");
      return Reply(200, R"({"accessToken":"k-at-2","expiresIn":3600,"tokenType":"Bearer"})");
    }
    EXPECT_EQ(S(body, "grantType"), "urn:ietf:params:oauth:grant-type:device_code");
    EXPECT_EQ(S(body, "deviceCode"), "kdc");
    if (++polls == 1) {
      return Reply(
          400,
          R"({"error":"authorization_pending","error_description":"Authorization is pending"})");
    }
    return Reply(200, R"({"accessToken":"k-at","refreshToken":"k-rt","expiresIn":3600,
        "tokenType":"Bearer"})");
  });
  OAuthClient client = Client();
  EXPECT_FALSE(client.Poll(*flow)->has_value());
  auto done = client.Poll(*flow);
  ASSERT_TRUE(done.ok() && done->has_value()) << done.status();
  EXPECT_EQ((*done)->access_token, "k-at");
  EXPECT_EQ((*done)->client_id, "cid");
  EXPECT_EQ((*done)->client_secret, "csecret");
  EXPECT_EQ((*done)->expires_at_ms, kNow + 3600 * 1000);

  auto refreshed = client.Refresh("kiro", **done);
  ASSERT_TRUE(refreshed.ok()) << refreshed.status();
  EXPECT_EQ(refreshed->access_token, "k-at-2");
  EXPECT_EQ(refreshed->refresh_token, "k-rt");

  OAuthTokens revoked = **done;
  revoked.refresh_token = "revoked";
  EXPECT_EQ(client.Refresh("kiro", revoked).status().code(), absl::StatusCode::kFailedPrecondition);
}

// ---- iflow ----

TEST_F(OAuthTest, IflowLoginFetchesApiKey) {
  OAuthClient client = Client();
  auto flow = client.Start("iflow", "");
  ASSERT_TRUE(flow.ok()) << flow.status();
  EXPECT_EQ(UrlWithoutQuery(flow->auth_url), "https://iflow.cn/oauth");
  auto q = QueryOf(flow->auth_url);
  EXPECT_EQ(q["client_id"], "10009311001");
  EXPECT_EQ(q["redirect"], "http://localhost:11451/oauth2callback");
  EXPECT_EQ(q["loginMethod"], "phone");
  EXPECT_EQ(q["state"], flow->state);
  EXPECT_TRUE(flow->code_verifier.empty());

  int user_info_calls = 0;
  http_.On("POST", "https://iflow.cn/oauth/token", [](const HttpRequest& r) {
    EXPECT_EQ(Header(r, "authorization"),
              "Basic " + crypto::Base64Encode("10009311001:4Z3YjXycVsQvyGF1etiNlIBB4RsqSDtW"));
    auto form = Params(r.body);
    if (form["grant_type"] == "refresh_token") {
      return Reply(200,
                   R"({"access_token":"if-at-2","refresh_token":"if-rt-2","expires_in":86400})");
    }
    EXPECT_EQ(form["grant_type"], "authorization_code");
    EXPECT_EQ(form["code"], "if-code");
    EXPECT_EQ(form["redirect_uri"], "http://localhost:11451/oauth2callback");
    EXPECT_EQ(form["client_id"], "10009311001");
    return Reply(200, R"({"access_token":"if-at","refresh_token":"if-rt","expires_in":86400,
        "token_type":"bearer","scope":"read"})");
  });
  http_.On("GET", "https://iflow.cn/api/oauth/getUserInfo", [&](const HttpRequest& r) {
    ++user_info_calls;
    const std::string token = QueryOf(r.url)["accessToken"];
    EXPECT_TRUE(token == "if-at" || token == "if-at-2") << token;
    return Reply(200, absl::StrCat(R"({"success":true,"data":{"apiKey":"sk-iflow-)", token,
                                   R"(","email":"","phone":"138****0000"}})"));
  });
  auto tokens = client.Exchange(
      *flow, "http://localhost:11451/oauth2callback?code=if-code&state=" + flow->state);
  ASSERT_TRUE(tokens.ok()) << tokens.status();
  EXPECT_EQ(tokens->api_key, "sk-iflow-if-at");
  EXPECT_EQ(tokens->email, "138****0000");
  EXPECT_EQ(OAuthClient::UpstreamHeaders("iflow", *tokens).front().second, "Bearer sk-iflow-if-at");

  auto refreshed = client.Refresh("iflow", *tokens);
  ASSERT_TRUE(refreshed.ok()) << refreshed.status();
  EXPECT_EQ(refreshed->api_key, "sk-iflow-if-at-2");
  EXPECT_EQ(user_info_calls, 2);
}

// ---- url_base_override ----

TEST_F(OAuthTest, UrlBaseOverrideRewritesProviderUrls) {
  OAuthClient client = Client("http://127.0.0.1:9999/");
  auto flow = client.Start("claude-code", "");
  ASSERT_TRUE(flow.ok());
  EXPECT_TRUE(absl::StartsWith(flow->auth_url, "http://127.0.0.1:9999/claude.ai/oauth/authorize?"))
      << flow->auth_url;
  http_.On("POST", "http://127.0.0.1:9999/platform.claude.com/v1/oauth/token",
           [](const HttpRequest&) {
             return Reply(200, R"({"access_token":"a","refresh_token":"r","expires_in":60})");
           });
  EXPECT_TRUE(client.Exchange(*flow, "code").ok());

  http_.On("POST", "http://127.0.0.1:9999/github.com/login/device/code", [](const HttpRequest&) {
    return Reply(200, R"({"device_code":"d","user_code":"u",
        "verification_uri":"https://github.com/login/device","expires_in":900,"interval":5})");
  });
  auto device = client.Start("copilot", "");
  ASSERT_TRUE(device.ok()) << device.status();
  // What the provider returns is not rewritten.
  EXPECT_EQ(device->verification_uri, "https://github.com/login/device");
}

// ---- serialization ----

TEST(OAuthJsonTest, TokensRoundTrip) {
  OAuthTokens t;
  t.access_token = "a";
  t.refresh_token = "r";
  t.id_token = "i";
  t.expires_at_ms = 123;
  t.email = "e@x";
  t.account_id = "acct";
  t.project_id = "proj";
  t.resource_url = "portal.qwen.ai";
  t.api_key = "k";
  t.api_key_expires_at_ms = 456;
  t.api_base = "https://api";
  t.client_id = "cid";
  t.client_secret = "cs";
  auto back = TokensFromJson(TokensToJson(t));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(TokensToJson(*back), TokensToJson(t));
  EXPECT_EQ(back->client_secret, "cs");
  EXPECT_EQ(back->api_key_expires_at_ms, 456);
  // Empty fields are left out.
  EXPECT_EQ(TokensToJson(OAuthTokens{}), "{}");
  EXPECT_FALSE(TokensFromJson("[1]").ok());
  EXPECT_FALSE(TokensFromJson("not json").ok());
}

TEST(OAuthJsonTest, PendingFlowRoundTrip) {
  PendingFlow f;
  f.provider = "qwen";
  f.kind = OAuthFlowKind::kDeviceCode;
  f.code_verifier = "v";
  f.device_code = "d";
  f.user_code = "u";
  f.verification_uri = "https://v";
  f.verification_uri_complete = "https://v?c=u";
  f.interval_s = 10;
  f.expires_at_ms = 99;
  f.extra_json = R"({"k":"v"})";
  auto back = PendingFlow::FromJson(f.ToJson());
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->ToJson(), f.ToJson());
  EXPECT_EQ(back->kind, OAuthFlowKind::kDeviceCode);
  EXPECT_EQ(back->interval_s, 10);
  EXPECT_EQ(back->extra_json, R"({"k":"v"})");
  EXPECT_FALSE(PendingFlow::FromJson(R"({"provider":"nope","kind":"auth_code"})").ok());
  EXPECT_FALSE(PendingFlow::FromJson(R"({"provider":"codex","kind":"implicit"})").ok());
}

TEST(OAuthRefreshTest, NeedsRefreshWithinFiveMinutes) {
  OAuthTokens t;
  EXPECT_FALSE(OAuthClient::NeedsRefresh(t, kNow));  // no expiry known
  t.expires_at_ms = kNow + 5 * 60 * 1000 + 1;
  EXPECT_FALSE(OAuthClient::NeedsRefresh(t, kNow));
  EXPECT_TRUE(OAuthClient::NeedsRefresh(t, kNow + 1));
  t.expires_at_ms = 0;
  t.api_key_expires_at_ms = kNow + 60 * 1000;
  EXPECT_TRUE(OAuthClient::NeedsRefresh(t, kNow));
}

HttpFetcherOptions FetchOptions(int timeout_ms, std::string proxy = "") {
  HttpFetcherOptions o;
  o.timeout_ms = timeout_ms;
  o.proxy = std::move(proxy);
  return o;
}

HttpRequest GetRequest(std::string url) {
  HttpRequest r;
  r.url = std::move(url);
  return r;
}

// ---- end to end against tests/integration/mock-oauth.mjs (opt-in) ----

// Runs when OMNI_MOCK_OAUTH_URL points at a running mock (node tests/integration/mock-oauth.mjs):
// every provider's login and refresh through the real HTTP client and url_base_override.
TEST(MockOAuthServerTest, EveryProviderLogsInAndRefreshes) {
  const char* base = std::getenv("OMNI_MOCK_OAUTH_URL");
  if (base == nullptr || *base == '\0') GTEST_SKIP() << "OMNI_MOCK_OAUTH_URL is not set";
  auto http = MakeHttpFetcher();
  OAuthClientOptions options;
  options.url_base_override = base;
  options.sleep_ms = [](int64_t) {};
  OAuthClient client(http.get(), options);
  for (const std::string& provider : OAuthClient::Providers()) {
    SCOPED_TRACE(provider);
    auto flow = client.Start(provider, "");
    ASSERT_TRUE(flow.ok()) << flow.status();
    absl::StatusOr<OAuthTokens> tokens;
    if (flow->kind == OAuthFlowKind::kAuthCode) {
      // The mock's authorize page approves at once: follow its redirect to the callback.
      auto page = http->Fetch(GetRequest(flow->auth_url));
      ASSERT_TRUE(page.ok()) << page.status();
      ASSERT_EQ(page->status, 302) << page->body;
      std::string location;
      for (const auto& [k, v] : page->headers) {
        if (k == "location") location = v;
      }
      tokens = client.Exchange(*flow, location);
    } else {
      for (int i = 0; i < 10 && !tokens.ok(); ++i) {
        auto polled = client.Poll(*flow);
        ASSERT_TRUE(polled.ok()) << polled.status();
        if (polled->has_value()) tokens = **polled;
      }
    }
    ASSERT_TRUE(tokens.ok()) << tokens.status();
    EXPECT_FALSE(tokens->access_token.empty());
    if (provider == "gemini-cli") {
      EXPECT_FALSE(tokens->project_id.empty());
    } else if (provider == "codex") {
      EXPECT_FALSE(tokens->account_id.empty());
    } else if (provider == "copilot" || provider == "iflow") {
      EXPECT_FALSE(tokens->api_key.empty());
    } else if (provider == "qwen") {
      EXPECT_FALSE(OAuthClient::UpstreamBaseUrl(provider, *tokens).empty());
    }
    auto refreshed = client.Refresh(provider, *tokens);
    ASSERT_TRUE(refreshed.ok()) << refreshed.status();
    if (provider == "copilot") {
      EXPECT_NE(refreshed->api_key, tokens->api_key);
    } else {
      EXPECT_NE(refreshed->access_token, tokens->access_token);
      EXPECT_FALSE(refreshed->refresh_token.empty());
    }
  }
}

// ---- http_fetch against a one-shot local server ----

// Accepts one connection on 127.0.0.1, records what arrives, answers `answer` (nothing when
// empty), then closes.
class OneShotServer {
 public:
  explicit OneShotServer(std::string answer) : answer_(std::move(answer)) {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    listen(fd_, 1);
    socklen_t len = sizeof addr;
    getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~OneShotServer() {
    shutdown(fd_, SHUT_RDWR);
    thread_.join();
    close(fd_);
  }
  int port() const { return port_; }
  // The request as received (valid after the fetch returned).
  std::string received() {
    thread_.join();
    thread_ = std::thread([] {});
    return received_;
  }

 private:
  void Serve() {
    int c = accept(fd_, nullptr, nullptr);
    if (c < 0) return;
    char buf[4096];
    while (true) {
      size_t head_end = received_.find("\r\n\r\n");
      if (head_end != std::string::npos) {
        size_t cl = received_.find("Content-Length: ");
        size_t want = cl == std::string::npos ? 0 : std::stoul(received_.substr(cl + 16));
        if (received_.size() >= head_end + 4 + want) break;
      }
      ssize_t n = recv(c, buf, sizeof buf, 0);
      if (n <= 0) break;
      received_.append(buf, n);
    }
    if (answer_.empty()) {
      recv(c, buf, sizeof buf, 0);  // hold the connection until the client gives up
    } else {
      send(c, answer_.data(), answer_.size(), MSG_NOSIGNAL);
    }
    close(c);
  }

  std::string answer_;
  int fd_ = -1;
  int port_ = 0;
  std::string received_;
  std::thread thread_;
};

TEST(HttpFetchTest, PostsAndReadsChunkedAnswer) {
  OneShotServer server(
      "HTTP/1.1 201 Created\r\nContent-Type: application/json\r\nX-Trace-ID: t1\r\n"
      "Transfer-Encoding: chunked\r\n\r\n5\r\n{\"a\":\r\n3\r\n12}\r\n0\r\n\r\n");
  auto fetcher = MakeHttpFetcher(FetchOptions(5000));
  HttpRequest req;
  req.method = "POST";
  req.url = absl::StrCat("http://127.0.0.1:", server.port(), "/oauth/token?x=1");
  req.headers = {{"content-type", "application/x-www-form-urlencoded"}};
  req.body = "grant_type=refresh_token";
  auto res = fetcher->Fetch(req);
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_EQ(res->status, 201);
  EXPECT_EQ(res->body, "{\"a\":12}");
  bool trace = false;
  for (const auto& [k, v] : res->headers) trace |= k == "x-trace-id" && v == "t1";
  EXPECT_TRUE(trace);
  const std::string got = server.received();
  EXPECT_TRUE(absl::StartsWith(got, "POST /oauth/token?x=1 HTTP/1.1\r\n")) << got;
  EXPECT_TRUE(absl::StrContains(got, absl::StrCat("Host: 127.0.0.1:", server.port(), "\r\n")));
  EXPECT_TRUE(absl::StrContains(got, "Content-Length: 24\r\n"));
  EXPECT_TRUE(absl::EndsWith(got, "\r\n\r\ngrant_type=refresh_token"));
}

TEST(HttpFetchTest, PlainHttpThroughProxyUsesAbsoluteForm) {
  OneShotServer proxy("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
  auto fetcher =
      MakeHttpFetcher(FetchOptions(5000, absl::StrCat("http://u:p@127.0.0.1:", proxy.port())));
  auto res = fetcher->Fetch(GetRequest("http://provider.invalid/a/b"));
  ASSERT_TRUE(res.ok()) << res.status();
  EXPECT_EQ(res->body, "ok");
  const std::string got = proxy.received();
  EXPECT_TRUE(absl::StartsWith(got, "GET http://provider.invalid/a/b HTTP/1.1\r\n")) << got;
  EXPECT_TRUE(absl::StrContains(got, "Host: provider.invalid\r\n"));
  EXPECT_TRUE(absl::StrContains(got, "Proxy-Authorization: Basic dTpw\r\n"));
}

TEST(HttpFetchTest, HttpsThroughProxyOpensConnectTunnel) {
  // The proxy refuses the tunnel; what matters is the CONNECT it received.
  OneShotServer proxy("HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n");
  auto fetcher =
      MakeHttpFetcher(FetchOptions(5000, absl::StrCat("http://127.0.0.1:", proxy.port())));
  auto res = fetcher->Fetch(GetRequest("https://provider.invalid/x"));
  EXPECT_EQ(res.status().code(), absl::StatusCode::kUnavailable);
  EXPECT_TRUE(absl::StrContains(res.status().message(), "403")) << res.status();
  EXPECT_TRUE(absl::StartsWith(proxy.received(), "CONNECT provider.invalid:443 HTTP/1.1\r\n"));
}

TEST(HttpFetchTest, TimeoutAndRefusedConnection) {
  OneShotServer silent("");
  auto fetcher = MakeHttpFetcher(FetchOptions(300));
  auto res = fetcher->Fetch(GetRequest(absl::StrCat("http://127.0.0.1:", silent.port(), "/")));
  EXPECT_EQ(res.status().code(), absl::StatusCode::kDeadlineExceeded) << res.status();
  silent.received();

  auto refused = fetcher->Fetch(GetRequest("http://127.0.0.1:1/"));
  EXPECT_EQ(refused.status().code(), absl::StatusCode::kUnavailable) << refused.status();
  EXPECT_EQ(fetcher->Fetch(GetRequest("ftp://x/")).status().code(),
            absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace omniroute::accounts
