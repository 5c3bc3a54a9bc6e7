#include "local_accounts.h"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <future>
#include <map>
#include <sstream>
#include <thread>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/secrets.h"

namespace omniroute::accounts {
namespace {

namespace json = boost::json;

// Answers the providers' OAuth token endpoints like they do; counts the refreshes.
class FakeHttp final : public HttpFetcher {
 public:
  absl::StatusOr<HttpResponse> Fetch(const HttpRequest& request) override {
    HttpResponse res;
    res.status = 200;
    if (absl::StrContains(request.url, "/oauth/token")) {
      if (absl::StrContains(request.body, "refresh_token")) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));  // let the racers pile up
        const int n = ++refreshes;
        if (fail_refresh) {
          res.status = 400;
          res.body = R"({"error":"invalid_grant","error_description":"refresh token revoked"})";
          return res;
        }
        res.body = absl::StrCat(R"({"access_token":"at-refreshed-)", n,
                                R"(","refresh_token":"rt-2","expires_in":3600,"token_type":"Bearer"})");
        return res;
      }
      res.body = absl::StrCat(R"({"access_token":"at-first","refresh_token":"rt-1","expires_in":)",
                              first_lifetime_s, R"(,"token_type":"Bearer"})");
      return res;
    }
    // qwen's device flow: one authorization_pending, then tokens.
    if (absl::StrContains(request.url, "/oauth2/device/code")) {
      res.body = R"({"device_code":"dc-1","user_code":"ABCD-EFGH","verification_uri":"https://chat.qwen.ai/authorize","expires_in":600,"interval":5})";
      return res;
    }
    if (absl::StrContains(request.url, "/oauth2/token") &&
        absl::StrContains(request.body, "device_code=dc-1")) {
      if (++device_polls == 1) {
        res.status = 400;
        res.body = R"({"error":"authorization_pending"})";
        return res;
      }
      res.body = R"({"access_token":"at-qwen","refresh_token":"rt-qwen","expires_in":3600,"resource_url":"portal.qwen.ai"})";
      return res;
    }
    if (absl::EndsWith(request.url, "/models")) {
      bool authorized = false;
      for (const auto& [n, v] : request.headers) authorized |= v == "Bearer sk-good";
      res.status = authorized ? 200 : 401;
      res.body = authorized ? R"({"data":[]})" : R"({"error":{"message":"bad key"}})";
      return res;
    }
    res.body = "{}";
    return res;
  }

  std::atomic<int> refreshes{0};
  std::atomic<int> device_polls{0};
  std::atomic<bool> fail_refresh{false};
  int first_lifetime_s = 3600;
};

