#include "common/config.h"

#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/secrets.h"
#include "common/status_macros.h"

namespace omniroute {

extern const char* const kProvidersYaml;  // generated from data/providers.yaml

namespace {

namespace fs = std::filesystem;

// Walks a YAML node strictly: every key read is remembered and the rest are errors.
class Reader {
 public:
  Reader(const YAML::Node& node, std::string path) : node_(node), path_(std::move(path)) {}

  absl::Status CheckMap() const {
    if (node_ && !node_.IsNull() && !node_.IsMap()) {
      return absl::InvalidArgumentError(absl::StrCat(Where(), ": expected a mapping"));
    }
    return absl::OkStatus();
  }

  // Fails on keys that were never asked for.
  absl::Status Finish() const {
    if (!node_ || !node_.IsMap()) return absl::OkStatus();
    for (const auto& kv : node_) {
      const std::string key = kv.first.as<std::string>();
      if (!known_.count(key)) {
        return absl::InvalidArgumentError(absl::StrCat(Child(key), ": unknown key"));
      }
    }
    return absl::OkStatus();
  }

  YAML::Node Get(const std::string& key) {
    known_.insert(key);
    if (!node_ || !node_.IsMap()) return YAML::Node();
    return node_[key];
  }

  std::string Child(const std::string& key) const {
    return path_.empty() ? key : absl::StrCat(path_, ".", key);
  }

  absl::Status String(const std::string& key, std::string* out, bool required = false) {
    YAML::Node n = Get(key);
    if (!n || n.IsNull()) {
      return required ? absl::InvalidArgumentError(absl::StrCat(Child(key), ": required"))
                      : absl::OkStatus();
    }
    if (!n.IsScalar()) {
      return absl::InvalidArgumentError(absl::StrCat(Child(key), ": expected a string"));
    }
    *out = n.Scalar();
    return absl::OkStatus();
  }

  template <typename Int>
  absl::Status Integer(const std::string& key, Int* out, int64_t min, int64_t max) {
    YAML::Node n = Get(key);
    if (!n || n.IsNull()) return absl::OkStatus();
    int64_t v = 0;
    if (!n.IsScalar() || !YAML::convert<int64_t>::decode(n, v)) {
      return absl::InvalidArgumentError(absl::StrCat(Child(key), ": expected an integer"));
    }
    if (v < min || v > max) {
      return absl::InvalidArgumentError(
          absl::StrCat(Child(key), ": must be between ", min, " and ", max));
    }
    *out = static_cast<Int>(v);
    return absl::OkStatus();
  }

  absl::Status Bool(const std::string& key, bool* out) {
    YAML::Node n = Get(key);
    if (!n || n.IsNull()) return absl::OkStatus();
    bool v = false;
    if (!n.IsScalar() || !YAML::convert<bool>::decode(n, v)) {
      return absl::InvalidArgumentError(absl::StrCat(Child(key), ": expected true or false"));
    }
    *out = v;
    return absl::OkStatus();
  }

  absl::Status StringList(const std::string& key, std::vector<std::string>* out) {
    YAML::Node n = Get(key);
    if (!n || n.IsNull()) return absl::OkStatus();
    if (!n.IsSequence()) {
      return absl::InvalidArgumentError(absl::StrCat(Child(key), ": expected a list"));
    }
    out->clear();
    for (size_t i = 0; i < n.size(); ++i) {
      if (!n[i].IsScalar()) {
        return absl::InvalidArgumentError(
            absl::StrCat(Child(key), "[", i, "]: expected a string"));
      }
      out->push_back(n[i].Scalar());
    }
    return absl::OkStatus();
  }

