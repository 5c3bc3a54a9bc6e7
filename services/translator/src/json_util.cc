#include "json_util.h"

#include <charconv>
#include <cstdio>

#include "absl/status/status.h"
#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/strings.h"

namespace omniroute::translator {
namespace {

void AppendEscaped(std::string_view s, std::string* out) {
  out->push_back('"');
  size_t start = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    if (c >= 0x20 && c != '"' && c != '\\') continue;
    out->append(s.data() + start, i - start);
    start = i + 1;
    switch (c) {
      case '"':
        out->append("\\\"");
        break;
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '\r':
        out->append("\\r");
        break;
      case '\t':
        out->append("\\t");
        break;
      case '\b':
        out->append("\\b");
        break;
      case '\f':
        out->append("\\f");
        break;
      default: {
        char buf[8];
        std::snprintf(buf, sizeof(buf), "\\u%04x", c);
        out->append(buf);
      }
    }
  }
  out->append(s.data() + start, s.size() - start);
  out->push_back('"');
}

void AppendDouble(double d, std::string* out) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof(buf), d);
  if (ec != std::errc() || d != d || d - d != 0) {
    out->append("null");  // NaN and infinities have no JSON form
    return;
  }
  out->append(buf, end);
}

}  // namespace

absl::StatusOr<json::object> ParseObject(std::string_view text, std::string_view what) {
  boost::system::error_code ec;
  json::parse_options opts;
  opts.max_depth = 200;
  json::value v = json::parse(json::string_view(text.data(), text.size()), ec, {}, opts);
  if (ec) {
    return absl::InvalidArgumentError(
        absl::StrCat("Invalid JSON in ", AV(what), ": ", ec.message()));
  }
  json::object* o = v.if_object();
  if (o == nullptr) {
    return absl::InvalidArgumentError(absl::StrCat("Invalid ", AV(what), ": not a JSON object"));
  }
  return std::move(*o);
}

std::optional<json::value> ParseValue(std::string_view text) {
  boost::system::error_code ec;
  json::parse_options opts;
  opts.max_depth = 200;
  json::value v = json::parse(json::string_view(text.data(), text.size()), ec, {}, opts);
  if (ec) return std::nullopt;
  return v;
}

void SerializeTo(const json::value& v, std::string* out) {
  switch (v.kind()) {
    case json::kind::null:
      out->append("null");
      return;
    case json::kind::bool_:
      out->append(v.get_bool() ? "true" : "false");
      return;
    case json::kind::int64:
      absl::StrAppend(out, v.get_int64());
      return;
    case json::kind::uint64:
      absl::StrAppend(out, v.get_uint64());
      return;
    case json::kind::double_:
      AppendDouble(v.get_double(), out);
      return;
    case json::kind::string: {
      const json::string& s = v.get_string();
      AppendEscaped(std::string_view(s.data(), s.size()), out);
      return;
    }
    case json::kind::array: {
      out->push_back('[');
      bool first = true;
      for (const json::value& e : v.get_array()) {
        if (!first) out->push_back(',');
        first = false;
        SerializeTo(e, out);
      }
      out->push_back(']');
      return;
    }
    case json::kind::object: {
      out->push_back('{');
      bool first = true;
      for (const json::key_value_pair& kv : v.get_object()) {
        if (!first) out->push_back(',');
        first = false;
        AppendEscaped(std::string_view(kv.key().data(), kv.key().size()), out);
        out->push_back(':');
        SerializeTo(kv.value(), out);
      }
      out->push_back('}');
      return;
    }
  }
}

std::string Serialize(const json::value& v) {
  std::string out;
  SerializeTo(v, &out);
  return out;
}

const json::value* Find(const json::object& o, std::string_view key) {
  auto it = o.find(json::string_view(key.data(), key.size()));
  return it == o.end() ? nullptr : &it->value();
}

std::string_view AsString(const json::value& v) {
  const json::string* s = v.if_string();
  return s == nullptr ? std::string_view() : std::string_view(s->data(), s->size());
}

std::string_view GetString(const json::object& o, std::string_view key) {
  const json::value* v = Find(o, key);
  return v == nullptr ? std::string_view() : AsString(*v);
}

bool HasString(const json::object& o, std::string_view key) {
  const json::value* v = Find(o, key);
  return v != nullptr && v->is_string();
}

