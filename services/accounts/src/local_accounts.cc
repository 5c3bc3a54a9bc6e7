#include "local_accounts.h"

#include <boost/json.hpp>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_cat.h"
#include "accounts_json.h"
#include "common/log.h"
#include "common/secrets.h"
#include "common/strings.h"
#include "local_accounts_impl.h"

namespace omniroute::accounts {

namespace json = boost::json;

namespace {

int64_t SystemNowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

bool EnvTrue(const char* name) {
  const char* v = std::getenv(name);
  if (v == nullptr) return false;
  const std::string s(v);
  return s == "1" || s == "true" || s == "TRUE" || s == "yes";
}

void AddHeader(v1::Credential& cred, std::string name, std::string value) {
  auto* h = cred.add_headers();
  h->set_name(std::move(name));
  h->set_value(std::move(value));
}

// The headers of an API key on a provider.
v1::Credential ApiKeyCredential(const ProviderSpec* p, const std::string& api_key) {
  v1::Credential cred;
  const AuthStyle auth = p ? p->auth : common::v1::AUTH_STYLE_BEARER;
  switch (auth) {
    case common::v1::AUTH_STYLE_BEARER:
      if (!api_key.empty()) AddHeader(cred, "authorization", absl::StrCat("Bearer ", api_key));
      break;
    case common::v1::AUTH_STYLE_X_API_KEY:
      AddHeader(cred, "x-api-key", api_key);
      break;
    case common::v1::AUTH_STYLE_GOOG_API_KEY:
      AddHeader(cred, "x-goog-api-key", api_key);
      break;
    default:
      break;
  }
  if (p && p->format == common::v1::FORMAT_ANTHROPIC) {
    AddHeader(cred, "anthropic-version", "2023-06-01");
  }
  return cred;
}

// Quota reports reach the store (whose every write makes the routers and edges fetch the
// catalog again) only when they matter to routing: a window moved by kQuotaStoreStep points,
// crossed kQuotaExhaustedPercent, appeared, went or got another reset time; else at most one
// write per connection every kQuotaStoreIntervalMs while its usage moves.
constexpr double kQuotaStoreStep = 5;
constexpr double kQuotaExhaustedPercent = 99.5;  // the router's threshold (0.5 % remaining)
constexpr int64_t kQuotaResetSlackMs = 60000;    // relative resets drift between responses
constexpr int64_t kQuotaStoreIntervalMs = 60000;

bool QuotaWorthStoring(const v1::QuotaReport& stored, const v1::QuotaReport& next, int64_t now) {
  if (stored.windows_size() != next.windows_size()) return true;
  bool moved = false;
  for (const auto& w : next.windows()) {
    const v1::QuotaWindow* old = nullptr;
    for (const auto& s : stored.windows()) {
      if (s.name() == w.name()) old = &s;
    }
    if (old == nullptr) return true;
    const double delta = std::abs(w.used_percent() - old->used_percent());
    if (delta >= kQuotaStoreStep) return true;
    if ((w.used_percent() >= kQuotaExhaustedPercent) !=
        (old->used_percent() >= kQuotaExhaustedPercent)) {
      return true;
    }
    if (std::llabs(w.resets_at_ms() - old->resets_at_ms()) > kQuotaResetSlackMs) return true;
    moved |= delta > 0;
  }
  return moved && now - stored.reported_at_ms() >= kQuotaStoreIntervalMs;
}

}  // namespace

// ---- Construction and threads ----

LocalAccounts::LocalAccounts(ConfigPtr config, AccountsOptions options)
    : config_(std::move(config)), options_(std::move(options)) {
  if (!options_.clock) options_.clock = SystemNowMs;
  if (!options_.lock) options_.lock = MakeProcessLock();
  if (!options_.http) options_.http = MakeHttpFetcher();
  if (!options_.keyring) {
    auto ring = crypto::Keyring::FromSecrets(RandomHex(32));
    if (ring.ok()) options_.keyring = std::move(ring).value();
  }
  OAuthClientOptions oauth_options;
  oauth_options.url_base_override = options_.oauth_url_base;
  oauth_options.now_ms = options_.clock;
  oauth_ = std::make_unique<OAuthClient>(options_.http.get(), std::move(oauth_options));
  machine_id_ = crypto::MachineId(config_->api_key_secret);
  file_config_ = config_;
  file_epoch_ms_ = Now();
}

LocalAccounts::~LocalAccounts() {
  {
    std::lock_guard<std::mutex> lock(jobs_mu_);
    stopping_ = true;
  }
  jobs_cv_.notify_all();
  sync_cv_.notify_all();
  for (auto& t : workers_) t.join();
  if (sync_.joinable()) sync_.join();
}

absl::Status LocalAccounts::Start() {
  if (!options_.store) {
    auto store = MakeSqliteAccountsStore(":memory:");
    if (!store.ok()) return store.status();
    options_.store = std::move(store).value();
  }
  if (!options_.keyring) return absl::InternalError("no storage encryption key");
  if (auto s = Reload(/*force=*/true); !s.ok()) return s;
  // Secrets sealed with an older key are sealed again with the current one.
  {
    std::lock_guard<std::mutex> lock(reload_mu_);
    for (const char* kind : {"connection", "key", "setting", "oauth_flow"}) {
      auto objects = options_.store->List(kind);
      if (!objects.ok()) return objects.status();
      for (StoredObject& o : *objects) {
        if (o.secret.empty() || options_.keyring->IsCurrent(o.secret)) continue;
        auto plain = options_.keyring->Decrypt(o.secret, SecretAad(o.kind, o.id));
        if (!plain.ok()) {
          LogWarn("cannot decrypt a stored secret; is STORAGE_ENCRYPTION_KEY right?",
                  {{"kind", o.kind}, {"id", o.id}, {"error", SV(plain.status().message())}});
          continue;
        }
        o.secret = options_.keyring->Encrypt(*plain, SecretAad(o.kind, o.id));
        if (auto s = options_.store->Put(o); !s.ok()) return s;
        LogInfo("secret re-encrypted with the current key", {{"kind", o.kind}, {"id", o.id}});
      }
    }
  }
  for (int i = 0; i < std::max(1, options_.workers); ++i) {
    workers_.emplace_back([this] { WorkerLoop(); });
  }
  if (options_.background) sync_ = std::thread([this] { SyncLoop(); });
  return absl::OkStatus();
}

void LocalAccounts::Post(absl::AnyInvocable<void()> job) {
  {
    std::lock_guard<std::mutex> lock(jobs_mu_);
    jobs_.push_back(std::move(job));
  }
  jobs_cv_.notify_one();
}

void LocalAccounts::WorkerLoop() {
  for (;;) {
    absl::AnyInvocable<void()> job;
    {
      std::unique_lock<std::mutex> lock(jobs_mu_);
      jobs_cv_.wait(lock, [this] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty()) return;
      job = std::move(jobs_.front());
      jobs_.pop_front();
    }
    job();
  }
}

void LocalAccounts::SyncLoop() {
  bool failing = false;
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(jobs_mu_);
      if (sync_cv_.wait_for(lock, std::chrono::milliseconds(options_.sync_interval_ms),
                            [this] { return stopping_; })) {
        return;
      }
    }
    absl::Status s = Reload(/*force=*/false);
    if (!s.ok() && !failing) LogWarn("accounts store unavailable", {{"error", SV(s.message())}});
    if (s.ok() && failing) LogInfo("accounts store available again");
    failing = !s.ok();
    if (s.ok()) RefreshExpiring();
  }
}

