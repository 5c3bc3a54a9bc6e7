#pragma once

// JSON documents of the accounts service's objects (internal to accounts_lib).

#include <algorithm>
#include <boost/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/str_cat.h"
#include "common/config.h"
#include "common/format.h"
#include "common/strings.h"
#include "omniroute/accounts/v1/accounts.pb.h"

namespace omniroute::accounts {

inline std::string Str(const boost::json::object& o, std::string_view key) {
  const boost::json::value* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->get_string()) : std::string();
}

inline int64_t Int(const boost::json::object& o, std::string_view key, int64_t fallback = 0) {
  const boost::json::value* v = o.if_contains(key);
  if (!v) return fallback;
  if (v->is_int64()) return v->get_int64();
  if (v->is_uint64()) return static_cast<int64_t>(v->get_uint64());
  if (v->is_double()) return static_cast<int64_t>(v->get_double());
  return fallback;
}

inline bool Bool(const boost::json::object& o, std::string_view key, bool fallback) {
  const boost::json::value* v = o.if_contains(key);
  return v && v->is_bool() ? v->get_bool() : fallback;
}

inline std::vector<std::string> Strings(const boost::json::object& o, std::string_view key) {
  std::vector<std::string> out;
  const boost::json::value* v = o.if_contains(key);
  if (v && v->is_array()) {
    for (const auto& e : v->get_array()) {
      if (e.is_string()) out.emplace_back(e.get_string());
    }
  }
  return out;
}

inline boost::json::array ToArray(const std::vector<std::string>& items) {
  boost::json::array a;
  for (const auto& s : items) a.emplace_back(s);
  return a;
}

inline absl::StatusOr<boost::json::object> ParseObject(std::string_view text) {
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(text, ec);
  if (ec || !v.is_object()) return absl::InvalidArgumentError("expected a JSON object");
  return std::move(v.get_object());
}

// Binds a sealed secret to its row: a secret copied to another row does not decrypt.
inline std::string SecretAad(std::string_view kind, std::string_view id) {
  return absl::StrCat(AV(kind), "/", AV(id));
}

// Nodes: {"id","name","prefixes":[...],"format","auth","baseUrl","models":[...]}.
inline boost::json::object NodeToJson(const ProviderSpec& p) {
  return boost::json::object{{"id", p.id},
                             {"name", p.name},
                             {"prefixes", ToArray(p.prefixes)},
                             {"format", std::string(FormatName(p.format))},
                             {"auth", std::string(AuthStyleName(p.auth))},
                             {"baseUrl", p.base_url},
                             {"models", ToArray(p.models)}};
}

inline absl::StatusOr<ProviderSpec> NodeFromJson(const boost::json::object& o) {
  ProviderSpec p;
  p.id = Str(o, "id");
  p.name = Str(o, "name");
  if (p.name.empty()) p.name = p.id;
  p.prefixes = Strings(o, "prefixes");
  if (std::find(p.prefixes.begin(), p.prefixes.end(), p.id) == p.prefixes.end()) {
    p.prefixes.insert(p.prefixes.begin(), p.id);
  }
  if (!ParseFormat(Str(o, "format"), &p.format)) {
    return absl::InvalidArgumentError("format: expected openai, responses, anthropic or gemini");
  }
  const std::string auth = Str(o, "auth");
  if (auth.empty()) {
    p.auth = p.format == common::v1::FORMAT_ANTHROPIC  ? common::v1::AUTH_STYLE_X_API_KEY
             : p.format == common::v1::FORMAT_GEMINI ? common::v1::AUTH_STYLE_GOOG_API_KEY
                                                      : common::v1::AUTH_STYLE_BEARER;
  } else if (!ParseAuthStyle(auth, &p.auth)) {
    return absl::InvalidArgumentError("auth: expected bearer, x-api-key, goog-api-key or none");
  }
  p.base_url = Str(o, "baseUrl");
  while (!p.base_url.empty() && p.base_url.back() == '/') p.base_url.pop_back();
  p.models = Strings(o, "models");
  p.custom = true;
  return p;
}

// Client keys: {"id","name","hash","prefix","enabled","expiresAt","allowedModels","rpmLimit",
// "tpmLimit","team","metadata":{...},"createdAt"}.
inline v1::ClientKey ClientKeyFromJson(const boost::json::object& o) {
  v1::ClientKey k;
  k.set_id(Str(o, "id"));
  k.set_name(Str(o, "name"));
  for (const auto& m : Strings(o, "allowedModels")) k.add_allowed_models(m);
  k.set_rpm_limit(static_cast<int32_t>(Int(o, "rpmLimit")));
  k.set_tpm_limit(Int(o, "tpmLimit"));
  k.set_team(Str(o, "team"));
  k.set_expires_at_ms(Int(o, "expiresAt"));
  if (const auto* md = o.if_contains("metadata"); md && md->is_object()) {
    for (const auto& [name, value] : md->get_object()) {
      if (value.is_string()) (*k.mutable_metadata())[std::string(name)] = std::string(value.get_string());
    }
  }
  return k;
}

// Quota reports: {"windows":[{"name","usedPercent","resetsAt","windowMinutes"}],
// "reportedAt"} (the stored document of kind "quota", id = the connection's).
inline boost::json::object QuotaToJson(const v1::QuotaReport& r) {
  boost::json::array windows;
  for (const auto& w : r.windows()) {
    windows.push_back(boost::json::object{{"name", w.name()},
                                          {"usedPercent", w.used_percent()},
                                          {"resetsAt", w.resets_at_ms()},
                                          {"windowMinutes", w.window_minutes()}});
  }
  return boost::json::object{{"windows", std::move(windows)}, {"reportedAt", r.reported_at_ms()}};
}

inline v1::QuotaReport QuotaFromJson(const std::string& connection_id,
                                     const boost::json::object& o) {
  v1::QuotaReport r;
  r.set_connection_id(connection_id);
  r.set_reported_at_ms(Int(o, "reportedAt"));
  const boost::json::value* windows = o.if_contains("windows");
  if (windows == nullptr || !windows->is_array()) return r;
  for (const auto& v : windows->get_array()) {
    if (!v.is_object()) continue;
    const boost::json::object& w = v.get_object();
    const boost::json::value* used = w.if_contains("usedPercent");
    if (used == nullptr || !used->is_number()) continue;
    v1::QuotaWindow* out = r.add_windows();
    out->set_name(Str(w, "name"));
    out->set_used_percent(used->to_number<double>());
    out->set_resets_at_ms(Int(w, "resetsAt"));
    out->set_window_minutes(static_cast<int32_t>(Int(w, "windowMinutes")));
  }
  return r;
}

// What limits a connection at `now_ms`: 100 minus the highest used percent of its windows
// not yet reset (a window without a reset time counts), and when that window resets.
struct QuotaStanding {
  double remaining_percent = -1;  // -1 = no window counts
  int64_t resets_at_ms = 0;
};

inline QuotaStanding QuotaStandingAt(const v1::QuotaReport& r, int64_t now_ms) {
  QuotaStanding out;
  double used = -1;
  for (const auto& w : r.windows()) {
    if (w.resets_at_ms() > 0 && w.resets_at_ms() <= now_ms) continue;
    // Of equally used windows, the one that resets last limits.
    if (w.used_percent() > used ||
        (w.used_percent() == used && w.resets_at_ms() > out.resets_at_ms)) {
      used = w.used_percent();
      out.resets_at_ms = w.resets_at_ms();
    }
  }
  if (used >= 0) out.remaining_percent = std::max(0.0, 100.0 - used);
  return out;
}

}  // namespace omniroute::accounts