  // Calls fn(Reader&) for each element of a list of mappings.
  template <typename Fn>
  absl::Status List(const std::string& key, Fn fn) {
    YAML::Node n = Get(key);
    if (!n || n.IsNull()) return absl::OkStatus();
    if (!n.IsSequence()) {
      return absl::InvalidArgumentError(absl::StrCat(Child(key), ": expected a list"));
    }
    for (size_t i = 0; i < n.size(); ++i) {
      Reader item(n[i], absl::StrCat(Child(key), "[", i, "]"));
      if (!n[i].IsMap()) {
        return absl::InvalidArgumentError(absl::StrCat(item.path_, ": expected a mapping"));
      }
      RETURN_IF_ERROR(fn(item));
      RETURN_IF_ERROR(item.Finish());
    }
    return absl::OkStatus();
  }

  // Calls fn(Reader&) on a nested mapping.
  template <typename Fn>
  absl::Status Map(const std::string& key, Fn fn) {
    Reader sub(Get(key), Child(key));
    RETURN_IF_ERROR(sub.CheckMap());
    RETURN_IF_ERROR(fn(sub));
    return sub.Finish();
  }

  const std::string& path() const { return path_; }

 private:
  std::string Where() const { return path_.empty() ? "<root>" : path_; }

  YAML::Node node_;
  std::string path_;
  std::set<std::string> known_;
};

std::string TrimSlash(std::string url) {
  while (!url.empty() && url.back() == '/') url.pop_back();
  return url;
}

absl::Status ValidBaseUrl(const std::string& path, const std::string& url) {
  if (url.rfind("http://", 0) != 0 && url.rfind("https://", 0) != 0) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ".base_url: must start with http:// or https://"));
  }
  return absl::OkStatus();
}

absl::Status ReadProvider(Reader& r, ProviderSpec* p, bool node) {
  RETURN_IF_ERROR(r.String("id", &p->id, true));
  RETURN_IF_ERROR(r.String("name", &p->name));
  if (p->name.empty()) p->name = p->id;
  std::string format = "openai";
  RETURN_IF_ERROR(r.String("format", &format));
  if (!ParseFormat(format, &p->format)) {
    return absl::InvalidArgumentError(absl::StrCat(
        r.Child("format"), ": must be one of openai, responses, anthropic, gemini"));
  }
  std::string auth;
  RETURN_IF_ERROR(r.String("auth", &auth));
  if (auth.empty()) {
    p->auth = p->format == common::v1::FORMAT_ANTHROPIC ? common::v1::AUTH_STYLE_X_API_KEY
              : p->format == common::v1::FORMAT_GEMINI  ? common::v1::AUTH_STYLE_GOOG_API_KEY
                                                        : common::v1::AUTH_STYLE_BEARER;
  } else if (!ParseAuthStyle(auth, &p->auth)) {
    return absl::InvalidArgumentError(absl::StrCat(
        r.Child("auth"), ": must be one of bearer, x-api-key, goog-api-key, none"));
  }
  RETURN_IF_ERROR(r.String("base_url", &p->base_url, true));
  RETURN_IF_ERROR(ValidBaseUrl(r.path(), p->base_url));
  p->base_url = TrimSlash(p->base_url);
  RETURN_IF_ERROR(r.StringList("models", &p->models));
  RETURN_IF_ERROR(r.StringList("prefixes", &p->prefixes));
  if (std::find(p->prefixes.begin(), p->prefixes.end(), p->id) == p->prefixes.end()) {
    p->prefixes.insert(p->prefixes.begin(), p->id);
  }
  if (!node) {
    std::string kind = "api_key";
    RETURN_IF_ERROR(r.String("kind", &kind));
    p->oauth = kind == "oauth";
  }
  p->custom = node;
  for (char c : p->id) {
    if (!absl::ascii_isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' &&
        c != '.') {
      return absl::InvalidArgumentError(
          absl::StrCat(r.Child("id"), ": only letters, digits, '-', '_' and '.' are allowed"));
    }
  }
  return absl::OkStatus();
}

const char* Env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

