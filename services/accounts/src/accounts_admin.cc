// The accounts admin API (runs on the service's worker threads; store calls block there):
//
//   POST   /api/auth/login               {"password"} → session cookie (rate-limited per IP)
//   POST   /api/auth/logout              clears the cookie
//   PUT    /api/auth/password            {"currentPassword","newPassword"}
//   GET    /api/auth/me
//   GET    /api/keys                     client keys, masked
//   POST   /api/keys                     {"name","allowedModels","rpmLimit","tpmLimit","team",
//                                         "expiresAt","metadata","enabled"} → the key, once
//   GET|PUT|PATCH|DELETE /api/keys/{id}  (DELETE revokes)
//   GET    /api/keys/{id}/reveal         only with ALLOW_API_KEY_REVEAL=true
//   GET    /api/providers                connections (secrets masked; "quota": the windows
//                                         a subscription's provider last reported)
//   POST   /api/providers                {"provider","name","apiKey","priority","enabled",
//                                         "proxy","models"}
//   GET|PUT|PATCH|DELETE /api/providers/{id}
//   POST   /api/providers/{id}/test      calls the provider with the connection's credential
//   POST   /api/providers/{id}/refresh   refreshes an OAuth token now
//   GET|POST /api/provider-nodes, GET|PUT|DELETE /api/provider-nodes/{id}
//   GET|POST|DELETE /api/provider-models  (?provider=&model=)
//   GET    /api/oauth/providers
//   POST   /api/oauth/{provider}/start   {"name","priority","redirectUri"}
//   POST   /api/oauth/{provider}/exchange {"state","code"|"callbackUrl"}
//   POST   /api/oauth/{provider}/poll    {"state"}  (device flows)
//   GET    /api/oauth/callback?code=&state=
//   GET|PUT /api/settings/security       {"ipAllowlist","ipDenylist","blockedProviders"}
// Objects declared in the config file are listed with "managedBy":"file" and refused (403)
// to writes.

#include <arpa/inet.h>

#include <boost/json.hpp>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/time.h"
#include "accounts_json.h"
#include "common/log.h"
#include "common/secrets.h"
#include "common/strings.h"
#include "local_accounts_impl.h"

namespace omniroute::accounts {

namespace json = boost::json;

namespace {

v1::AdminResponse Respond(int status, const json::value& body) {
  v1::AdminResponse r;
  r.set_status(status);
  r.set_body(json::serialize(body));
  return r;
}

std::string_view ErrorType(int status) {
  switch (status) {
    case 400: return "invalid_request_error";
    case 401: return "authentication_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 409: return "conflict_error";
    case 429: return "rate_limit_error";
    default: return status >= 500 ? "server_error" : "invalid_request_error";
  }
}

v1::AdminResponse Fail(int status, std::string_view message) {
  return Respond(status, json::object{{"error", json::object{{"message", message},
                                                             {"type", ErrorType(status)},
                                                             {"code", status}}}});
}

v1::AdminResponse FailStatus(const absl::Status& s) {
  return Fail(HttpStatusFromStatus(s), SV(s.message()));
}

bool ValidName(std::string_view s, size_t max = 64) {
  if (s.empty() || s.size() > max) return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' ||
          c == '@')) {
      return false;
    }
  }
  return true;
}

// Fails with the first key of `o` not in `allowed`.
absl::Status OnlyKeys(const json::object& o, std::initializer_list<std::string_view> allowed) {
  for (const auto& [k, v] : o) {
    bool ok = false;
    for (std::string_view a : allowed) ok = ok || a == std::string_view(k);
    if (!ok) return absl::InvalidArgumentError(absl::StrCat("unknown field '", std::string(k), "'"));
  }
  return absl::OkStatus();
}

absl::Status WantString(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v && !v->is_string()) return absl::InvalidArgumentError(absl::StrCat(AV(key), ": expected a string"));
  return absl::OkStatus();
}

absl::Status WantStrings(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (!v) return absl::OkStatus();
  bool ok = v->is_array();
  if (ok) {
    for (const auto& e : v->get_array()) ok = ok && e.is_string();
  }
  return ok ? absl::OkStatus()
            : absl::InvalidArgumentError(absl::StrCat(AV(key), ": expected an array of strings"));
}

absl::Status WantCount(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (!v) return absl::OkStatus();
  if ((v->is_int64() && v->get_int64() >= 0) || v->is_uint64()) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrCat(AV(key), ": expected a non-negative integer"));
}

absl::Status WantBool(const json::object& o, std::string_view key) {
  const json::value* v = o.if_contains(key);
  if (v && !v->is_bool()) return absl::InvalidArgumentError(absl::StrCat(AV(key), ": expected true or false"));
  return absl::OkStatus();
}

// A time as ms since the epoch (number) or RFC 3339 text; null/0 = none.
absl::StatusOr<int64_t> TimeMs(const json::value& v) {
  if (v.is_null()) return 0;
  if (v.is_int64() && v.get_int64() >= 0) return v.get_int64();
  if (v.is_uint64()) return static_cast<int64_t>(v.get_uint64());
  if (v.is_string()) {
    absl::Time t;
    std::string err;
    if (absl::ParseTime(absl::RFC3339_full, std::string(v.get_string()), &t, &err)) {
      return absl::ToUnixMillis(t);
    }
  }
  return absl::InvalidArgumentError(
      "expiresAt: expected milliseconds since the epoch or an RFC 3339 time");
}