struct Harness {
  explicit Harness(std::string yaml = "", std::string db = ":memory:", FakeHttp* http = nullptr) {
    auto c = ParseConfig(yaml.empty() ? R"(
nodes: [ { id: local, format: openai, base_url: "http://127.0.0.1:9/v1" } ]
connections:
  - { provider: local, name: a, api_key: sk-a }
  - { provider: anthropic, name: c, api_key: sk-ant }
  - { provider: gemini, name: g, api_key: g-key }
api_keys: [ { name: team, key: sk-team-123 } ]
)"
                                      : yaml);
    EXPECT_TRUE(c.ok()) << c.status();
    Config cfg = *c;
    cfg.api_key_secret = "key-secret";
    cfg.jwt_secret = "jwt-secret";
    cfg.initial_password = "first-password";
    config = std::make_shared<const Config>(cfg);
    AccountsOptions options;
    auto store = MakeSqliteAccountsStore(db);
    EXPECT_TRUE(store.ok()) << store.status();
    options.store = std::move(store).value();
    options.keyring = *crypto::Keyring::FromSecrets("storage-secret");
    if (http) {
      struct Borrowed final : HttpFetcher {
        explicit Borrowed(HttpFetcher* h) : h(h) {}
        absl::StatusOr<HttpResponse> Fetch(const HttpRequest& r) override { return h->Fetch(r); }
        HttpFetcher* h;
      };
      options.http = std::make_unique<Borrowed>(http);
    }
    options.clock = [this] { return now_ms.load(); };
    options.sync_interval_ms = 50;
    options.workers = 4;
    auto made = MakeLocalAccounts(config, std::move(options));
    EXPECT_TRUE(made.ok()) << made.status();
    acc = *made;
  }

  v1::AdminResponse Admin(const std::string& method, const std::string& path,
                          const std::string& body = "", std::string actor = "admin-key",
                          const std::string& query = "") {
    v1::AdminRequest r;
    r.set_method(method);
    r.set_path(path);
    r.set_body(body);
    r.set_query(query);
    r.set_actor(std::move(actor));
    r.set_client_ip("10.1.2.3");
    std::promise<absl::StatusOr<v1::AdminResponse>> p;
    acc->Admin(r, [&](absl::StatusOr<v1::AdminResponse> a) { p.set_value(std::move(a)); });
    auto got = p.get_future().get();
    EXPECT_TRUE(got.ok()) << got.status();
    return *got;
  }

  absl::StatusOr<v1::ClientKey> Resolve(const std::string& key) {
    std::promise<absl::StatusOr<v1::ClientKey>> p;
    acc->ResolveClientKey(key, [&](auto r) { p.set_value(std::move(r)); });
    return p.get_future().get();
  }

  absl::StatusOr<v1::Credential> Credential(const std::string& id, bool refresh = false,
                                            const std::string& failed = "") {
    v1::GetCredentialRequest r;
    r.set_connection_id(id);
    r.set_refresh(refresh);
    r.set_failed_token_sha256(failed);
    std::promise<absl::StatusOr<v1::Credential>> p;
    acc->GetCredential(r, [&](auto c) { p.set_value(std::move(c)); });
    return p.get_future().get();
  }

  v1::Catalog Catalog(int64_t known = 0) {
    v1::Catalog out;
    acc->GetCatalog(known, [&](auto c) { out = *c; });
    return out;
  }

  ConfigPtr config;
  std::atomic<int64_t> now_ms{1'800'000'000'000};
  AccountsPtr acc;
};

json::object Body(const v1::AdminResponse& r) { return json::parse(r.body()).as_object(); }

std::map<std::string, std::string> Headers(const v1::Credential& c) {
  std::map<std::string, std::string> out;
  for (const auto& h : c.headers()) out[h.name()] = h.value();
  return out;
}

TEST(LocalAccountsTest, ResolvesConfiguredKeys) {
  Harness h;
  auto got = h.Resolve("sk-team-123");
  ASSERT_TRUE(got.ok()) << got.status();
  EXPECT_EQ(got->name(), "team");
  EXPECT_EQ(got->id(), "cfg:team");
  EXPECT_EQ(got->cache_ttl_s(), 5);
  EXPECT_EQ(h.Resolve("sk-team-124").status().code(), absl::StatusCode::kNotFound);
}

TEST(LocalAccountsTest, CredentialHeadersFollowTheProvider) {
  Harness h;
  EXPECT_EQ(Headers(*h.Credential("local:a"))["authorization"], "Bearer sk-a");
  auto ant = Headers(*h.Credential("anthropic:c"));
  EXPECT_EQ(ant["x-api-key"], "sk-ant");
  EXPECT_EQ(ant["anthropic-version"], "2023-06-01");
  EXPECT_EQ(Headers(*h.Credential("gemini:g"))["x-goog-api-key"], "g-key");
  EXPECT_EQ(h.Credential("nope:x").status().code(), absl::StatusCode::kNotFound);
}