absl::StatusOr<bool> ParseBoolEnv(const char* name, const char* v) {
  std::string s = absl::AsciiStrToLower(v);
  if (s == "1" || s == "true" || s == "yes" || s == "on") return true;
  if (s == "0" || s == "false" || s == "no" || s == "off") return false;
  return absl::InvalidArgumentError(absl::StrCat(name, ": expected true or false, got '", v, "'"));
}

}  // namespace

absl::StatusOr<Config> ParseConfig(const std::string& yaml_text) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(absl::StrCat("invalid YAML: ", e.what()));
  }
  Config c;
  Reader r(root, "");
  RETURN_IF_ERROR(r.CheckMap());
  RETURN_IF_ERROR(r.Map("server", [&](Reader& s) -> absl::Status {
    RETURN_IF_ERROR(s.String("host", &c.server.host));
    RETURN_IF_ERROR(s.Integer("port", &c.server.port, 0, 65535));
    RETURN_IF_ERROR(s.Bool("require_api_key", &c.server.require_api_key));
    RETURN_IF_ERROR(s.Integer("threads", &c.server.threads, 0, 256));
    RETURN_IF_ERROR(s.Integer("body_limit_bytes", &c.server.body_limit_bytes, 1024,
                              int64_t{1} << 32));
    RETURN_IF_ERROR(s.Integer("upstream_connect_timeout_ms", &c.server.upstream_connect_timeout_ms,
                              1, 600000));
    RETURN_IF_ERROR(
        s.Integer("upstream_timeout_ms", &c.server.upstream_timeout_ms, 1, 3600000));
    RETURN_IF_ERROR(s.Integer("drain_timeout_ms", &c.server.drain_timeout_ms, 0, 3600000));
    return absl::OkStatus();
  }));
  RETURN_IF_ERROR(r.Map("services", [&](Reader& s) -> absl::Status {
    RETURN_IF_ERROR(s.String("router", &c.services.router));
    RETURN_IF_ERROR(s.String("translator", &c.services.translator));
    RETURN_IF_ERROR(s.String("accounts", &c.services.accounts));
    RETURN_IF_ERROR(s.String("usage", &c.services.usage));
    return absl::OkStatus();
  }));
  RETURN_IF_ERROR(r.Map("storage", [&](Reader& s) -> absl::Status {
    RETURN_IF_ERROR(s.String("sqlite_path", &c.storage.sqlite_path));
    RETURN_IF_ERROR(s.String("postgres_url", &c.storage.postgres_url));
    return absl::OkStatus();
  }));
  RETURN_IF_ERROR(r.Map("redis", [&](Reader& s) -> absl::Status {
    return s.String("url", &c.redis.url);
  }));
  RETURN_IF_ERROR(r.Map("resilience", [&](Reader& s) -> absl::Status {
    return s.Map("cooldown", [&](Reader& cd) -> absl::Status {
      RETURN_IF_ERROR(cd.Integer("base_ms", &c.resilience.cooldown_base_ms, 0, 86400000));
      RETURN_IF_ERROR(
          cd.Integer("oauth_base_ms", &c.resilience.cooldown_oauth_base_ms, 0, 86400000));
      RETURN_IF_ERROR(cd.Integer("max_ms", &c.resilience.cooldown_max_ms, 0, 86400000));
      RETURN_IF_ERROR(cd.Integer("max_backoff_steps", &c.resilience.max_backoff_steps, 0, 30));
      return absl::OkStatus();
    });
  }));
  RETURN_IF_ERROR(r.String("data_dir", &c.data_dir));
  RETURN_IF_ERROR(r.List("nodes", [&](Reader& n) -> absl::Status {
    ProviderSpec p;
    RETURN_IF_ERROR(ReadProvider(n, &p, /*node=*/true));
    for (const auto& other : c.nodes) {
      if (other.id == p.id) {
        return absl::InvalidArgumentError(absl::StrCat(n.Child("id"), ": duplicate '", p.id, "'"));
      }
    }
    c.nodes.push_back(std::move(p));
    return absl::OkStatus();
  }));
  RETURN_IF_ERROR(r.List("connections", [&](Reader& n) -> absl::Status {
    ConnectionSpec cs;
    RETURN_IF_ERROR(n.String("provider", &cs.provider, true));
    RETURN_IF_ERROR(n.String("name", &cs.name, true));
    RETURN_IF_ERROR(n.String("api_key", &cs.api_key));
    std::string env;
    RETURN_IF_ERROR(n.String("api_key_env", &env));
    if (!env.empty()) {
      if (!cs.api_key.empty()) {
        return absl::InvalidArgumentError(
            absl::StrCat(n.path(), ": set api_key or api_key_env, not both"));
      }
      const char* v = Env(env.c_str());
      if (!v) {
        return absl::InvalidArgumentError(absl::StrCat(
            n.Child("api_key_env"), ": environment variable ", env, " is not set"));
      }
      cs.api_key = v;
    }
    RETURN_IF_ERROR(n.Integer("priority", &cs.priority, 0, 1000000));
    RETURN_IF_ERROR(n.Bool("enabled", &cs.enabled));
    cs.id = absl::StrCat(cs.provider, ":", cs.name);
    for (const auto& other : c.connections) {
      if (other.id == cs.id) {
        return absl::InvalidArgumentError(
            absl::StrCat(n.Child("name"), ": duplicate connection '", cs.id, "'"));
      }
    }
    c.connections.push_back(std::move(cs));
    return absl::OkStatus();
  }));
  RETURN_IF_ERROR(r.List("api_keys", [&](Reader& n) -> absl::Status {
    ClientKeySpec k;
    RETURN_IF_ERROR(n.String("name", &k.name, true));
    RETURN_IF_ERROR(n.String("key", &k.key, true));
    if (k.key.size() < 8) {
      return absl::InvalidArgumentError(absl::StrCat(n.Child("key"), ": at least 8 characters"));
    }
    c.api_keys.push_back(std::move(k));
    return absl::OkStatus();
  }));
  RETURN_IF_ERROR(r.Finish());
  return c;
}