bool ValidCidr(std::string_view text) {
  std::string addr(text);
  int max_bits = 0;
  std::string bits;
  if (const size_t slash = addr.find('/'); slash != std::string::npos) {
    bits = addr.substr(slash + 1);
    addr.resize(slash);
  }
  unsigned char buf[16];
  if (inet_pton(AF_INET, addr.c_str(), buf) == 1) {
    max_bits = 32;
  } else if (inet_pton(AF_INET6, addr.c_str(), buf) == 1) {
    max_bits = 128;
  } else {
    return false;
  }
  if (bits.empty()) return true;
  int n = 0;
  return absl::SimpleAtoi(bits, &n) && n >= 0 && n <= max_bits;
}

std::string Segment(const std::vector<std::string>& seg, size_t i) {
  return i < seg.size() ? seg[i] : std::string();
}

}  // namespace

v1::AdminResponse LocalAccounts::AdminNow(const v1::AdminRequest& req) {
  // /api/<area>/<id>/<action>
  std::vector<std::string> seg;
  for (absl::string_view s : absl::StrSplit(AV(req.path()), '/', absl::SkipEmpty())) {
    seg.push_back(PercentDecode(SV(s), /*plus_is_space=*/false));
  }
  const std::string& method = req.method();
  const std::string area = Segment(seg, 1);
  const std::map<std::string, std::string> query = ParseQueryString(req.query());
  const bool is_admin = !req.actor().empty();
  if (seg.empty() || seg[0] != "api") return Fail(404, "not found");

  // The body, when there is one.
  json::object body;
  if (!req.body().empty() && method != "GET" && method != "DELETE") {
    auto parsed = ParseObject(req.body());
    if (!parsed.ok()) return Fail(400, "Invalid JSON body: expected a JSON object");
    body = std::move(parsed).value();
  }
  auto snap = snapshot();

  // Writes the store and adopts the change at once.
  auto put = [&](StoredObject o) -> absl::Status {
    {
      std::lock_guard<std::mutex> lock(reload_mu_);
      if (auto s = options_.store->Put(o); !s.ok()) return s;
    }
    return Reload(false);
  };
  auto remove = [&](const std::string& kind, const std::string& id) -> absl::StatusOr<bool> {
    absl::StatusOr<bool> existed;
    {
      std::lock_guard<std::mutex> lock(reload_mu_);
      existed = options_.store->Delete(kind, id);
    }
    if (existed.ok()) {
      if (auto s = Reload(false); !s.ok()) return s;
    }
    return existed;
  };

  // ---- Login and sessions ----
  if (area == "auth") {
    const std::string action = Segment(seg, 2);
    if (action == "login" && method == "POST") {
      const int64_t now_s = Now() / 1000;
      {
        std::lock_guard<std::mutex> lock(login_mu_);
        auto& fails = login_failures_[req.client_ip()];
        while (!fails.empty() && fails.front() <= now_s - options_.login_window_s) fails.pop_front();
        if (static_cast<int>(fails.size()) >= options_.login_max_failures) {
          const int64_t retry = fails.front() + options_.login_window_s - now_s;
          Count(login_counts_, "limited");
          v1::AdminResponse r =
              Fail(429, absl::StrCat("Too many failed logins; try again in ", retry, " s"));
          auto* h = r.add_headers();
          h->set_name("retry-after");
          h->set_value(std::to_string(std::max<int64_t>(1, retry)));
          return r;
        }
      }
      const std::string password = Str(body, "password");
      bool ok = false;
      auto stored = [&]() -> absl::StatusOr<std::optional<StoredObject>> {
        std::lock_guard<std::mutex> lock(reload_mu_);
        return options_.store->Get("setting", "password");
      }();
      if (!stored.ok()) return FailStatus(stored.status());
      if (*stored) {
        auto hash = options_.keyring->Decrypt((*stored)->secret, SecretAad("setting", "password"));
        ok = hash.ok() && crypto::VerifyPassword(password, *hash);
      } else {
        ok = !password.empty() && SecureEquals(password, config_->initial_password);
      }
      if (!ok) {
        std::lock_guard<std::mutex> lock(login_mu_);
        login_failures_[req.client_ip()].push_back(now_s);
        LogWarn("admin login failed", {{"client_ip", req.client_ip()}});
        Count(login_counts_, "failed");
        return Fail(401, "Invalid password");
      }
      {
        std::lock_guard<std::mutex> lock(login_mu_);
        login_failures_.erase(req.client_ip());
      }
      const std::string claims = json::serialize(json::object{
          {"sub", "admin"}, {"iat", now_s}, {"exp", now_s + options_.session_ttl_s}});
      const std::string token = crypto::SignJwt(claims, config_->jwt_secret);
      v1::AdminResponse r = Respond(200, json::object{{"success", true},
                                                      {"expiresAt", (now_s + options_.session_ttl_s) * 1000}});
      auto* h = r.add_headers();
      h->set_name("set-cookie");
      h->set_value(absl::StrCat("auth_token=", token, "; Path=/; HttpOnly; SameSite=Lax; Max-Age=",
                                options_.session_ttl_s, options_.cookie_secure ? "; Secure" : ""));
      LogInfo("admin logged in", {{"client_ip", req.client_ip()}});
      Count(login_counts_, "ok");
      return r;
    }
    if (!is_admin) return Fail(401, "Admin credentials required");
    if (action == "logout" && method == "POST") {
      v1::AdminResponse r = Respond(200, json::object{{"success", true}});
      auto* h = r.add_headers();
      h->set_name("set-cookie");
      h->set_value(absl::StrCat("auth_token=; Path=/; HttpOnly; SameSite=Lax; Max-Age=0",
                                options_.cookie_secure ? "; Secure" : ""));
      return r;
    }
    if (action == "me" && method == "GET") {
      return Respond(200, json::object{{"authenticated", true}, {"actor", req.actor()}});
    }
    if (action == "password" && (method == "PUT" || method == "POST")) {
      const std::string current = Str(body, "currentPassword");
      const std::string next = Str(body, "newPassword");
      if (next.size() < 8) return Fail(400, "newPassword: at least 8 characters");
      std::lock_guard<std::mutex> lock(reload_mu_);
      auto stored = options_.store->Get("setting", "password");
      if (!stored.ok()) return FailStatus(stored.status());
      bool ok;
      if (*stored) {
        auto hash = options_.keyring->Decrypt((*stored)->secret, SecretAad("setting", "password"));
        ok = hash.ok() && crypto::VerifyPassword(current, *hash);
      } else {
        ok = SecureEquals(current, config_->initial_password);
      }
      if (!ok) return Fail(403, "currentPassword is wrong");
      StoredObject o{"setting", "password",
                     json::serialize(json::object{{"changedAt", Now()}}),
                     options_.keyring->Encrypt(crypto::HashPassword(next),
                                               SecretAad("setting", "password")),
                     0};
      if (auto s = options_.store->Put(o); !s.ok()) return FailStatus(s);
      return Respond(200, json::object{{"success", true}});
    }
    return Fail(404, absl::StrCat("Unknown admin route ", req.path()));
  }

  // ---- OAuth callback (a browser redirect: its state is the credential) ----
  const bool oauth_callback = area == "oauth" && Segment(seg, 2) == "callback";
  if (!is_admin && !oauth_callback) return Fail(401, "Admin credentials required");

  // Finishes an OAuth flow: the connection (new, or the same provider/name again) holds the
  // tokens; the pending flow is dropped.
  auto finish_flow = [&](const StoredObject& flow_obj, const json::object& flow_doc,
                         const OAuthTokens& tokens) -> v1::AdminResponse {
    const std::string provider = Str(flow_doc, "provider");
    std::string name = Str(flow_doc, "name");
    if (name.empty()) name = tokens.email.empty() ? "default" : tokens.email;
    const std::string id = absl::StrCat(provider, ":", name);
    auto existing = snap->connections.find(id);
    if (existing != snap->connections.end() && existing->second.origin == Origin::kFile) {
      return Fail(409, absl::StrCat("connection '", id, "' is managed by the config file"));
    }
    json::object doc = existing != snap->connections.end()
                           ? existing->second.doc
                           : json::object{{"id", id},
                                          {"provider", provider},
                                          {"name", name},
                                          {"priority", Int(flow_doc, "priority", 1)},
                                          {"enabled", true},
                                          {"createdAt", Now()}};
    doc["status"] = "active";
    doc.erase("statusMessage");
    if (auto s = SaveOAuthConnection(doc, tokens); !s.ok()) return FailStatus(s);
    (void)remove("oauth_flow", flow_obj.id);
    if (auto s = Reload(false); !s.ok()) return FailStatus(s);
    LogInfo("OAuth connection saved", {{"connection", id}});
    auto now = snapshot();
    auto it = now->connections.find(id);
    json::object out = it != now->connections.end() ? it->second.doc : doc;
    return Respond(201, json::object{{"status", "connected"}, {"connection", out}});
  };
  auto load_flow = [&](const std::string& state, StoredObject* obj, json::object* doc,
                       PendingFlow* flow) -> absl::Status {
    if (state.empty()) return absl::InvalidArgumentError("state: required");
    std::optional<StoredObject> got;
    {
      std::lock_guard<std::mutex> lock(reload_mu_);
      auto r = options_.store->Get("oauth_flow", state);
      if (!r.ok()) return r.status();
      got = std::move(r).value();
    }
    if (!got) return absl::NotFoundError("unknown or finished OAuth flow (state)");
    auto d = ParseObject(got->doc);
    if (!d.ok()) return d.status();
    if (Int(*d, "expiresAt") > 0 && Int(*d, "expiresAt") < Now()) {
      (void)remove("oauth_flow", state);
      return absl::DeadlineExceededError("the OAuth flow expired; start again");
    }
    auto plain = options_.keyring->Decrypt(got->secret, SecretAad("oauth_flow", state));
    if (!plain.ok()) return plain.status();
    auto f = PendingFlow::FromJson(*plain);
    if (!f.ok()) return f.status();
    *obj = std::move(*got);
    *doc = std::move(d).value();
    *flow = std::move(f).value();
    return absl::OkStatus();
  };

  if (area == "oauth") {
    const std::string provider = Segment(seg, 2);
    const std::string action = Segment(seg, 3);
    if (provider == "providers" && method == "GET") {
      json::array list;
      for (const auto& p : OAuthClient::Providers()) list.emplace_back(p);
      return Respond(200, json::object{{"providers", list}});
    }
    if (oauth_callback && method == "GET") {
      StoredObject obj;
      json::object doc;
      PendingFlow flow;
      const auto state = query.find("state");
      if (auto s = load_flow(state == query.end() ? "" : state->second, &obj, &doc, &flow);
          !s.ok()) {
        return FailStatus(s);
      }
      if (query.count("error")) {
        (void)remove("oauth_flow", obj.id);
        return Fail(400, absl::StrCat("the provider refused the authorization: ",
                                      query.at("error")));
      }
      const auto code = query.find("code");
      if (code == query.end()) return Fail(400, "code: required");
      auto tokens = oauth_->Exchange(flow, code->second);
      if (!tokens.ok()) return FailStatus(tokens.status());
      return finish_flow(obj, doc, *tokens);
    }
    if (!OAuthClient::Supports(provider)) {
      return Fail(404, absl::StrCat("no OAuth flow for provider '", provider, "'"));
    }
    if (action == "start" && method == "POST") {
      if (auto s = OnlyKeys(body, {"name", "priority", "redirectUri"}); !s.ok()) return FailStatus(s);
      const std::string name = Str(body, "name");
      if (!name.empty() && !ValidName(name, 100)) {
        return Fail(400, "name: letters, digits, '-', '_', '.', '@' (at most 100)");
      }
      auto flow = oauth_->Start(provider, Str(body, "redirectUri"));
      if (!flow.ok()) return FailStatus(flow.status());
      // Device flows send no OAuth state; the pending flow still needs an id for /poll.
      if (flow->state.empty()) flow->state = crypto::Base64UrlEncode(crypto::RandomBytes(24));
      const int64_t expires = flow->expires_at_ms > 0 ? flow->expires_at_ms : Now() + 15 * 60000;
      json::object doc{{"provider", provider},
                       {"name", name},
                       {"priority", Int(body, "priority", 1)},
                       {"createdAt", Now()},
                       {"expiresAt", expires}};
      StoredObject o{"oauth_flow", flow->state, json::serialize(doc),
                     options_.keyring->Encrypt(flow->ToJson(), SecretAad("oauth_flow", flow->state)),
                     0};
      if (auto s = put(o); !s.ok()) return FailStatus(s);
      json::object out{{"provider", provider}, {"state", flow->state},
                       {"expiresAt", expires}};
      if (flow->kind == OAuthFlowKind::kDeviceCode) {
        out["flow"] = "device_code";
        out["userCode"] = flow->user_code;
        out["verificationUri"] = flow->verification_uri;
        out["verificationUriComplete"] = flow->verification_uri_complete;
        out["interval"] = flow->interval_s;
      } else {
        out["flow"] = "authorization_code";
        out["authUrl"] = flow->auth_url;
        out["redirectUri"] = flow->redirect_uri;
      }
      return Respond(200, out);
    }
    if ((action == "exchange" || action == "poll") && method == "POST") {
      StoredObject obj;
      json::object doc;
      PendingFlow flow;
      if (auto s = load_flow(Str(body, "state"), &obj, &doc, &flow); !s.ok()) return FailStatus(s);
      if (Str(doc, "provider") != provider) return Fail(400, "state: belongs to another provider");
      if (action == "exchange") {
        std::string code = Str(body, "code");
        if (code.empty()) code = Str(body, "callbackUrl");
        if (code.empty()) return Fail(400, "code or callbackUrl: required");
        auto tokens = oauth_->Exchange(flow, code);
        if (!tokens.ok()) return FailStatus(tokens.status());
        return finish_flow(obj, doc, *tokens);
      }
      const int interval = flow.interval_s;
      auto polled = oauth_->Poll(flow);
      if (!polled.ok()) {
        (void)remove("oauth_flow", obj.id);
        return FailStatus(polled.status());
      }
      if (!*polled) {
        if (flow.interval_s != interval) {  // slow_down: keep the longer interval
          obj.secret = options_.keyring->Encrypt(flow.ToJson(), SecretAad("oauth_flow", obj.id));
          (void)put(obj);
        }
        return Respond(200, json::object{{"status", "pending"}, {"interval", flow.interval_s}});
      }
      return finish_flow(obj, doc, **polled);
    }
    return Fail(404, absl::StrCat("Unknown admin route ", req.path()));
  }

  // ---- Client keys ----
  if (area == "keys") {
    const std::string id = Segment(seg, 2);
    auto key_json = [&](const KeyEntry& e) {
      json::object o = e.doc;
      o.erase("hash");
      o["managedBy"] = e.origin == Origin::kFile ? "file" : "api";
      if (!o.contains("enabled")) o["enabled"] = e.enabled;
      return o;
    };
    auto find = [&](const std::string& key_id) -> const KeyEntry* {
      auto h = snap->key_hash_by_id.find(key_id);
      if (h == snap->key_hash_by_id.end()) return nullptr;
      auto e = snap->keys_by_hash.find(h->second);
      return e == snap->keys_by_hash.end() ? nullptr : &e->second;
    };
    auto validate = [&](const json::object& b) -> absl::Status {
      if (auto s = OnlyKeys(b, {"name", "allowedModels", "rpmLimit", "tpmLimit", "team",
                                "expiresAt", "metadata", "enabled"});
          !s.ok()) {
        return s;
      }
      for (auto s : {WantString(b, "name"), WantString(b, "team"), WantStrings(b, "allowedModels"),
                     WantCount(b, "rpmLimit"), WantCount(b, "tpmLimit"), WantBool(b, "enabled")}) {
        if (!s.ok()) return s;
      }
      if (const auto* md = b.if_contains("metadata")) {
        bool ok = md->is_object();
        if (ok) {
          for (const auto& [k, v] : md->get_object()) ok = ok && v.is_string();
        }
        if (!ok) return absl::InvalidArgumentError("metadata: expected an object of strings");
      }
      if (Str(b, "name").size() > 100) return absl::InvalidArgumentError("name: at most 100 characters");
      return absl::OkStatus();
    };
    // Applies the fields of `b` to `doc`.
    auto apply = [&](const json::object& b, json::object& doc) -> absl::Status {
      for (const auto& [k, v] : b) {
        if (k == "expiresAt") {
          auto t = TimeMs(v);
          if (!t.ok()) return t.status();
          doc["expiresAt"] = *t;
        } else {
          doc[k] = v;
        }
      }
      return absl::OkStatus();
    };
    if (id.empty() && method == "GET") {
      json::array list;
      for (const auto& [key_id, hash] : snap->key_hash_by_id) {
        if (const KeyEntry* e = find(key_id)) list.push_back(key_json(*e));
      }
      return Respond(200, json::object{{"keys", list}});
    }
    if (id.empty() && method == "POST") {
      if (auto s = validate(body); !s.ok()) return FailStatus(s);
      if (Str(body, "name").empty()) return Fail(400, "name: required");
      // The object's id is unrelated to the key: ids are listed, keys are shown once.
      const crypto::GeneratedKey gen = crypto::GenerateClientKey(machine_id_, config_->api_key_secret);
      std::string key_id;
      do {
        key_id = absl::StrCat("key_", RandomHex(6));
      } while (snap->key_hash_by_id.count(key_id));
      json::object doc{{"id", key_id},
                       {"name", Str(body, "name")},
                       {"hash", Sha256Hex(gen.key)},
                       {"prefix", absl::StrCat("sk-", machine_id_, "-", gen.key_id.substr(0, 4), "…")},
                       {"enabled", true},
                       {"createdAt", Now()}};
      if (auto s = apply(body, doc); !s.ok()) return FailStatus(s);
      StoredObject o{"key", key_id, json::serialize(doc),
                     options_.allow_key_reveal
                         ? options_.keyring->Encrypt(gen.key, SecretAad("key", key_id))
                         : std::string(),
                     0};
      if (auto s = put(o); !s.ok()) return FailStatus(s);
      doc.erase("hash");
      doc["key"] = gen.key;
      doc["managedBy"] = "api";
      LogInfo("client key created", {{"key_id", key_id}});
      return Respond(201, doc);
    }
    const KeyEntry* entry = find(id);
    if (!entry) return Fail(404, absl::StrCat("unknown key '", id, "'"));
    const std::string action = Segment(seg, 3);
    if (action == "reveal" && method == "GET") {
      if (!options_.allow_key_reveal) {
        return Fail(403, "keys are shown once at creation; set ALLOW_API_KEY_REVEAL=true to reveal");
      }
      std::optional<StoredObject> stored;
      {
        std::lock_guard<std::mutex> lock(reload_mu_);
        auto r = options_.store->Get("key", id);
        if (!r.ok()) return FailStatus(r.status());
        stored = std::move(r).value();
      }
      if (!stored || stored->secret.empty()) return Fail(404, "this key cannot be revealed");
      auto plain = options_.keyring->Decrypt(stored->secret, SecretAad("key", id));
      if (!plain.ok()) return FailStatus(plain.status());
      return Respond(200, json::object{{"id", id}, {"key", *plain}});
    }
    if (!action.empty()) return Fail(404, absl::StrCat("Unknown admin route ", req.path()));
    if (method == "GET") return Respond(200, key_json(*entry));
    if (entry->origin == Origin::kFile) {
      return Fail(403, absl::StrCat("key '", id, "' is managed by the config file"));
    }
    if (method == "PUT" || method == "PATCH") {
      if (auto s = validate(body); !s.ok()) return FailStatus(s);
      json::object doc = entry->doc;
      if (auto s = apply(body, doc); !s.ok()) return FailStatus(s);
      doc["updatedAt"] = Now();
      std::string secret;
      {
        std::lock_guard<std::mutex> lock(reload_mu_);
        auto r = options_.store->Get("key", id);
        if (r.ok() && *r) secret = (*r)->secret;
      }
      if (auto s = put(StoredObject{"key", id, json::serialize(doc), secret, 0}); !s.ok()) {
        return FailStatus(s);
      }
      doc.erase("hash");
      doc["managedBy"] = "api";
      return Respond(200, doc);
    }
    if (method == "DELETE") {
      auto existed = remove("key", id);
      if (!existed.ok()) return FailStatus(existed.status());
      LogInfo("client key revoked", {{"key_id", id}});
      return Respond(200, json::object{{"id", id}, {"deleted", true}});
    }
    return Fail(405, absl::StrCat("Method ", method, " is not allowed on ", req.path()));
  }

  // ---- Provider connections ----
  if (area == "providers") {
    const std::string id = Segment(seg, 2);
    auto conn_json = [&](const std::string& conn_id, const ConnectionEntry& e) {
      json::object o = e.doc;
      o["id"] = conn_id;
      o["managedBy"] = e.origin == Origin::kFile ? "file" : "api";
      o["authType"] = e.oauth ? "oauth" : "api_key";
      if (!e.oauth && !e.api_key.empty()) o["apiKey"] = crypto::MaskSecret(e.api_key);
      if (e.oauth) {
        std::lock_guard<std::mutex> lock(oauth_mu_);
        auto t = oauth_tokens_.find(conn_id);
        if (t != oauth_tokens_.end()) {
          o["expiresAt"] = t->second.tokens.expires_at_ms;
          if (Str(o, "status") == "active" && t->second.tokens.expires_at_ms > 0 &&
              t->second.tokens.expires_at_ms < Now() && t->second.tokens.refresh_token.empty()) {
            o["status"] = "expired";
          }
        }
      }
      // The provider's quota windows, as last reported (to this replica, or stored).
      if (auto quota = LatestQuota(*snapshot(), conn_id)) {
        json::object q = QuotaToJson(*quota);
        const QuotaStanding standing = QuotaStandingAt(*quota, Now());
        q["remainingPercent"] = standing.remaining_percent;
        q["resetsAt"] = standing.resets_at_ms;
        o["quota"] = std::move(q);
      }
      return o;
    };
    auto validate = [&](const json::object& b, bool create) -> absl::Status {
      if (auto s = OnlyKeys(b, {"provider", "name", "apiKey", "priority", "enabled", "proxy",
                                "models"});
          !s.ok()) {
        return s;
      }
      for (auto s : {WantString(b, "provider"), WantString(b, "name"), WantString(b, "apiKey"),
                     WantString(b, "proxy"), WantStrings(b, "models"), WantCount(b, "priority"),
                     WantBool(b, "enabled")}) {
        if (!s.ok()) return s;
      }
      if (!create && (b.contains("provider") || b.contains("name"))) {
        return absl::InvalidArgumentError("provider and name cannot change; create a new connection");
      }
      const std::string proxy = Str(b, "proxy");
      if (!proxy.empty() && proxy.rfind("http://", 0) != 0) {
        return absl::InvalidArgumentError("proxy: expected http://host:port");
      }
      return absl::OkStatus();
    };
    if (id.empty() && method == "GET") {
      json::array list;
      for (const auto& [conn_id, e] : snap->connections) {
        if (query.count("provider") && e.provider != query.at("provider")) continue;
        list.push_back(conn_json(conn_id, e));
      }
      return Respond(200, json::object{{"connections", list}});
    }
    if (id.empty() && method == "POST") {
      if (auto s = validate(body, true); !s.ok()) return FailStatus(s);
      const std::string provider = Str(body, "provider");
      const ProviderSpec* p = snap->registry->Find(provider);
      if (!p || p->id != provider) {
        return Fail(400, absl::StrCat("provider: unknown provider '", provider, "'"));
      }
      if (p->oauth) {
        return Fail(400, absl::StrCat("provider '", provider,
                                      "' uses OAuth: POST /api/oauth/", provider, "/start"));
      }
      const std::string name = Str(body, "name").empty() ? "default" : Str(body, "name");
      if (!ValidName(name)) return Fail(400, "name: letters, digits, '-', '_', '.', '@' (at most 64)");
      const std::string api_key = Str(body, "apiKey");
      if (api_key.empty() && p->auth != common::v1::AUTH_STYLE_NONE) return Fail(400, "apiKey: required");
      const std::string conn_id = absl::StrCat(provider, ":", name);
      if (snap->connections.count(conn_id)) {
        return Fail(409, absl::StrCat("connection '", conn_id, "' exists"));
      }
      json::object doc{{"id", conn_id},       {"provider", provider},
                       {"name", name},        {"authType", "api_key"},
                       {"priority", Int(body, "priority", 1)},
                       {"enabled", Bool(body, "enabled", true)},
                       {"status", "active"},  {"createdAt", Now()}};
      if (body.contains("proxy")) doc["proxy"] = body.at("proxy");
      if (body.contains("models")) doc["models"] = body.at("models");
      StoredObject o{"connection", conn_id, json::serialize(doc),
                     api_key.empty() ? std::string()
                                     : options_.keyring->Encrypt(api_key, SecretAad("connection", conn_id)),
                     0};
      if (auto s = put(o); !s.ok()) return FailStatus(s);
      LogInfo("connection created", {{"connection", conn_id}});
      auto now = snapshot();
      return Respond(201, conn_json(conn_id, now->connections.at(conn_id)));
    }
    auto it = snap->connections.find(id);
    if (it == snap->connections.end()) return Fail(404, absl::StrCat("unknown connection '", id, "'"));
    const ConnectionEntry& entry = it->second;
    const std::string action = Segment(seg, 3);
    if (action == "test" && method == "POST") {
      // The provider's model list with the connection's credential: proves the key and the
      // route (proxy included) without spending tokens.
      absl::StatusOr<v1::Credential> cred = entry.credential;
      if (entry.oauth) {
        std::optional<OAuthState> st;
        {
          std::lock_guard<std::mutex> lock(oauth_mu_);
          auto t = oauth_tokens_.find(id);
          if (t != oauth_tokens_.end()) st = t->second;
        }
        if (!st) return Respond(200, json::object{{"ok", false}, {"message", "no OAuth tokens: log in again"}});
        cred = OAuthClient::NeedsRefresh(st->tokens, Now()) ? RefreshNow(id, "")
                                                            : OAuthCredential(id, *st);
      }
      if (!cred.ok()) {
        return Respond(200, json::object{{"ok", false}, {"message", SV(cred.status().message())}});
      }
      const ProviderSpec* p = snap->registry->Find(entry.provider);
      std::string base = cred->base_url().empty() && p ? p->base_url : cred->base_url();
      HttpRequest hreq;
      hreq.method = "GET";
      hreq.url = absl::StrCat(base, "/models");
      for (const auto& h : cred->headers()) hreq.headers.emplace_back(h.name(), h.value());
      std::unique_ptr<HttpFetcher> via_proxy;
      HttpFetcher* fetcher = options_.http.get();
      if (const std::string proxy = Str(entry.doc, "proxy"); !proxy.empty()) {
        HttpFetcherOptions ho;
        ho.proxy = proxy;
        via_proxy = MakeHttpFetcher(ho);
        fetcher = via_proxy.get();
      }
      const int64_t start = Now();
      auto res = fetcher->Fetch(hreq);
      const int64_t latency = Now() - start;
      json::object out{{"id", id}, {"latencyMs", latency}};
      if (!res.ok()) {
        out["ok"] = false;
        out["message"] = std::string(SV(res.status().message()));
      } else {
        out["ok"] = res->status >= 200 && res->status < 300;
        out["status"] = res->status;
        out["message"] = res->status < 300 ? "ok"
                         : res->status == 401 || res->status == 403
                             ? "the provider refused the credential"
                             : absl::StrCat("the provider answered ", res->status);
      }
      return Respond(200, out);
    }
    if (action == "refresh" && method == "POST") {
      if (!entry.oauth) return Fail(400, "only OAuth connections refresh");
      std::string sha;
      {
        std::lock_guard<std::mutex> lock(oauth_mu_);
        auto t = oauth_tokens_.find(id);
        if (t != oauth_tokens_.end()) sha = t->second.token_sha256;
      }
      auto cred = RefreshNow(id, sha.empty() ? "-" : sha);
      if (!cred.ok()) return FailStatus(cred.status());
      if (auto s = Reload(false); !s.ok()) return FailStatus(s);
      auto now = snapshot();
      return Respond(200, conn_json(id, now->connections.at(id)));
    }
    if (!action.empty()) return Fail(404, absl::StrCat("Unknown admin route ", req.path()));
    if (method == "GET") return Respond(200, conn_json(id, entry));
    if (entry.origin == Origin::kFile) {
      return Fail(403, absl::StrCat("connection '", id, "' is managed by the config file"));
    }
    if (method == "PUT" || method == "PATCH") {
      if (auto s = validate(body, false); !s.ok()) return FailStatus(s);
      if (entry.oauth && body.contains("apiKey")) return Fail(400, "apiKey: OAuth connections have none");
      json::object doc = entry.doc;
      for (const auto& [k, v] : body) {
        if (k != "apiKey") doc[k] = v;
      }
      doc["updatedAt"] = Now();
      std::optional<StoredObject> stored;
      {
        std::lock_guard<std::mutex> lock(reload_mu_);
        auto r = options_.store->Get("connection", id);
        if (!r.ok()) return FailStatus(r.status());
        stored = std::move(r).value();
      }
      if (!stored) return Fail(404, absl::StrCat("unknown connection '", id, "'"));
      stored->doc = json::serialize(doc);
      if (body.contains("apiKey")) {
        stored->secret = options_.keyring->Encrypt(Str(body, "apiKey"), SecretAad("connection", id));
      }
      if (auto s = put(*stored); !s.ok()) return FailStatus(s);
      auto now = snapshot();
      return Respond(200, conn_json(id, now->connections.at(id)));
    }
    if (method == "DELETE") {
      {
        // Its quota goes first (a quota write in flight deletes what it wrote once it sees
        // the connection gone from quota_).
        std::lock_guard<std::mutex> lock(quota_mu_);
        quota_.erase(id);
      }
      {
        std::lock_guard<std::mutex> lock(reload_mu_);
        (void)options_.store->Delete("quota", id);
      }
      auto existed = remove("connection", id);
      if (!existed.ok()) return FailStatus(existed.status());
      LogInfo("connection deleted", {{"connection", id}});
      return Respond(200, json::object{{"id", id}, {"deleted", true}});
    }
    return Fail(405, absl::StrCat("Method ", method, " is not allowed on ", req.path()));
  }

  // ---- Custom nodes ----
  if (area == "provider-nodes") {
    const std::string id = Segment(seg, 2);
    auto node_json = [](const json::object& doc, Origin origin) {
      json::object o = doc;
      o["managedBy"] = origin == Origin::kFile ? "file" : "api";
      return o;
    };
    // OmniRoute's shape ({"type":"openai-compatible","prefix","apiType"}) or ours.
    auto normalise = [&](json::object b, const std::string& fixed_id) -> absl::StatusOr<json::object> {
      if (auto s = OnlyKeys(b, {"id", "name", "prefix", "prefixes", "format", "type", "apiType",
                                "auth", "baseUrl", "models"});
          !s.ok()) {
        return s;
      }
      for (auto s : {WantString(b, "id"), WantString(b, "name"), WantString(b, "prefix"),
                     WantStrings(b, "prefixes"), WantString(b, "format"), WantString(b, "type"),
                     WantString(b, "apiType"), WantString(b, "auth"), WantString(b, "baseUrl"),
                     WantStrings(b, "models")}) {
        if (!s.ok()) return s;
      }
      if (!b.contains("format")) {
        const std::string type = Str(b, "type");
        if (type == "anthropic-compatible") {
          b["format"] = "anthropic";
        } else if (type.empty() || type == "openai-compatible") {
          b["format"] = Str(b, "apiType") == "responses" ? "responses" : "openai";
        } else {
          return absl::InvalidArgumentError("type: expected openai-compatible or anthropic-compatible");
        }
      }
      std::vector<std::string> prefixes = Strings(b, "prefixes");
      if (!Str(b, "prefix").empty()) prefixes.insert(prefixes.begin(), Str(b, "prefix"));
      std::string node_id = fixed_id;
      if (node_id.empty()) node_id = Str(b, "id");
      if (node_id.empty() && !prefixes.empty()) node_id = prefixes.front();
      if (!ValidName(node_id) || node_id.find('@') != std::string::npos) {
        return absl::InvalidArgumentError("id (or prefix): letters, digits, '-', '_', '.' (at most 64)");
      }
      const std::string base = Str(b, "baseUrl");
      if (base.rfind("http://", 0) != 0 && base.rfind("https://", 0) != 0) {
        return absl::InvalidArgumentError("baseUrl: expected an http:// or https:// URL");
      }
      json::object doc{{"id", node_id},
                       {"name", Str(b, "name").empty() ? node_id : Str(b, "name")},
                       {"prefixes", ToArray(prefixes)},
                       {"format", Str(b, "format")},
                       {"baseUrl", base},
                       {"models", b.contains("models") ? b.at("models") : json::array()}};
      if (!Str(b, "auth").empty()) doc["auth"] = Str(b, "auth");
      auto spec = NodeFromJson(doc);
      if (!spec.ok()) return spec.status();
      return NodeToJson(*spec);
    };
    if (id.empty() && method == "GET") {
      json::array list;
      for (const auto& [node_id, n] : snap->nodes) list.push_back(node_json(n.first, n.second));
      return Respond(200, json::object{{"nodes", list}});
    }
    if (id.empty() && method == "POST") {
      auto doc = normalise(body, "");
      if (!doc.ok()) return FailStatus(doc.status());
      const std::string node_id = Str(*doc, "id");
      if (snap->nodes.count(node_id) || snap->registry->Find(node_id)) {
        return Fail(409, absl::StrCat("provider '", node_id, "' exists"));
      }
      if (auto s = put(StoredObject{"node", node_id, json::serialize(*doc), "", 0}); !s.ok()) {
        return FailStatus(s);
      }
      return Respond(201, node_json(*doc, Origin::kApi));
    }
    auto it = snap->nodes.find(id);
    if (it == snap->nodes.end()) return Fail(404, absl::StrCat("unknown node '", id, "'"));
    if (method == "GET") return Respond(200, node_json(it->second.first, it->second.second));
    if (it->second.second == Origin::kFile) {
      return Fail(403, absl::StrCat("node '", id, "' is managed by the config file"));
    }
    if (method == "PUT" || method == "PATCH") {
      json::object merged = it->second.first;
      merged.erase("id");
      for (const auto& [k, v] : body) merged[k] = v;
      auto doc = normalise(merged, id);
      if (!doc.ok()) return FailStatus(doc.status());
      if (auto s = put(StoredObject{"node", id, json::serialize(*doc), "", 0}); !s.ok()) {
        return FailStatus(s);
      }
      return Respond(200, node_json(*doc, Origin::kApi));
    }
    if (method == "DELETE") {
      for (const auto& [conn_id, c] : snap->connections) {
        if (c.provider == id) {
          return Fail(409, absl::StrCat("node '", id, "' has connection '", conn_id,
                                        "'; delete it first"));
        }
      }
      auto existed = remove("node", id);
      if (!existed.ok()) return FailStatus(existed.status());
      return Respond(200, json::object{{"id", id}, {"deleted", true}});
    }
    return Fail(405, absl::StrCat("Method ", method, " is not allowed on ", req.path()));
  }

  // ---- Custom models ----
  if (area == "provider-models" && seg.size() == 2) {
    if (method == "GET") {
      json::array list;
      for (const auto& [mid, m] : snap->models) {
        if (query.count("provider") && Str(m, "provider") != query.at("provider")) continue;
        list.push_back(m);
      }
      return Respond(200, json::object{{"models", list}});
    }
    if (method == "POST" || method == "PUT") {
      if (auto s = OnlyKeys(body, {"provider", "modelId", "modelName"}); !s.ok()) return FailStatus(s);
      for (auto s : {WantString(body, "provider"), WantString(body, "modelId"),
                     WantString(body, "modelName")}) {
        if (!s.ok()) return FailStatus(s);
      }
      const std::string provider = Str(body, "provider");
      const std::string model = Str(body, "modelId");
      const ProviderSpec* p = snap->registry->Find(provider);
      if (!p) return Fail(400, absl::StrCat("provider: unknown provider '", provider, "'"));
      if (model.empty() || model.size() > 200) return Fail(400, "modelId: required (at most 200 characters)");
      json::object doc{{"provider", p->id},
                       {"modelId", model},
                       {"modelName", Str(body, "modelName").empty() ? model : Str(body, "modelName")},
                       {"createdAt", Now()}};
      if (auto s = put(StoredObject{"model", absl::StrCat(p->id, "/", model), json::serialize(doc), "", 0});
          !s.ok()) {
        return FailStatus(s);
      }
      return Respond(201, doc);
    }
    if (method == "DELETE") {
      const std::string provider = query.count("provider") ? query.at("provider") : "";
      std::string model = query.count("model") ? query.at("model") : "";
      if (model.empty() && query.count("modelId")) model = query.at("modelId");
      if (provider.empty() || model.empty()) return Fail(400, "provider and model: required");
      const ProviderSpec* p = snap->registry->Find(provider);
      auto existed = remove("model", absl::StrCat(p ? p->id : provider, "/", model));
      if (!existed.ok()) return FailStatus(existed.status());
      if (!*existed) return Fail(404, absl::StrCat("unknown model '", model, "' of '", provider, "'"));
      return Respond(200, json::object{{"deleted", true}});
    }
    return Fail(405, absl::StrCat("Method ", method, " is not allowed on ", req.path()));
  }

  // ---- Security settings ----
  if (area == "settings" && Segment(seg, 2) == "security" && seg.size() == 3) {
    auto current = [&] {
      json::object o{{"ipAllowlist", ToArray(Strings(snap->security, "ipAllowlist"))},
                     {"ipDenylist", ToArray(Strings(snap->security, "ipDenylist"))},
                     {"blockedProviders", ToArray(Strings(snap->security, "blockedProviders"))},
                     {"requireApiKey", config_->server.require_api_key}};
      return o;
    };
    if (method == "GET") return Respond(200, current());
    if (method == "PUT" || method == "PATCH") {
      if (auto s = OnlyKeys(body, {"ipAllowlist", "ipDenylist", "blockedProviders"}); !s.ok()) {
        return FailStatus(s);
      }
      json::object doc = snap->security;
      for (const char* list : {"ipAllowlist", "ipDenylist", "blockedProviders"}) {
        if (!body.contains(list)) continue;
        if (auto s = WantStrings(body, list); !s.ok()) return FailStatus(s);
        for (const auto& item : Strings(body, list)) {
          if (std::string_view(list) == "blockedProviders") {
            if (!snap->registry->Find(item)) {
              return Fail(400, absl::StrCat("blockedProviders: unknown provider '", item, "'"));
            }
          } else if (!ValidCidr(item)) {
            return Fail(400, absl::StrCat(list, ": '", item, "' is not an IP address or CIDR"));
          }
        }
        doc[list] = body.at(list);
      }
      doc["updatedAt"] = Now();
      if (auto s = put(StoredObject{"setting", "security", json::serialize(doc), "", 0}); !s.ok()) {
        return FailStatus(s);
      }
      snap = snapshot();
      return Respond(200, current());
    }
    return Fail(405, absl::StrCat("Method ", method, " is not allowed on ", req.path()));
  }

  return Fail(404, absl::StrCat("Unknown admin route ", req.path()));
}

}  // namespace omniroute::accounts