// Tokens are refreshed before they expire even when no request asks for them, so that an
// idle subscription does not make its next request wait on the provider. A failed attempt
// waits a minute before the next one; a connection that needs a new login is left alone.
void LocalAccounts::RefreshExpiring() {
  const int64_t now = Now();
  auto snap = snapshot();
  std::vector<std::string> due;
  {
    std::lock_guard<std::mutex> lock(oauth_mu_);
    for (const auto& [id, state] : oauth_tokens_) {
      if (refreshing_.count(id) || !OAuthClient::NeedsRefresh(state.tokens, now)) continue;
      auto c = snap->connections.find(id);
      if (c == snap->connections.end() || Str(c->second.doc, "status") == "needs_login" ||
          !Bool(c->second.doc, "enabled", true)) {
        continue;
      }
      auto next = proactive_next_.find(id);
      if (next != proactive_next_.end() && next->second > now) continue;
      due.push_back(id);
    }
  }
  for (const std::string& id : due) {
    proactive_next_[id] = now + 60000;
    RefreshInBackground(id, "", [](absl::StatusOr<v1::Credential>) {});
  }
}

std::shared_ptr<const Snapshot> LocalAccounts::snapshot() const {
  std::lock_guard<std::mutex> lock(snap_mu_);
  return snap_;
}

// ---- Loading ----