absl::StatusOr<ConfigPtr> LoadConfig(const std::string& flag_path, bool generate_secrets) {
  std::string data_dir;
  if (const char* d = Env("DATA_DIR")) {
    data_dir = d;
  } else if (const char* home = Env("HOME")) {
    data_dir = std::string(home) + "/.omniroute";
  } else {
    data_dir = ".omniroute";
  }
  std::string path = flag_path;
  bool explicit_path = !path.empty();
  if (path.empty()) {
    if (const char* p = Env("OMNIROUTE_CONFIG")) {
      path = p;
      explicit_path = true;
    } else {
      path = data_dir + "/omniroute.yaml";
    }
  }
  std::string text;
  std::ifstream in(path);
  if (in) {
    std::stringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  } else if (explicit_path) {
    return absl::NotFoundError(absl::StrCat("config file ", path, ": cannot be read"));
  }
  auto parsed = ParseConfig(text);
  if (!parsed.ok()) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ", parsed.status().message()));
  }
  Config c = std::move(parsed).value();
  c.config_path = path;
  if (!Env("DATA_DIR") && !c.data_dir.empty()) data_dir = c.data_dir;
  c.data_dir = data_dir;

  if (const char* v = Env("PORT")) {
    int port = std::atoi(v);
    if (port <= 0 || port > 65535) {
      return absl::InvalidArgumentError(absl::StrCat("PORT: invalid port '", v, "'"));
    }
    c.server.port = port;
  }
  if (const char* v = Env("REQUIRE_API_KEY")) {
    ASSIGN_OR_RETURN(c.server.require_api_key, ParseBoolEnv("REQUIRE_API_KEY", v));
  }
  if (const char* v = Env("OMNIROUTE_ROUTER_ADDR")) c.services.router = v;
  if (const char* v = Env("OMNIROUTE_TRANSLATOR_ADDR")) c.services.translator = v;
  if (const char* v = Env("OMNIROUTE_ACCOUNTS_ADDR")) c.services.accounts = v;
  if (const char* v = Env("OMNIROUTE_USAGE_ADDR")) c.services.usage = v;
  if (const char* v = Env("REDIS_URL")) c.redis.url = v;
  if (const char* v = Env("DATABASE_URL")) c.storage.postgres_url = v;
  if (c.storage.sqlite_path.empty()) c.storage.sqlite_path = data_dir + "/omniroute.db";

  if (generate_secrets) {
    std::error_code ec;
    fs::create_directories(data_dir, ec);
    if (ec) {
      return absl::FailedPreconditionError(
          absl::StrCat("DATA_DIR ", data_dir, ": ", ec.message()));
    }
    ASSIGN_OR_RETURN(c.admin_key, EnvOrStoredSecret("OMNIROUTE_ADMIN_KEY", data_dir, "admin_key",
                                                    "sk-admin-"));
    ASSIGN_OR_RETURN(c.api_key_secret,
                     EnvOrStoredSecret("API_KEY_SECRET", data_dir, "api_key_secret", ""));
    ASSIGN_OR_RETURN(c.jwt_secret, EnvOrStoredSecret("JWT_SECRET", data_dir, "jwt_secret", ""));
    ASSIGN_OR_RETURN(c.initial_password,
                     EnvOrStoredSecret("INITIAL_PASSWORD", data_dir, "initial_password", ""));
  }
  // Connections may name a provider by prefix ("cc"); keep the canonical id.
  ASSIGN_OR_RETURN(auto registry, BuildRegistry(c));
  for (auto& conn : c.connections) {
    conn.provider = registry->Find(conn.provider)->id;
    conn.id = absl::StrCat(conn.provider, ":", conn.name);
  }
  return std::make_shared<const Config>(std::move(c));
}