TEST(LocalAccountsTest, GeneratedKeysAreShownOnceAndRevocable) {
  Harness h;
  auto created = h.Admin("POST", "/api/keys",
                         R"({"name":"ci","allowedModels":["openai/*"],"rpmLimit":60,"team":"ml",
                             "metadata":{"owner":"ana"}})");
  ASSERT_EQ(created.status(), 201) << created.body();
  const json::object body = Body(created);
  const std::string key(body.at("key").as_string());
  const std::string id(body.at("id").as_string());
  EXPECT_TRUE(crypto::CheckClientKey(key, "key-secret")) << key;
  EXPECT_FALSE(body.contains("hash"));

  auto resolved = h.Resolve(key);
  ASSERT_TRUE(resolved.ok()) << resolved.status();
  EXPECT_EQ(resolved->id(), id);
  EXPECT_EQ(resolved->team(), "ml");
  EXPECT_EQ(resolved->rpm_limit(), 60);
  ASSERT_EQ(resolved->allowed_models_size(), 1);
  EXPECT_EQ(resolved->metadata().at("owner"), "ana");

  // Listed masked: never the key, never its hash.
  auto list = h.Admin("GET", "/api/keys");
  EXPECT_EQ(list.status(), 200);
  EXPECT_FALSE(absl::StrContains(list.body(), key));
  EXPECT_FALSE(absl::StrContains(list.body(), Sha256Hex(key)));
  EXPECT_TRUE(absl::StrContains(list.body(), R"("managedBy":"file")"));
  // Not revealable unless allowed.
  EXPECT_EQ(h.Admin("GET", absl::StrCat("/api/keys/", id, "/reveal")).status(), 403);

  // Disable, enable, expire, revoke.
  EXPECT_EQ(h.Admin("PATCH", "/api/keys/" + id, R"({"enabled":false})").status(), 200);
  EXPECT_EQ(h.Resolve(key).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(h.Admin("PATCH", "/api/keys/" + id, R"({"enabled":true})").status(), 200);
  EXPECT_TRUE(h.Resolve(key).ok());
  EXPECT_EQ(h.Admin("PATCH", "/api/keys/" + id, R"({"expiresAt":"2020-01-01T00:00:00Z"})").status(),
            200);
  EXPECT_EQ(h.Resolve(key).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(h.Admin("DELETE", "/api/keys/" + id).status(), 200);
  EXPECT_EQ(h.Admin("GET", "/api/keys/" + id).status(), 404);

  // File keys are read-only; bad input is a 400 naming the field.
  EXPECT_EQ(h.Admin("DELETE", "/api/keys/cfg:team").status(), 403);
  auto bad = h.Admin("POST", "/api/keys", R"({"name":"x","rpmLimit":-1})");
  EXPECT_EQ(bad.status(), 400);
  EXPECT_TRUE(absl::StrContains(bad.body(), "rpmLimit")) << bad.body();
  EXPECT_EQ(h.Admin("POST", "/api/keys", R"({"name":"x","colour":"red"})").status(), 400);
  EXPECT_EQ(h.Admin("POST", "/api/keys", "not json").status(), 400);
  EXPECT_EQ(h.Admin("GET", "/api/keys", "", /*actor=*/"").status(), 401);
}