absl::Status LocalAccounts::Reload(bool force) {
  std::lock_guard<std::mutex> lock(reload_mu_);
  auto version = options_.store->Version();
  if (!version.ok()) return version.status();
  if (!force) {
    auto current = snapshot();
    if (current && current->store_version == *version) return absl::OkStatus();
  }
  auto built = Build(*version);
  if (!built.ok()) return built.status();
  std::lock_guard<std::mutex> slock(snap_mu_);
  snap_ = std::move(built).value();
  return absl::OkStatus();
}

absl::Status LocalAccounts::ReloadConfig(ConfigPtr config) {
  if (config == nullptr) return absl::InvalidArgumentError("no config");
  std::lock_guard<std::mutex> lock(reload_mu_);
  auto version = options_.store->Version();
  if (!version.ok()) return version.status();
  ConfigPtr previous = std::exchange(file_config_, std::move(config));
  const int64_t previous_epoch = file_epoch_ms_;
  file_epoch_ms_ = std::max(Now(), previous_epoch + 1);
  auto built = Build(*version);
  if (!built.ok()) {
    file_config_ = std::move(previous);
    file_epoch_ms_ = previous_epoch;
    return built.status();
  }
  std::lock_guard<std::mutex> slock(snap_mu_);
  snap_ = std::move(built).value();
  return absl::OkStatus();
}