absl::StatusOr<std::vector<ProviderSpec>> ProviderRegistry::BuiltIns() {
  YAML::Node root = YAML::Load(kProvidersYaml);
  std::vector<ProviderSpec> out;
  Reader r(root, "providers.yaml");
  RETURN_IF_ERROR(r.List("providers", [&](Reader& n) -> absl::Status {
    ProviderSpec p;
    RETURN_IF_ERROR(ReadProvider(n, &p, /*node=*/false));
    out.push_back(std::move(p));
    return absl::OkStatus();
  }));
  RETURN_IF_ERROR(r.Finish());
  return out;
}

ProviderRegistry::ProviderRegistry(std::vector<ProviderSpec> providers)
    : providers_(std::move(providers)) {}

const ProviderSpec* ProviderRegistry::Find(std::string_view id_or_prefix) const {
  // Custom nodes come last in providers_ and win over built-ins with the same prefix.
  for (auto it = providers_.rbegin(); it != providers_.rend(); ++it) {
    if (it->id == id_or_prefix) return &*it;
  }
  for (auto it = providers_.rbegin(); it != providers_.rend(); ++it) {
    for (const auto& p : it->prefixes) {
      if (p == id_or_prefix) return &*it;
    }
  }
  return nullptr;
}

absl::StatusOr<std::shared_ptr<const ProviderRegistry>> BuildRegistry(const Config& config) {
  ASSIGN_OR_RETURN(std::vector<ProviderSpec> all, ProviderRegistry::BuiltIns());
  for (const auto& node : config.nodes) {
    all.erase(std::remove_if(all.begin(), all.end(),
                             [&](const ProviderSpec& p) { return p.id == node.id; }),
              all.end());
    all.push_back(node);
  }
  auto registry = std::make_shared<const ProviderRegistry>(std::move(all));
  for (const auto& conn : config.connections) {
    if (!registry->Find(conn.provider)) {
      return absl::InvalidArgumentError(absl::StrCat(
          "connections: '", conn.name, "' names unknown provider '", conn.provider, "'"));
    }
  }
  return registry;
}

}  // namespace omniroute