TEST(LocalAccountsTest, ConnectionsNodesAndModelsThroughTheApi) {
  FakeHttp http;
  Harness h("", ":memory:", &http);
  const int64_t v0 = h.Catalog().version();

  auto node = h.Admin("POST", "/api/provider-nodes",
                      R"({"name":"Local LLM","prefix":"loc","type":"openai-compatible",
                          "baseUrl":"http://127.0.0.1:8000/v1/"})");
  ASSERT_EQ(node.status(), 201) << node.body();
  EXPECT_EQ(Body(node).at("baseUrl").as_string(), "http://127.0.0.1:8000/v1");
  EXPECT_EQ(h.Admin("POST", "/api/provider-nodes", R"({"prefix":"loc","baseUrl":"ftp://x"})").status(),
            400);

  auto conn = h.Admin("POST", "/api/providers",
                      R"({"provider":"loc","name":"main","apiKey":"sk-good","priority":2,
                          "models":["llama"]})");
  ASSERT_EQ(conn.status(), 201) << conn.body();
  EXPECT_FALSE(absl::StrContains(conn.body(), "sk-good"));
  EXPECT_EQ(Headers(*h.Credential("loc:main"))["authorization"], "Bearer sk-good");
  EXPECT_EQ(h.Admin("POST", "/api/providers", R"({"provider":"loc","name":"main","apiKey":"k"})").status(),
            409);
  EXPECT_EQ(h.Admin("POST", "/api/providers", R"({"provider":"nope","apiKey":"k"})").status(), 400);
  EXPECT_EQ(h.Admin("POST", "/api/providers", R"({"provider":"claude-code","apiKey":"k"})").status(),
            400);
  EXPECT_EQ(h.Admin("DELETE", "/api/providers/local:a").status(), 403);  // the file's

  auto model = h.Admin("POST", "/api/provider-models",
                       R"({"provider":"openai","modelId":"gpt-4.5-preview","modelName":"GPT-4.5"})");
  ASSERT_EQ(model.status(), 201) << model.body();

  // The catalog has all of it, with a new version.
  v1::Catalog cat = h.Catalog();
  EXPECT_GT(cat.version(), v0);
  bool has_node = false, has_conn = false, has_model = false;
  for (const auto& n : cat.nodes()) has_node |= n.id() == "loc" && n.base_url() == "http://127.0.0.1:8000/v1";
  for (const auto& c : cat.connections()) {
    if (c.id() == "loc:main") {
      has_conn = true;
      EXPECT_EQ(c.priority(), 2);
      ASSERT_EQ(c.models_size(), 1);
    }
  }
  for (const auto& m : cat.models()) has_model |= m.model_id() == "gpt-4.5-preview";
  EXPECT_TRUE(has_node && has_conn && has_model);
  EXPECT_TRUE(h.Catalog(cat.version()).not_modified());

  // Test call: the fake provider accepts sk-good only.
  auto test = h.Admin("POST", "/api/providers/loc:main/test");
  EXPECT_EQ(test.status(), 200);
  EXPECT_TRUE(Body(test).at("ok").as_bool()) << test.body();
  ASSERT_EQ(h.Admin("PATCH", "/api/providers/loc:main", R"({"apiKey":"sk-bad"})").status(), 200);
  EXPECT_FALSE(Body(h.Admin("POST", "/api/providers/loc:main/test")).at("ok").as_bool());

  // A proxy on the connection travels with its credential.
  EXPECT_EQ(h.Credential("loc:main")->proxy(), "");
  ASSERT_EQ(h.Admin("PATCH", "/api/providers/loc:main", R"({"proxy":"http://127.0.0.1:3128"})")
                .status(),
            200);
  EXPECT_EQ(h.Credential("loc:main")->proxy(), "http://127.0.0.1:3128");
  EXPECT_EQ(h.Admin("PATCH", "/api/providers/loc:main", R"({"proxy":"socks5://h:1"})").status(),
            400);

  // A node with connections cannot go; then it can.
  EXPECT_EQ(h.Admin("DELETE", "/api/provider-nodes/loc").status(), 409);
  EXPECT_EQ(h.Admin("DELETE", "/api/providers/loc:main").status(), 200);
  EXPECT_EQ(h.Credential("loc:main").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(h.Admin("DELETE", "/api/provider-nodes/loc").status(), 200);
  EXPECT_EQ(h.Admin("DELETE", "/api/provider-models", "", "admin-key",
                    "provider=openai&model=gpt-4.5-preview")
                .status(),
            200);
}

TEST(LocalAccountsTest, LoginSessionsAndRateLimit) {
  Harness h;
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(h.Admin("POST", "/api/auth/login", R"({"password":"wrong"})", "").status(), 401);
  }
  auto limited = h.Admin("POST", "/api/auth/login", R"({"password":"first-password"})", "");
  EXPECT_EQ(limited.status(), 429);
  ASSERT_EQ(limited.headers_size(), 1);
  EXPECT_EQ(limited.headers(0).name(), "retry-after");
  h.now_ms += 16 * 60 * 1000;  // the window passes

  auto ok = h.Admin("POST", "/api/auth/login", R"({"password":"first-password"})", "");
  ASSERT_EQ(ok.status(), 200) << ok.body();
  ASSERT_EQ(ok.headers_size(), 1);
  const std::string cookie = ok.headers(0).value();
  EXPECT_TRUE(absl::StartsWith(cookie, "auth_token=")) << cookie;
  EXPECT_TRUE(absl::StrContains(cookie, "HttpOnly"));
  const std::string token = cookie.substr(11, cookie.find(';') - 11);
  auto claims = crypto::VerifyJwt(token, "jwt-secret", h.now_ms / 1000);
  ASSERT_TRUE(claims.ok()) << claims.status();
  EXPECT_FALSE(crypto::VerifyJwt(token, "other", h.now_ms / 1000).ok());

  // Change the password: the old one stops working.
  EXPECT_EQ(h.Admin("PUT", "/api/auth/password",
                    R"({"currentPassword":"nope","newPassword":"a-new-password"})")
                .status(),
            403);
  EXPECT_EQ(h.Admin("PUT", "/api/auth/password",
                    R"({"currentPassword":"first-password","newPassword":"a-new-password"})")
                .status(),
            200);
  EXPECT_EQ(h.Admin("POST", "/api/auth/login", R"({"password":"first-password"})", "").status(), 401);
  EXPECT_EQ(h.Admin("POST", "/api/auth/login", R"({"password":"a-new-password"})", "").status(), 200);
}

TEST(LocalAccountsTest, SecuritySettingsReachTheCatalog) {
  Harness h;
  EXPECT_EQ(h.Admin("PUT", "/api/settings/security", R"({"ipDenylist":["10.0.0.300"]})").status(), 400);
  EXPECT_EQ(h.Admin("PUT", "/api/settings/security", R"({"blockedProviders":["nope"]})").status(), 400);
  auto ok = h.Admin("PUT", "/api/settings/security",
                    R"({"ipAllowlist":["10.0.0.0/8","::1"],"ipDenylist":["10.9.9.9"],
                        "blockedProviders":["openai"]})");
  ASSERT_EQ(ok.status(), 200) << ok.body();
  const v1::AccessSettings a = h.Catalog().access();
  ASSERT_EQ(a.ip_allowlist_size(), 2);
  EXPECT_EQ(a.ip_denylist(0), "10.9.9.9");
  EXPECT_EQ(a.blocked_providers(0), "openai");
}