absl::StatusOr<std::shared_ptr<Snapshot>> LocalAccounts::Build(int64_t version) {
  auto snap = std::make_shared<Snapshot>();
  snap->store_version = version;
  AccountsStore& store = *options_.store;
  const crypto::Keyring& ring = *options_.keyring;

  // Nodes: the file's, then the API's; the registry is rebuilt with them.
  Config effective = *file_config_;
  for (const ProviderSpec& n : file_config_->nodes) {
    snap->nodes[n.id] = {NodeToJson(n), Origin::kFile};
  }
  auto nodes = store.List("node");
  if (!nodes.ok()) return nodes.status();
  for (const StoredObject& o : *nodes) {
    auto doc = ParseObject(o.doc);
    if (!doc.ok()) continue;
    auto spec = NodeFromJson(*doc);
    if (!spec.ok()) continue;
    effective.nodes.push_back(*spec);
    snap->nodes[o.id] = {std::move(doc).value(), Origin::kApi};
  }
  auto registry = BuildRegistry(effective);
  if (!registry.ok()) return registry.status();
  snap->registry = *registry;

  // Client keys.
  for (const ClientKeySpec& k : file_config_->api_keys) {
    KeyEntry e;
    e.origin = Origin::kFile;
    e.key.set_id(absl::StrCat("cfg:", k.name));
    e.key.set_name(k.name);
    e.key.set_cache_ttl_s(options_.key_cache_ttl_s);
    e.doc = json::object{{"id", e.key.id()}, {"name", k.name}, {"prefix", crypto::MaskSecret(k.key)}};
    const std::string hash = Sha256Hex(k.key);
    snap->key_hash_by_id[e.key.id()] = hash;
    snap->keys_by_hash[hash] = std::move(e);
  }
  auto keys = store.List("key");
  if (!keys.ok()) return keys.status();
  for (const StoredObject& o : *keys) {
    auto doc = ParseObject(o.doc);
    if (!doc.ok()) continue;
    KeyEntry e;
    e.doc = std::move(doc).value();
    e.key = ClientKeyFromJson(e.doc);
    e.key.set_cache_ttl_s(options_.key_cache_ttl_s);
    e.enabled = Bool(e.doc, "enabled", true);
    const std::string hash = Str(e.doc, "hash");
    if (hash.empty()) continue;
    snap->key_hash_by_id[o.id] = hash;
    snap->keys_by_hash[hash] = std::move(e);
  }

  // Connections.
  for (const ConnectionSpec& c : file_config_->connections) {
    ConnectionEntry e;
    e.origin = Origin::kFile;
    e.provider = c.provider;
    const ProviderSpec* p = snap->registry->Find(c.provider);
    e.api_key = c.api_key;
    if (p && p->oauth) {
      // A subscription provider declared with a token in the file: a static access token,
      // shaped like the provider's OAuth requests (it is not refreshed).
      OAuthTokens token;
      token.access_token = c.api_key;
      for (auto& [name, value] : OAuthClient::UpstreamHeaders(p->id, token)) {
        AddHeader(e.credential, name, value);
      }
      e.credential.set_base_url(OAuthClient::UpstreamBaseUrl(p->id, token));
    } else {
      e.credential = ApiKeyCredential(p, c.api_key);
    }
    e.credential.set_proxy(c.proxy);
    e.doc = json::object{{"id", c.id},
                         {"provider", c.provider},
                         {"name", c.name},
                         {"authType", "api_key"},
                         {"priority", c.priority},
                         {"enabled", c.enabled},
                         {"status", "active"}};
    if (!c.proxy.empty()) e.doc["proxy"] = c.proxy;
    snap->connections[c.id] = std::move(e);
  }
  auto conns = store.List("connection");
  if (!conns.ok()) return conns.status();
  std::map<std::string, OAuthState> oauth;
  for (const StoredObject& o : *conns) {
    auto doc = ParseObject(o.doc);
    if (!doc.ok() || snap->connections.count(o.id)) continue;
    ConnectionEntry e;
    e.doc = std::move(doc).value();
    e.provider = Str(e.doc, "provider");
    e.oauth = Str(e.doc, "authType") == "oauth";
    std::string secret;
    if (!o.secret.empty()) {
      auto plain = ring.Decrypt(o.secret, SecretAad(o.kind, o.id));
      if (!plain.ok()) {
        LogWarn("cannot decrypt a connection's secret", {{"connection", o.id},
                                                          {"error", SV(plain.status().message())}});
        e.doc["status"] = "error";
        e.doc["statusMessage"] = "the stored secret cannot be decrypted with the current key";
      } else {
        secret = std::move(plain).value();
      }
    }
    if (e.oauth) {
      if (!secret.empty()) {
        auto tokens = TokensFromJson(secret);
        if (tokens.ok()) {
          OAuthState st;
          st.tokens = std::move(tokens).value();
          st.token_sha256 = Sha256Hex(st.tokens.access_token + "\n" + st.tokens.api_key);
          oauth[o.id] = std::move(st);
        }
      }
    } else {
      e.api_key = secret;
      e.credential = ApiKeyCredential(snap->registry->Find(e.provider), secret);
      e.credential.set_proxy(Str(e.doc, "proxy"));
    }
    snap->connections[o.id] = std::move(e);
  }
  {
    std::lock_guard<std::mutex> lock(oauth_mu_);
    oauth_tokens_ = std::move(oauth);
  }

  // Quota reports of the connections.
  auto quotas = store.List("quota");
  if (!quotas.ok()) return quotas.status();
  for (const StoredObject& o : *quotas) {
    if (!snap->connections.count(o.id)) continue;
    auto doc = ParseObject(o.doc);
    if (doc.ok()) snap->quota[o.id] = QuotaFromJson(o.id, *doc);
  }

  // Custom models and settings.
  auto models = store.List("model");
  if (!models.ok()) return models.status();
  for (const StoredObject& o : *models) {
    auto doc = ParseObject(o.doc);
    if (doc.ok()) snap->models[o.id] = std::move(doc).value();
  }
  auto security = store.Get("setting", "security");
  if (!security.ok()) return security.status();
  if (*security) {
    auto doc = ParseObject((*security)->doc);
    if (doc.ok()) snap->security = std::move(doc).value();
  }

  // The catalog the router and the edges poll.
  v1::Catalog& cat = snap->catalog;
  cat.set_version(version + 1 + file_epoch_ms_);
  for (const auto& [id, node] : snap->nodes) {
    auto spec = NodeFromJson(node.first);
    if (!spec.ok()) continue;
    v1::Node* n = cat.add_nodes();
    n->set_id(spec->id);
    n->set_name(spec->name);
    for (const auto& p : spec->prefixes) n->add_prefixes(p);
    n->set_format(spec->format);
    n->set_auth(spec->auth);
    n->set_base_url(spec->base_url);
    for (const auto& m : spec->models) n->add_models(m);
  }
  for (const auto& [id, e] : snap->connections) {
    v1::Connection* c = cat.add_connections();
    c->set_id(id);
    c->set_provider(e.provider);
    c->set_name(Str(e.doc, "name"));
    c->set_priority(static_cast<int32_t>(Int(e.doc, "priority", 1)));
    c->set_enabled(Bool(e.doc, "enabled", true));
    c->set_oauth(e.oauth);
    std::string status = Str(e.doc, "status");
    c->set_status(status.empty() ? "active" : status);
    for (const auto& m : Strings(e.doc, "models")) c->add_models(m);
    c->set_proxy(Str(e.doc, "proxy"));
    c->set_quota_remaining_percent(-1);
    if (auto q = snap->quota.find(id); q != snap->quota.end()) {
      *c->mutable_quota() = q->second.windows();
      const QuotaStanding standing = QuotaStandingAt(q->second, Now());
      c->set_quota_remaining_percent(standing.remaining_percent);
      c->set_quota_resets_at_ms(standing.resets_at_ms);
    }
  }
  for (const auto& [id, m] : snap->models) {
    v1::ProviderModel* pm = cat.add_models();
    pm->set_provider(Str(m, "provider"));
    pm->set_model_id(Str(m, "modelId"));
    pm->set_name(Str(m, "modelName"));
  }
  v1::AccessSettings* access = cat.mutable_access();
  for (const auto& s : Strings(snap->security, "ipAllowlist")) access->add_ip_allowlist(s);
  for (const auto& s : Strings(snap->security, "ipDenylist")) access->add_ip_denylist(s);
  for (const auto& s : Strings(snap->security, "blockedProviders")) {
    access->add_blocked_providers(s);
  }
  return snap;
}