const json::object* GetObject(const json::object& o, std::string_view key) {
  const json::value* v = Find(o, key);
  return v == nullptr ? nullptr : v->if_object();
}

const json::array* GetArray(const json::object& o, std::string_view key) {
  const json::value* v = Find(o, key);
  return v == nullptr ? nullptr : v->if_array();
}

std::optional<int64_t> AsInt(const json::value& v) {
  if (const int64_t* i = v.if_int64()) return *i;
  if (const uint64_t* u = v.if_uint64()) {
    return *u > static_cast<uint64_t>(INT64_MAX) ? INT64_MAX : static_cast<int64_t>(*u);
  }
  if (const double* d = v.if_double()) {
    if (*d != *d) return std::nullopt;
    if (*d >= 9.2e18) return INT64_MAX;
    if (*d <= -9.2e18) return INT64_MIN;
    return static_cast<int64_t>(*d);
  }
  return std::nullopt;
}

std::optional<int64_t> GetInt(const json::object& o, std::string_view key) {
  const json::value* v = Find(o, key);
  return v == nullptr ? std::nullopt : AsInt(*v);
}

int64_t GetCount(const json::object& o, std::string_view key) {
  constexpr int64_t kMax = int64_t{1} << 50;
  const int64_t v = GetInt(o, key).value_or(0);
  return v < 0 ? 0 : v > kMax ? kMax : v;
}

std::optional<double> GetNumber(const json::object& o, std::string_view key) {
  const json::value* v = Find(o, key);
  if (v == nullptr) return std::nullopt;
  if (const double* d = v->if_double()) return *d;
  if (const int64_t* i = v->if_int64()) return static_cast<double>(*i);
  if (const uint64_t* u = v->if_uint64()) return static_cast<double>(*u);
  return std::nullopt;
}

std::optional<bool> GetBool(const json::object& o, std::string_view key) {
  const json::value* v = Find(o, key);
  if (v == nullptr) return std::nullopt;
  if (const bool* b = v->if_bool()) return *b;
  return std::nullopt;
}

json::value EmptyObject() { return json::object(); }

uint64_t Fnv1a(std::string_view data, uint64_t seed) {
  uint64_t h = seed;
  for (unsigned char c : data) {
    h ^= c;
    h *= 1099511628211ULL;
  }
  return h;
}

std::string DeriveId(std::string_view prefix, std::string_view seed) {
  const uint64_t a = Fnv1a(seed);
  const uint64_t b = Fnv1a(seed, a ^ 0x9e3779b97f4a7c15ULL);
  char buf[32];
  std::snprintf(buf, sizeof(buf), "%016llx%08llx", static_cast<unsigned long long>(a),
                static_cast<unsigned long long>(b >> 32));
  return absl::StrCat(AV(prefix), buf);
}

bool ParseDataUrl(std::string_view url, std::string* media_type, std::string* data) {
  if (url.size() < 5 || !absl::EqualsIgnoreCase(AV(url.substr(0, 5)), "data:")) return false;
  const size_t comma = url.find(',');
  if (comma == std::string_view::npos) return false;
  std::string_view meta = url.substr(5, comma - 5);
  constexpr std::string_view kBase64 = ";base64";
  if (meta.size() < kBase64.size() || meta.substr(meta.size() - kBase64.size()) != kBase64) {
    return false;
  }
  meta.remove_suffix(kBase64.size());
  media_type->assign(meta.empty() ? "application/octet-stream" : meta);
  data->assign(url.substr(comma + 1));
  return true;
}

std::string MediaTypeFromUrl(std::string_view url) {
  size_t end = url.find_first_of("?#");
  if (end != std::string_view::npos) url = url.substr(0, end);
  const size_t dot = url.rfind('.');
  if (dot == std::string_view::npos || url.find('/', dot) != std::string_view::npos) return "";
  const std::string ext = absl::AsciiStrToLower(AV(url.substr(dot + 1)));
  if (ext == "png") return "image/png";
  if (ext == "jpg" || ext == "jpeg") return "image/jpeg";
  if (ext == "gif") return "image/gif";
  if (ext == "webp") return "image/webp";
  if (ext == "pdf") return "application/pdf";
  if (ext == "wav") return "audio/wav";
  if (ext == "mp3") return "audio/mp3";
  return "";
}

}  // namespace omniroute::translator