TEST(LocalAccountsTest, SecretsAreEncryptedAtRestAndChangesReachOtherReplicas) {
  const std::string dir = ::testing::TempDir() + "/accounts-" + RandomHex(4);
  std::filesystem::create_directories(dir);
  const std::string db = dir + "/omniroute.db";
  Harness a("", db);
  Harness b("", db);
  auto conn = a.Admin("POST", "/api/providers",
                      R"({"provider":"openai","name":"prod","apiKey":"sk-live-SECRET-4242"})");
  ASSERT_EQ(conn.status(), 201) << conn.body();
  auto key = a.Admin("POST", "/api/keys", R"({"name":"shared"})");
  ASSERT_EQ(key.status(), 201);
  const std::string client_key(Body(key).at("key").as_string());

  // Replica b adopts both within its sync interval.
  bool seen = false;
  for (int i = 0; i < 100 && !seen; ++i) {
    seen = b.Resolve(client_key).ok() && b.Credential("openai:prod").ok();
    if (!seen) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_TRUE(seen);
  EXPECT_EQ(Headers(*b.Credential("openai:prod"))["authorization"], "Bearer sk-live-SECRET-4242");
  // Revoked on a: gone on b.
  ASSERT_EQ(a.Admin("DELETE", "/api/keys/" + std::string(Body(key).at("id").as_string())).status(), 200);
  bool gone = false;
  for (int i = 0; i < 100 && !gone; ++i) {
    gone = !b.Resolve(client_key).ok();
    if (!gone) std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_TRUE(gone);

  // Neither the provider key nor the client key is in the database files.
  a.acc.reset();
  b.acc.reset();
  for (const auto& entry : std::filesystem::directory_iterator(dir)) {
    std::ifstream in(entry.path(), std::ios::binary);
    std::stringstream content;
    content << in.rdbuf();
    EXPECT_FALSE(absl::StrContains(content.str(), "SECRET-4242")) << entry.path();
    EXPECT_FALSE(absl::StrContains(content.str(), client_key)) << entry.path();
  }
}

TEST(LocalAccountsTest, OAuthLoginThenOneRefreshForConcurrentCallers) {
  FakeHttp http;
  http.first_lifetime_s = 60;  // inside the refresh margin at once
  Harness h("", ":memory:", &http);
  auto start = h.Admin("POST", "/api/oauth/claude-code/start", R"({"name":"max"})");
  ASSERT_EQ(start.status(), 200) << start.body();
  const json::object s = Body(start);
  EXPECT_EQ(s.at("flow").as_string(), "authorization_code");
  EXPECT_TRUE(absl::StrContains(std::string(s.at("authUrl").as_string()), "code_challenge="));
  const std::string state(s.at("state").as_string());
  auto done = h.Admin("POST", "/api/oauth/claude-code/exchange",
                      absl::StrCat(R"({"state":")", state, R"(","code":"the-code#)", state, R"("})"));
  ASSERT_EQ(done.status(), 201) << done.body();
  EXPECT_FALSE(absl::StrContains(done.body(), "at-first"));
  EXPECT_EQ(h.Admin("POST", "/api/oauth/claude-code/exchange",
                    absl::StrCat(R"({"state":")", state, R"(","code":"again"})"))
                .status(),
            404);  // a flow finishes once

  // Ten callers with a token about to expire: one refresh, every caller gets the new token.
  std::vector<std::future<absl::StatusOr<v1::Credential>>> calls;
  for (int i = 0; i < 10; ++i) {
    calls.push_back(std::async(std::launch::async, [&] { return h.Credential("claude-code:max"); }));
  }
  for (auto& f : calls) {
    auto c = f.get();
    ASSERT_TRUE(c.ok()) << c.status();
    EXPECT_EQ(Headers(*c)["authorization"], "Bearer at-refreshed-1");
  }
  EXPECT_EQ(http.refreshes.load(), 1);

  // A 401 upstream with the current token: one more refresh; a stale report: none.
  auto current = *h.Credential("claude-code:max");
  auto after401 = h.Credential("claude-code:max", true, current.token_sha256());
  ASSERT_TRUE(after401.ok());
  EXPECT_EQ(Headers(*after401)["authorization"], "Bearer at-refreshed-2");
  auto stale = h.Credential("claude-code:max", true, current.token_sha256());
  ASSERT_TRUE(stale.ok());
  EXPECT_EQ(http.refreshes.load(), 2);

  // The connection's proxy comes with its OAuth credential too.
  ASSERT_EQ(h.Admin("PATCH", "/api/providers/claude-code:max", R"({"proxy":"http://10.0.0.7:8080"})")
                .status(),
            200);
  EXPECT_EQ(h.Credential("claude-code:max")->proxy(), "http://10.0.0.7:8080");

  // A revoked refresh token: the connection needs a new login, and says so.
  http.fail_refresh = true;
  h.now_ms += 2 * 3600 * 1000;
  auto expired = h.Credential("claude-code:max");
  EXPECT_EQ(expired.status().code(), absl::StatusCode::kFailedPrecondition) << expired.status();
  auto conn = h.Admin("GET", "/api/providers/claude-code:max");
  EXPECT_EQ(Body(conn).at("status").as_string(), "needs_login") << conn.body();
  EXPECT_FALSE(absl::StrContains(conn.body(), "at-refreshed"));
  EXPECT_FALSE(absl::StrContains(conn.body(), "rt-2"));
}

TEST(LocalAccountsTest, DeviceFlowLoginIsPolledByItsState) {
  FakeHttp http;
  Harness h("", ":memory:", &http);
  auto start = h.Admin("POST", "/api/oauth/qwen/start", R"({"name":"dev"})");
  ASSERT_EQ(start.status(), 200) << start.body();
  const json::object s = Body(start);
  EXPECT_EQ(s.at("flow").as_string(), "device_code");
  EXPECT_EQ(s.at("userCode").as_string(), "ABCD-EFGH");
  // Device flows have no OAuth state of their own: the flow still gets an id to poll with.
  const std::string state(s.at("state").as_string());
  ASSERT_GE(state.size(), 16u) << start.body();
  const std::string poll = absl::StrCat(R"({"state":")", state, R"("})");
  auto pending = h.Admin("POST", "/api/oauth/qwen/poll", poll);
  ASSERT_EQ(pending.status(), 200) << pending.body();
  EXPECT_EQ(Body(pending).at("status").as_string(), "pending");
  auto done = h.Admin("POST", "/api/oauth/qwen/poll", poll);
  ASSERT_EQ(done.status(), 201) << done.body();
  EXPECT_EQ(Body(done).at("connection").at("status").as_string(), "active");
  EXPECT_FALSE(absl::StrContains(done.body(), "at-qwen"));
  EXPECT_EQ(h.Admin("POST", "/api/oauth/qwen/poll", poll).status(), 404);  // finished
  // Two logins at once do not share a flow.
  auto a = h.Admin("POST", "/api/oauth/qwen/start", R"({"name":"a"})");
  auto b = h.Admin("POST", "/api/oauth/qwen/start", R"({"name":"b"})");
  ASSERT_EQ(a.status(), 200);
  ASSERT_EQ(b.status(), 200);
  EXPECT_NE(Body(a).at("state").as_string(), Body(b).at("state").as_string());
  auto cred = h.Credential("qwen:dev");
  ASSERT_TRUE(cred.ok()) << cred.status();
  EXPECT_EQ(Headers(*cred)["authorization"], "Bearer at-qwen");
  EXPECT_EQ(cred->base_url(), "https://portal.qwen.ai/v1");
}

TEST(LocalAccountsTest, ReloadConfigSwapsTheFilesKeysAndConnections) {
  Harness h;
  const v1::Catalog before = h.Catalog();
  ASSERT_TRUE(h.Resolve("sk-team-123").ok());
  EXPECT_FALSE(h.Resolve("sk-new-456").ok());

  auto c = ParseConfig(R"(
nodes: [ { id: local, format: openai, base_url: "http://127.0.0.1:9/v1" } ]
connections:
  - { provider: local, name: b, api_key: sk-b }
api_keys: [ { name: fresh, key: sk-new-456 } ]
)");
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_TRUE(ReloadAccountsConfig(*h.acc, std::make_shared<const Config>(*c)).ok());

  auto added = h.Resolve("sk-new-456");  // a key added to the file resolves
  ASSERT_TRUE(added.ok()) << added.status();
  EXPECT_EQ(added->id(), "cfg:fresh");
  EXPECT_FALSE(h.Resolve("sk-team-123").ok());  // a key removed from the file does not
  EXPECT_TRUE(h.Credential("local:b").ok());
  EXPECT_FALSE(h.Credential("local:a").ok());
  // The router and the edges see a newer catalog with the file's connections.
  const v1::Catalog after = h.Catalog(before.version());
  EXPECT_FALSE(after.not_modified());
  EXPECT_GT(after.version(), before.version());
  std::vector<std::string> ids;
  for (const auto& conn : after.connections()) ids.push_back(conn.id());
  EXPECT_EQ(ids, (std::vector<std::string>{"local:b"}));
  // Keys created through the API are untouched by a reload.
  auto created = h.Admin("POST", "/api/keys", R"({"name":"api"})");
  ASSERT_EQ(created.status(), 201) << created.body();
  const std::string api_key = std::string(Body(created).at("key").as_string());
  ASSERT_TRUE(ReloadAccountsConfig(*h.acc, h.config).ok());
  EXPECT_TRUE(h.Resolve(api_key).ok());
  EXPECT_TRUE(h.Resolve("sk-team-123").ok());
}

TEST(LocalAccountsTest, TokensAreRefreshedBeforeTheyExpireWithoutARequest) {
  FakeHttp http;
  http.first_lifetime_s = 120;  // inside the 5-minute margin
  Harness h("", ":memory:", &http);
  const std::string state(Body(h.Admin("POST", "/api/oauth/claude-code/start", "{}")).at("state").as_string());
  ASSERT_EQ(h.Admin("POST", "/api/oauth/claude-code/exchange",
                    absl::StrCat(R"({"state":")", state, R"(","code":"c#)", state, R"("})"))
                .status(),
            201);
  for (int i = 0; i < 200 && http.refreshes.load() == 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_EQ(http.refreshes.load(), 1);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));  // and not again
  EXPECT_EQ(http.refreshes.load(), 1);
  const std::string text = AccountsMetricsText(*h.acc);
  EXPECT_TRUE(absl::StrContains(
      text, R"(omniroute_accounts_oauth_refreshes_total{provider="claude-code",result="ok"} 1)"))
      << text;
  EXPECT_TRUE(absl::StrContains(text, R"(omniroute_accounts_connections{provider="claude-code",status="active"} 1)"))
      << text;
}

TEST(LocalAccountsTest, FileConnectionOfASubscriptionProviderIsAStaticToken) {
  Harness h(R"(
connections: [ { provider: claude-code, name: token, api_key: sk-ant-oat-static } ]
)");
  auto cred = h.Credential("claude-code:token");
  ASSERT_TRUE(cred.ok()) << cred.status();
  auto headers = Headers(*cred);
  EXPECT_EQ(headers["authorization"], "Bearer sk-ant-oat-static");
  EXPECT_TRUE(absl::StrContains(headers["anthropic-beta"], "oauth")) << headers["anthropic-beta"];
}

}  // namespace
}  // namespace omniroute::accounts