// ---- The request path ----

namespace {

// The SHA-256 of the keys seen lately on this thread: hashing the key of every request
// costs more than the rest of its look-up. Bounded: cleared when full.
const std::string& ClientKeyHash(const std::string& key) {
  thread_local std::unordered_map<std::string, std::string> hashes;
  if (auto it = hashes.find(key); it != hashes.end()) return it->second;
  if (hashes.size() >= 1024) hashes.clear();
  return hashes.emplace(key, Sha256Hex(key)).first->second;
}

}  // namespace

void LocalAccounts::ResolveClientKey(const std::string& key, Callback<v1::ClientKey> done) {
  auto snap = snapshot();
  auto it = snap->keys_by_hash.find(ClientKeyHash(key));
  if (it == snap->keys_by_hash.end() || !it->second.enabled) {
    done(absl::NotFoundError("Incorrect API key provided"));
    return;
  }
  const v1::ClientKey& k = it->second.key;
  if (k.expires_at_ms() > 0 && k.expires_at_ms() <= Now()) {
    done(absl::NotFoundError("The API key has expired"));
    return;
  }
  done(k);
}

void LocalAccounts::GetCatalog(int64_t known_version, Callback<v1::Catalog> done) {
  auto snap = snapshot();
  if (known_version == snap->catalog.version()) {
    v1::Catalog same;
    same.set_version(known_version);
    same.set_not_modified(true);
    done(std::move(same));
    return;
  }
  done(snap->catalog);
}

void LocalAccounts::GetCredential(const v1::GetCredentialRequest& request,
                                  Callback<v1::Credential> done) {
  auto snap = snapshot();
  auto it = snap->connections.find(request.connection_id());
  if (it == snap->connections.end()) {
    done(absl::NotFoundError(absl::StrCat("unknown connection '", request.connection_id(), "'")));
    return;
  }
  if (!it->second.oauth) {
    done(it->second.credential);
    return;
  }
  std::optional<OAuthState> state;
  {
    std::lock_guard<std::mutex> lock(oauth_mu_);
    auto t = oauth_tokens_.find(request.connection_id());
    if (t != oauth_tokens_.end()) state = t->second;
  }
  if (!state) {
    done(absl::FailedPreconditionError(absl::StrCat(
        "connection '", request.connection_id(), "' has no OAuth tokens: log in again")));
    return;
  }
  const bool failed =
      request.refresh() && (request.failed_token_sha256().empty() ||
                            request.failed_token_sha256() == state->token_sha256);
  if (!failed && !OAuthClient::NeedsRefresh(state->tokens, Now())) {
    done(OAuthCredential(request.connection_id(), *state));
    return;
  }
  RefreshInBackground(request.connection_id(), failed ? state->token_sha256 : std::string(),
                      std::move(done));
}

absl::StatusOr<v1::Credential> LocalAccounts::OAuthCredential(const std::string& connection_id,
                                                              const OAuthState& state) const {
  auto snap = snapshot();
  auto it = snap->connections.find(connection_id);
  const std::string provider = it == snap->connections.end() ? "" : it->second.provider;
  v1::Credential cred;
  for (auto& [name, value] : OAuthClient::UpstreamHeaders(provider, state.tokens)) {
    AddHeader(cred, name, value);
  }
  cred.set_base_url(OAuthClient::UpstreamBaseUrl(provider, state.tokens));
  if (it != snap->connections.end()) cred.set_proxy(Str(it->second.doc, "proxy"));
  int64_t expires = state.tokens.expires_at_ms;
  if (state.tokens.api_key_expires_at_ms > 0 &&
      (expires == 0 || state.tokens.api_key_expires_at_ms < expires)) {
    expires = state.tokens.api_key_expires_at_ms;
  }
  cred.set_expires_at_ms(expires);
  cred.set_token_sha256(state.token_sha256);
  return cred;
}

void LocalAccounts::RefreshInBackground(const std::string& connection_id, std::string failed_sha,
                                        Callback<v1::Credential> done) {
  {
    std::lock_guard<std::mutex> lock(oauth_mu_);
    auto& waiters = refreshing_[connection_id];
    waiters.push_back(std::move(done));
    if (waiters.size() > 1) return;  // a refresh is under way: its answer is ours too
  }
  // Jobs capture `this`: the destructor runs every queued job before it returns.
  Post([self = this, connection_id, failed_sha = std::move(failed_sha)] {
    absl::StatusOr<v1::Credential> result = self->RefreshNow(connection_id, failed_sha);
    std::vector<Callback<v1::Credential>> waiters;
    {
      std::lock_guard<std::mutex> lock(self->oauth_mu_);
      waiters = std::move(self->refreshing_[connection_id]);
      self->refreshing_.erase(connection_id);
    }
    for (auto& w : waiters) w(result);
  });
}

absl::StatusOr<v1::Credential> LocalAccounts::RefreshNow(const std::string& connection_id,
                                                         const std::string& failed_sha) {
  absl::StatusOr<v1::Credential> result = absl::InternalError("refresh did not run");
  absl::Status locked = options_.lock->With(absl::StrCat("oauth:", connection_id), [&] {
    // Another replica may have refreshed while we waited: read the stored tokens again.
    std::optional<StoredObject> stored;
    {
      std::lock_guard<std::mutex> lock(reload_mu_);
      auto got = options_.store->Get("connection", connection_id);
      if (!got.ok()) return got.status();
      stored = std::move(got).value();
    }
    if (!stored) return absl::NotFoundError(absl::StrCat("unknown connection '", connection_id, "'"));
    auto doc = ParseObject(stored->doc);
    if (!doc.ok()) return doc.status();
    auto plain = options_.keyring->Decrypt(stored->secret, SecretAad("connection", connection_id));
    if (!plain.ok()) return plain.status();
    auto tokens = TokensFromJson(*plain);
    if (!tokens.ok()) return tokens.status();
    OAuthState state;
    state.tokens = *tokens;
    state.token_sha256 = Sha256Hex(state.tokens.access_token + "\n" + state.tokens.api_key);
    const bool still_failed = !failed_sha.empty() && failed_sha == state.token_sha256;
    if (!still_failed && !OAuthClient::NeedsRefresh(state.tokens, Now())) {
      std::lock_guard<std::mutex> lock(oauth_mu_);
      oauth_tokens_[connection_id] = state;
      result = OAuthCredential(connection_id, state);
      return absl::OkStatus();
    }
    const std::string provider = Str(*doc, "provider");
    auto fresh = oauth_->Refresh(provider, state.tokens);
    if (!fresh.ok()) {
      const bool relogin = fresh.status().code() == absl::StatusCode::kFailedPrecondition;
      (*doc)["status"] = relogin ? "needs_login" : "error";
      (*doc)["statusMessage"] = std::string(SV(fresh.status().message()));
      (*doc)["statusAt"] = Now();
      LogWarn("OAuth refresh failed", {{"connection", connection_id},
                                       {"error", SV(fresh.status().message())}});
      {
        std::lock_guard<std::mutex> lock(counters_mu_);
        ++refresh_counts_[{provider, relogin ? "needs_login" : "error"}];
      }
      if (relogin) {
        (void)SaveOAuthConnection(*doc, state.tokens);
        return fresh.status();
      }
      // A transient failure: the current token is still usable until it expires.
      if (state.tokens.expires_at_ms > Now() && !still_failed) {
        result = OAuthCredential(connection_id, state);
        return absl::OkStatus();
      }
      return fresh.status();
    }
    (*doc)["status"] = "active";
    doc->erase("statusMessage");
    (*doc)["refreshedAt"] = Now();
    if (auto s = SaveOAuthConnection(*doc, *fresh); !s.ok()) return s;
    OAuthState next;
    next.tokens = *fresh;
    next.token_sha256 = Sha256Hex(next.tokens.access_token + "\n" + next.tokens.api_key);
    {
      std::lock_guard<std::mutex> lock(oauth_mu_);
      oauth_tokens_[connection_id] = next;
    }
    LogInfo("OAuth token refreshed", {{"connection", connection_id}});
    {
      std::lock_guard<std::mutex> lock(counters_mu_);
      ++refresh_counts_[{provider, "ok"}];
    }
    result = OAuthCredential(connection_id, next);
    return absl::OkStatus();
  });
  if (!locked.ok()) return locked;
  return result;
}

absl::Status LocalAccounts::SaveOAuthConnection(json::object doc, const OAuthTokens& tokens) {
  StoredObject o;
  o.kind = "connection";
  o.id = Str(doc, "id");
  doc["authType"] = "oauth";
  doc["expiresAt"] = tokens.expires_at_ms;
  if (!tokens.email.empty()) doc["email"] = tokens.email;
  doc["updatedAt"] = Now();
  o.doc = json::serialize(doc);
  o.secret = options_.keyring->Encrypt(TokensToJson(tokens), SecretAad(o.kind, o.id));
  {
    std::lock_guard<std::mutex> lock(reload_mu_);
    if (auto s = options_.store->Put(o); !s.ok()) return s;
  }
  return Reload(false);
}

// ---- Quota ----

void LocalAccounts::ReportQuota(const v1::QuotaReport& report) {
  if (report.connection_id().empty() || report.windows_size() == 0) return;
  auto snap = snapshot();
  if (!snap->connections.count(report.connection_id())) return;
  const int64_t now = Now();
  bool store = false;
  {
    std::lock_guard<std::mutex> lock(quota_mu_);
    QuotaTrack& t = quota_[report.connection_id()];
    t.latest = report;
    t.latest.set_reported_at_ms(now);
    if (!t.has_stored) {
      if (auto s = snap->quota.find(report.connection_id()); s != snap->quota.end()) {
        t.stored = s->second;
        t.has_stored = true;
      }
    }
    if (!t.writing && (!t.has_stored || QuotaWorthStoring(t.stored, t.latest, now))) {
      t.writing = true;
      store = true;
    }
  }
  // The store is written on a worker, never on the caller's thread (an edge's event loop).
  if (store) Post([self = this, id = report.connection_id()] { self->StoreQuota(id); });
}

void LocalAccounts::StoreQuota(const std::string& connection_id) {
  for (;;) {
    v1::QuotaReport report;
    {
      std::lock_guard<std::mutex> lock(quota_mu_);
      auto it = quota_.find(connection_id);
      if (it == quota_.end()) return;
      report = it->second.latest;
    }
    StoredObject o{"quota", connection_id, json::serialize(QuotaToJson(report)), "", 0};
    absl::Status put;
    {
      std::lock_guard<std::mutex> lock(reload_mu_);
      put = options_.store->Put(o);
    }
    bool again = false;
    bool deleted = false;
    {
      std::lock_guard<std::mutex> lock(quota_mu_);
      auto it = quota_.find(connection_id);
      if (it == quota_.end()) {
        deleted = true;  // the connection went while we wrote
      } else {
        QuotaTrack& t = it->second;
        if (put.ok()) {
          t.stored = report;
          t.has_stored = true;
          again = QuotaWorthStoring(t.stored, t.latest, Now());
        }
        t.writing = again;
      }
    }
    if (deleted) {
      std::lock_guard<std::mutex> lock(reload_mu_);
      (void)options_.store->Delete("quota", connection_id);
    }
    if (!put.ok()) {
      LogWarn("cannot store a connection's quota",
              {{"connection", connection_id}, {"error", SV(put.message())}});
      return;
    }
    if (!again) break;
  }
  if (auto s = Reload(false); !s.ok()) {
    LogWarn("accounts reload after a quota change failed", {{"error", SV(s.message())}});
  }
}

std::optional<v1::QuotaReport> LocalAccounts::LatestQuota(const Snapshot& snap,
                                                          const std::string& connection_id) {
  std::optional<v1::QuotaReport> out;
  if (auto s = snap.quota.find(connection_id); s != snap.quota.end()) out = s->second;
  std::lock_guard<std::mutex> lock(quota_mu_);
  auto t = quota_.find(connection_id);
  if (t != quota_.end() && (!out || t->second.latest.reported_at_ms() >= out->reported_at_ms())) {
    out = t->second.latest;
  }
  return out;
}

void LocalAccounts::Admin(const v1::AdminRequest& request, Callback<v1::AdminResponse> done) {
  Post([self = this, request, done = std::move(done)]() mutable {
    done(self->AdminNow(request));
  });
}

// ---- Metrics ----

std::string AccountsMetricsText(const Accounts& accounts) {
  const auto* self = dynamic_cast<const LocalAccounts*>(&accounts);
  if (self == nullptr) return {};
  auto snap = self->snapshot();
  std::map<std::pair<std::string, std::string>, int64_t> conns;
  for (const auto& [id, e] : snap->connections) {
    std::string status = Str(e.doc, "status");
    if (status.empty()) status = "active";
    if (!Bool(e.doc, "enabled", true)) status = "disabled";
    ++conns[{e.provider, status}];
  }
  std::map<std::pair<std::string, std::string>, int64_t> keys;
  for (const auto& [hash, k] : snap->keys_by_hash) {
    ++keys[{k.origin == Origin::kFile ? "file" : "api", k.enabled ? "true" : "false"}];
  }
  std::string out;
  auto family = [&out](std::string_view name, std::string_view type, std::string_view help) {
    absl::StrAppend(&out, "# HELP ", AV(name), " ", AV(help), "\n# TYPE ", AV(name), " ", AV(type),
                    "\n");
  };
  family("omniroute_accounts_connections", "gauge", "Provider connections by provider and status.");
  for (const auto& [k, n] : conns) {
    absl::StrAppend(&out, "omniroute_accounts_connections{provider=\"", k.first, "\",status=\"",
                    k.second, "\"} ", n, "\n");
  }
  family("omniroute_accounts_client_keys", "gauge", "Client API keys by origin and state.");
  for (const auto& [k, n] : keys) {
    absl::StrAppend(&out, "omniroute_accounts_client_keys{origin=\"", k.first, "\",enabled=\"",
                    k.second, "\"} ", n, "\n");
  }
  std::lock_guard<std::mutex> lock(self->counters_mu_);
  family("omniroute_accounts_oauth_refreshes_total", "counter",
         "OAuth token refreshes by provider and result.");
  for (const auto& [k, n] : self->refresh_counts_) {
    absl::StrAppend(&out, "omniroute_accounts_oauth_refreshes_total{provider=\"", k.first,
                    "\",result=\"", k.second, "\"} ", n, "\n");
  }
  family("omniroute_accounts_logins_total", "counter", "Admin login attempts by result.");
  for (const auto& [result, n] : self->login_counts_) {
    absl::StrAppend(&out, "omniroute_accounts_logins_total{result=\"", result, "\"} ", n, "\n");
  }
  return out;
}

// ---- Factories ----

absl::StatusOr<AccountsPtr> MakeLocalAccounts(ConfigPtr config, AccountsOptions options) {
  auto accounts = std::make_shared<LocalAccounts>(std::move(config), std::move(options));
  if (auto s = accounts->Start(); !s.ok()) return s;
  return AccountsPtr(std::move(accounts));
}

absl::Status ReloadAccountsConfig(Accounts& accounts, ConfigPtr config) {
  auto* local = dynamic_cast<LocalAccounts*>(&accounts);
  if (local == nullptr) return absl::FailedPreconditionError("not a local accounts service");
  return local->ReloadConfig(std::move(config));
}

absl::StatusOr<AccountsOptions> AccountsOptionsFromConfig(const Config& config) {
  AccountsOptions options;
  if (!config.storage.postgres_url.empty()) {
    auto store = MakePostgresAccountsStore(config.storage.postgres_url);
    if (!store.ok()) return store.status();
    options.store = std::move(store).value();
    options.lock = MakePostgresLock(config.storage.postgres_url);
  } else {
    std::string path = config.storage.sqlite_path;
    if (path.empty()) path = config.data_dir + "/omniroute.db";
    auto store = MakeSqliteAccountsStore(path);
    if (!store.ok()) return store.status();
    options.store = std::move(store).value();
  }
  auto ring = crypto::LoadKeyring(config.data_dir);
  if (!ring.ok()) return ring.status();
  options.keyring = std::move(ring).value();
  HttpFetcherOptions http;
  if (const char* ca = std::getenv("OMNIROUTE_OAUTH_CA_FILE")) http.ca_file = ca;
  options.http = MakeHttpFetcher(std::move(http));
  if (const char* base = std::getenv("OMNIROUTE_OAUTH_BASE")) options.oauth_url_base = base;
  options.allow_key_reveal = EnvTrue("ALLOW_API_KEY_REVEAL");
  options.cookie_secure = EnvTrue("AUTH_COOKIE_SECURE");
  return options;
}

}  // namespace omniroute::accounts
